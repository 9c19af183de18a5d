"""Gap fill: the quarter hours the collector missed, from the recorder's statistics.

When the entry is set up (start-up, reload, after a new login), the quarter
hours after each meter's last delivered reading are queued from the 5-minute
statistics (history.py), where the recorder has them; readings at or before the
last delivered one are never queued here, and meters never delivered are left
alone (the ``zevvy.upload_history`` action is for them).

The recorder compiles the 5-minute statistics a few seconds after each
5-minute mark, and those it missed while Home Assistant was stopped only after
the start. Where they do not reach the last quarter hour yet, the gap fill
looks again after the recorder's next compiles (its
``recorder_5min_statistics_generated`` event), for the quarter hours still
missing only, at most ``GAP_FILL_RETRIES`` times.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from homeassistant.const import EVENT_RECORDER_5MIN_STATISTICS_GENERATED
from homeassistant.core import CALLBACK_TYPE, CoreState, Event, HomeAssistant, callback
from homeassistant.helpers.recorder import get_instance
from homeassistant.helpers.start import async_at_started
from homeassistant.util import dt as dt_util

from .const import (
    COLLECT_INTERVAL_MINUTES,
    GAP_FILL_RETRIES,
    GAP_FILL_STARTUP_DELAY,
    LOGGER,
)
from .history import MeterResult, async_read_meter, log_result
from .meters import resolve_meters
from .quarters import quarter_floor, recorder_loaded
from .runtime import ZevvyConfigEntry


@dataclass(slots=True)
class GapFill:
    """What the gap fill still looks for: per meter, the quarter hours after."""

    until: datetime
    after: dict[str, datetime] = field(default_factory=dict)
    retries: int = GAP_FILL_RETRIES


async def _async_wait_for_start(hass: HomeAssistant) -> None:
    """Wait until Home Assistant has started and the recorder caught up."""
    if hass.state is CoreState.running:
        return
    # The recorder compiles the statistics it missed once Home Assistant
    # has started: wait for that.
    started: asyncio.Future[None] = hass.loop.create_future()

    @callback
    def _started(_hass: HomeAssistant) -> None:
        if not started.done():
            started.set_result(None)

    unsub = async_at_started(hass, _started)
    try:
        await started
    finally:
        unsub()
    await asyncio.sleep(GAP_FILL_STARTUP_DELAY)


def _gap_fill_from_outbox(hass: HomeAssistant, entry: ZevvyConfigEntry) -> GapFill:
    """Return the quarter hours each meter missed since its last delivered one.

    Meters never delivered have no starting point and are left alone; only the
    time the recorder keeps 5-minute statistics is looked at.
    """
    now = dt_util.utcnow()
    oldest = now - timedelta(days=get_instance(hass).keep_days)
    todo = GapFill(until=now)
    outbox = entry.runtime_data.outbox
    for meter in resolve_meters(hass, entry):
        last = outbox.last_delivered(meter.subentry_id)
        if last is None:
            continue
        start = max(last.read_at, oldest)
        if now - start >= timedelta(minutes=COLLECT_INTERVAL_MINUTES):
            todo.after[meter.subentry_id] = start
    return todo


async def async_gap_fill(
    hass: HomeAssistant, entry: ZevvyConfigEntry, todo: GapFill | None = None
) -> None:
    """Queue the quarter hours each meter missed since its last delivered reading.

    Runs as a background task after the entry is set up. Only the 5-minute
    statistics are used (the recorder keeps them ``keep_days``). Where the
    recorder has not compiled them up to the last quarter hour yet (right after
    a start or a new login), it looks again after the recorder's next compiles,
    at most GAP_FILL_RETRIES times, for the quarter hours still missing only.
    """
    if not recorder_loaded(hass):
        LOGGER.debug("Recorder not loaded: no gap fill for %s", entry.title)
        return
    await _async_wait_for_start(hass)
    if not await get_instance(hass).async_db_ready:
        LOGGER.debug("Recorder database not ready: no gap fill for %s", entry.title)
        return
    if todo is None:
        todo = _gap_fill_from_outbox(hass, entry)
    last_quarter = quarter_floor(todo.until)
    results: list[MeterResult] = []
    for meter in resolve_meters(hass, entry):
        if (after := todo.after.get(meter.subentry_id)) is None:
            continue
        result = await async_read_meter(
            hass, entry, meter, after, todo.until, hourly=False, after=after
        )
        results.append(result)
        compiled = result.compiled_until
        if compiled is not None and compiled >= last_quarter:
            del todo.after[meter.subentry_id]
        elif compiled is not None and compiled > after:
            todo.after[meter.subentry_id] = compiled
    accepted = await entry.runtime_data.pipeline.async_accept(
        [result.item() for result in results], per_queue=True
    )
    for result in results:
        result.count(accepted.of(result.meter.subentry_id))
    if any(result.queued or result.held for result in results):
        log_result("Gap fill", results)
    if todo.after:
        _async_look_again(hass, entry, todo)
    elif results:
        LOGGER.debug("Gap fill: nothing more missing for %s", entry.title)


@callback
def _async_look_again(
    hass: HomeAssistant, entry: ZevvyConfigEntry, todo: GapFill
) -> None:
    """Fill the rest after the recorder's next 5-minute statistics compile."""
    waiting = ", ".join(
        meter.entity_id
        for meter in resolve_meters(hass, entry)
        if meter.subentry_id in todo.after
    )
    if todo.retries <= 0:
        LOGGER.info(
            "Gap fill: the recorder has no 5-minute statistics up to %s for %s; "
            "use the action zevvy.upload_history once it has them",
            todo.until.isoformat(),
            waiting,
        )
        return
    todo.retries -= 1
    LOGGER.debug(
        "Gap fill: statistics up to %s not compiled yet for %s; looking again "
        "after the recorder's next compile",
        todo.until.isoformat(),
        waiting,
    )
    unsub: CALLBACK_TYPE | None = None

    @callback
    def _compiled(_event: Event) -> None:
        nonlocal unsub
        if unsub is not None:
            unsub()
            unsub = None
            async_start_gap_fill(hass, entry, todo)

    @callback
    def _unloaded() -> None:
        if unsub is not None:
            unsub()

    unsub = hass.bus.async_listen(EVENT_RECORDER_5MIN_STATISTICS_GENERATED, _compiled)
    entry.async_on_unload(_unloaded)


@callback
def async_start_gap_fill(
    hass: HomeAssistant, entry: ZevvyConfigEntry, todo: GapFill | None = None
) -> None:
    """Start the gap fill in the background (does not delay the setup)."""
    entry.async_create_background_task(
        hass, async_gap_fill(hass, entry, todo), f"zevvy gap fill {entry.entry_id}"
    )
