"""Backfill and gap fill: meter readings from the recorder's statistics.

The recorder keeps, per energy sensor, 5-minute statistics for ``keep_days``
(10 days by default) and hourly statistics for ever. A statistics row covers
``[start, start + period)``; its ``state`` is the last state within that
period, so it is the meter reading at the *end* of the period. Readings are
therefore dated ``start + period``: the 5-minute row ending on a quarter hour
gives that quarter hour's reading, an hourly row gives the reading of the full
hour it ends on.

* ``zevvy.upload_history`` (backfill): for a period and some or all meters,
  queue quarter-hour readings where 5-minute statistics exist and hourly
  readings from the long-term statistics before that. Readings older than a
  meter's last delivered reading are queued too: the integration only remembers
  the newest reading zevvy confirmed, not which older ones it has, and zevvy
  answers "already present" (409) for those it has, so nothing is stored twice.
* Gap fill: when the entry is set up (start-up, reload, after a new login), the
  quarter hours after each meter's last delivered reading that the collector
  missed are queued from the 5-minute statistics, where the recorder has them.
  Readings at or before the last delivered one are never queued by gap fill.

Statistics of a time Home Assistant was off (between two recorder runs) are
left out: the recorder compiles them at the next start from the last state it
had, so they repeat the reading from before the stop.

Both go through the outbox like live readings: readings already waiting are
not queued twice, and a reading lower than the one before it is held back with
a repair issue (a meter reset inside the period) instead of being sent.

Recorder queries run in the recorder's executor, one meter at a time, and the
readings are added to the outbox in chunks so that a large backfill never
blocks the event loop for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
import math
from typing import Any, Final

from homeassistant.components.recorder.models import process_timestamp
from homeassistant.components.recorder.statistics import (
    get_metadata,
    statistics_during_period,
)
from homeassistant.const import UnitOfEnergy
from homeassistant.core import (
    CoreState,
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    callback,
)
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.recorder import get_instance, session_scope
from homeassistant.helpers.start import async_at_started
from homeassistant.util import dt as dt_util
from homeassistant.util.unit_conversion import EnergyConverter
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
import voluptuous as vol

from .const import (
    COLLECT_INTERVAL_MINUTES,
    DOMAIN,
    GAP_FILL_STARTUP_DELAY,
    LOGGER,
    READING_DECIMALS,
)
from .coordinator import ZevvyConfigEntry
from .meters import ENERGY_UNITS, Meter, resolve_meters
from .outbox import AddResult, Outbox, from_epoch, to_epoch

SERVICE_UPLOAD_HISTORY: Final = "upload_history"
ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_START: Final = "start"
ATTR_END: Final = "end"
ATTR_METERS: Final = "meters"

RECORDER_DOMAIN: Final = "recorder"
# Readings handed to the outbox between two yields to the event loop.
ADD_CHUNK: Final = 1000
QUARTER_SECONDS: Final = COLLECT_INTERVAL_MINUTES * 60
SHORT_TERM_PERIOD: Final = timedelta(minutes=5)
LONG_TERM_PERIOD: Final = timedelta(hours=1)
_UNITS: Final[dict[str, str]] = {
    EnergyConverter.UNIT_CLASS: str(UnitOfEnergy.KILO_WATT_HOUR)
}

UPLOAD_HISTORY_SCHEMA: Final = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Required(ATTR_START): cv.datetime,
        vol.Optional(ATTR_END): cv.datetime,
        vol.Optional(ATTR_METERS): vol.All(cv.ensure_list, [cv.entity_id]),
    }
)

type Pairs = list[tuple[int, float]]


@dataclass(slots=True)
class Statistics:
    """Readings (epoch seconds, kWh) of one meter found in the recorder."""

    found: bool = False  # the entity has energy statistics at all
    quarter_hours: Pairs = field(default_factory=list)
    hours: Pairs = field(default_factory=list)


@dataclass(slots=True)
class MeterResult:
    """What happened to one meter's history."""

    meter: Meter
    found: bool = False
    quarter_hours: int = 0
    hours: int = 0
    queued: int = 0
    already_queued: int = 0
    already_delivered: int = 0
    held: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the action's answer for this meter."""
        return {
            "device_ref": self.meter.device_ref,
            "register_ref": self.meter.register_ref,
            "quarter_hour_readings": self.quarter_hours,
            "hourly_readings": self.hours,
            "queued": self.queued,
            "already_queued": self.already_queued,
            "already_delivered": self.already_delivered,
            "held": self.held,
        }


# --- reading the recorder (runs in the recorder's executor) ----------------------


def recorder_gaps(hass: HomeAssistant) -> list[tuple[float, float]]:
    """Return the times (epoch) between the recorder's runs: Home Assistant was off.

    For such a time the recorder compiles statistics at the next start from the
    last state it had, so they repeat the reading from before the stop: they are
    not meter readings of that time. Runs older than the recorder keeps are
    unknown (nothing is excluded there). Must run in the recorder's executor.
    """
    try:
        # The recorder's own table of runs: an internal of the recorder, so a
        # future schema without it only costs the downtime detection.
        from homeassistant.components.recorder.db_schema import (
            RecorderRuns,
        )

        with session_scope(hass=hass, read_only=True) as session:
            runs = session.execute(
                select(RecorderRuns.start, RecorderRuns.end).order_by(
                    RecorderRuns.start
                )
            ).all()
    except (ImportError, SQLAlchemyError):
        LOGGER.debug("Recorder runs unavailable; not excluding downtime")
        return []
    gaps: list[tuple[float, float]] = []
    covered: float | None = None
    for run_start, run_end in runs:
        start = process_timestamp(run_start).timestamp()
        if covered is not None and start > covered:
            gaps.append((covered, start))
        end = math.inf if run_end is None else process_timestamp(run_end).timestamp()
        covered = end if covered is None else max(covered, end)
    return gaps


def _readings_from_rows(
    rows: Sequence[Any],
    first: int,
    last: int,
    gaps: Sequence[tuple[float, float]] = (),
) -> Pairs:
    """Return (end of period, kWh) of quarter-hour rows ending within [first, last].

    Rows whose whole period lies in a gap between recorder runs are left out.
    """
    pairs: Pairs = []
    for row in rows:
        end = int(row["end"])
        if end < first or end > last or end % QUARTER_SECONDS:
            continue
        if any(
            gap_start <= row["start"] and end <= gap_end for gap_start, gap_end in gaps
        ):
            continue
        value = row.get("state")
        if value is None or not math.isfinite(value) or value < 0:
            continue
        pairs.append((end, round(float(value), READING_DECIMALS) + 0.0))
    return pairs


def read_statistics(
    hass: HomeAssistant,
    statistic_id: str,
    start: datetime,
    end: datetime,
    hourly: bool,
) -> Statistics:
    """Return a meter's readings in [start, end] from the recorder's statistics.

    Quarter hours come from the 5-minute statistics; with ``hourly``, full hours
    before the first 5-minute row come from the long-term statistics. Values
    are converted from the statistic's unit to kWh by the recorder (Home
    Assistant's EnergyConverter). Must run in the recorder's executor.
    """
    result = Statistics()
    metadata = get_metadata(hass, statistic_ids={statistic_id})
    if statistic_id not in metadata:
        return result
    if metadata[statistic_id][1]["unit_of_measurement"] not in ENERGY_UNITS:
        return result
    first, last = to_epoch(start), to_epoch(end)
    short = statistics_during_period(
        hass,
        start - SHORT_TERM_PERIOD,
        end,
        {statistic_id},
        "5minute",
        _UNITS,
        {"state"},
    ).get(statistic_id, [])
    gaps = recorder_gaps(hass)
    result.quarter_hours = _readings_from_rows(short, first, last, gaps)
    result.found = bool(short)
    if not hourly:
        return result
    # Long-term statistics only before the short-term ones begin.
    long_last = last
    if short:
        long_last = min(last, int(short[0]["end"]) - 1)
    if long_last >= first:
        long = statistics_during_period(
            hass,
            start - LONG_TERM_PERIOD,
            from_epoch(long_last),
            {statistic_id},
            "hour",
            _UNITS,
            {"state"},
        ).get(statistic_id, [])
        result.hours = _readings_from_rows(long, first, long_last, gaps)
        result.found = result.found or bool(long)
    return result


# --- queueing -------------------------------------------------------------------


async def _async_queue(outbox: Outbox, meter: Meter, pairs: Pairs) -> AddResult:
    """Add readings to the outbox in chunks, yielding to the event loop between."""
    total = AddResult()
    for pos in range(0, len(pairs), ADD_CHUNK):
        chunk = pairs[pos : pos + ADD_CHUNK]
        result = outbox.add(
            meter.subentry_id,
            meter.device_ref,
            meter.register_ref,
            [(from_epoch(when), value) for when, value in chunk],
        )
        total.queued += result.queued
        total.duplicates += result.duplicates
        total.held += result.held
        total.dropped += result.dropped
        await asyncio.sleep(0)
    return total


async def async_fill_meter(
    hass: HomeAssistant,
    entry: ZevvyConfigEntry,
    meter: Meter,
    start: datetime,
    end: datetime,
    *,
    hourly: bool,
    after: datetime | None = None,
) -> MeterResult:
    """Queue one meter's readings in [start, end] from statistics.

    Readings at or before ``after`` are counted as already delivered and not
    queued (gap fill); the action passes None and sends them again.
    """
    outbox = entry.runtime_data.outbox
    found = await get_instance(hass).async_add_executor_job(
        read_statistics, hass, meter.entity_id, start, end, hourly
    )
    result = MeterResult(
        meter,
        found=found.found,
        quarter_hours=len(found.quarter_hours),
        hours=len(found.hours),
    )
    pairs = found.hours + found.quarter_hours
    last = outbox.last_delivered(meter.subentry_id)
    last_time = to_epoch(last[0]) if last else None
    if after is not None:
        limit = to_epoch(after)
        kept = [pair for pair in pairs if pair[0] > limit]
        result.already_delivered = len(pairs) - len(kept)
        pairs = kept
    added = await _async_queue(outbox, meter, pairs)
    result.queued = added.queued
    result.held = added.held
    # The outbox counts the last delivered reading as a duplicate too.
    delivered_again = sum(1 for when, _ in pairs if when == last_time)
    result.already_delivered += delivered_again
    result.already_queued = added.duplicates - delivered_again
    return result


@callback
def recorder_loaded(hass: HomeAssistant) -> bool:
    """Return whether the recorder is set up (it is optional)."""
    return RECORDER_DOMAIN in hass.config.components


def _log_result(kind: str, results: Sequence[MeterResult]) -> None:
    queued = sum(result.queued for result in results)
    held = sum(result.held for result in results)
    LOGGER.info(
        "%s: %s readings queued for %s meters (%s held back as drops, "
        "%s already queued, %s already delivered); meters without statistics: %s",
        kind,
        queued,
        len(results),
        held,
        sum(result.already_queued for result in results),
        sum(result.already_delivered for result in results),
        ", ".join(r.meter.entity_id for r in results if not r.found) or "none",
    )


async def _async_finish(
    entry: ZevvyConfigEntry, results: Sequence[MeterResult]
) -> None:
    """Write the outbox and start sending what was queued."""
    runtime = entry.runtime_data
    if any(result.queued or result.held for result in results):
        await runtime.outbox.async_save()
        # The readings-waiting entity shows the backlog now.
        runtime.coordinator.async_update_status()
    if any(result.queued for result in results):
        runtime.coordinator.async_request_send()


# --- gap fill -------------------------------------------------------------------


async def async_gap_fill(hass: HomeAssistant, entry: ZevvyConfigEntry) -> None:
    """Queue the quarter hours each meter missed since its last delivered reading.

    Runs as a background task after the entry is set up. Only the 5-minute
    statistics are used (the recorder keeps them ``keep_days``); meters that
    were never delivered have no starting point and are left alone.
    """
    if not recorder_loaded(hass):
        LOGGER.debug("Recorder not loaded: no gap fill for %s", entry.title)
        return
    if hass.state is not CoreState.running:
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
    instance = get_instance(hass)
    if not await instance.async_db_ready:
        LOGGER.debug("Recorder database not ready: no gap fill for %s", entry.title)
        return
    now = dt_util.utcnow()
    oldest = now - timedelta(days=instance.keep_days)
    outbox = entry.runtime_data.outbox
    results: list[MeterResult] = []
    for meter in resolve_meters(hass, entry):
        last = outbox.last_delivered(meter.subentry_id)
        if last is None:
            continue
        start = max(last[0], oldest)
        if now - start < timedelta(minutes=COLLECT_INTERVAL_MINUTES):
            continue
        results.append(
            await async_fill_meter(
                hass, entry, meter, start, now, hourly=False, after=last[0]
            )
        )
    if not results:
        return
    if any(result.queued or result.held for result in results):
        _log_result("Gap fill", results)
    else:
        LOGGER.debug("Gap fill: nothing missing for %s", entry.title)
    await _async_finish(entry, results)


@callback
def async_start_gap_fill(hass: HomeAssistant, entry: ZevvyConfigEntry) -> None:
    """Start the gap fill in the background (does not delay the setup)."""
    entry.async_create_background_task(
        hass, async_gap_fill(hass, entry), f"zevvy gap fill {entry.entry_id}"
    )


# --- the action -----------------------------------------------------------------


def _validation_error(key: str, **placeholders: str) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders or None,
    )


def _aware(value: datetime) -> datetime:
    """Return an aware UTC time; the UI's picker gives local time without a zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt_util.get_default_time_zone())
    return dt_util.as_utc(value)


def _select_meters(
    hass: HomeAssistant, entry: ZevvyConfigEntry, entity_ids: list[str] | None
) -> list[Meter]:
    meters = resolve_meters(hass, entry)
    if entity_ids is None:
        return meters
    by_entity = {meter.entity_id: meter for meter in meters}
    selected: list[Meter] = []
    for entity_id in entity_ids:
        if entity_id not in by_entity:
            raise _validation_error("history_unknown_meter", entity_id=entity_id)
        if by_entity[entity_id] not in selected:
            selected.append(by_entity[entity_id])
    return selected


async def async_handle_upload_history(call: ServiceCall) -> ServiceResponse:
    """Handle ``zevvy.upload_history``: backfill a period from statistics."""
    from .services import async_get_single_entry  # services imports this module

    hass = call.hass
    entry = async_get_single_entry(hass, call.data.get(ATTR_CONFIG_ENTRY_ID))
    if not recorder_loaded(hass):
        raise _validation_error("history_no_recorder")
    now = dt_util.utcnow()
    start = _aware(call.data[ATTR_START])
    end = min(_aware(call.data[ATTR_END]), now) if ATTR_END in call.data else now
    if start >= end:
        raise _validation_error(
            "history_invalid_period", start=start.isoformat(), end=end.isoformat()
        )
    meters = _select_meters(hass, entry, call.data.get(ATTR_METERS))
    LOGGER.info(
        "Uploading history of %s meters from %s to %s",
        len(meters),
        start.isoformat(),
        end.isoformat(),
    )
    results: list[MeterResult] = []
    for number, meter in enumerate(meters, 1):
        results.append(
            await async_fill_meter(hass, entry, meter, start, end, hourly=True)
        )
        LOGGER.debug(
            "History of %s (%s/%s): %s readings",
            meter.entity_id,
            number,
            len(meters),
            results[-1].queued,
        )
    _log_result("Upload history", results)
    await _async_finish(entry, results)
    if not call.return_response:
        return None
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "queued": sum(result.queued for result in results),
        "meters": {
            result.meter.entity_id: result.as_dict()
            for result in results
            if result.found
        },
        "no_statistics": [r.meter.entity_id for r in results if not r.found],
    }
