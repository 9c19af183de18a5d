"""The path of a reading: from whoever made it to zevvy.

One ``ReadingPipeline`` per loaded config entry (``runtime_data.pipeline``). It
owns everything between a reading and the HTTP request that delivers it:

* ``async_accept(items)``: readings in, what happened to them out. The one way
  into the outbox, for the quarter-hour tick, the gap fill, ``upload_history``
  and ``send_reading``: queue (drop check, duplicates, bound), write the outbox
  once, publish the status and, with ``send``, ask the sender.
* the tick: every meter's readings on the wall clock's quarter hours (and the
  quarter hours a late tick owes), then a send;
* the outbox's reports (held, rejected, dropped) as repair issues, and the
  user's decisions from them (``async_decide``);
* the status the coordinator publishes for the entities.

Producers (``history.py``, ``gap_fill.py``, the actions) only make readings and
hand them to ``async_accept``; sending is the sender's job (``sender.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import (
    async_call_later,
    async_track_point_in_utc_time,
)
from homeassistant.util import dt as dt_util

from .api import Reading, ZevvyClient
from .const import LOGGER
from .coordinator import ZevvyCoordinator
from .issues import async_apply_outbox_report
from .meters import Meter, MeterResolver
from .outbox import AddResult, Destination, Outbox, is_meter_key
from .quarters import next_quarter, quarter_floor, quarters_through
from .reading_sources import ReadingSources
from .sender import Sender
from .status import Decision, SendResult, ZevvyStatus

# Seconds between two status updates while the outbox changes (confirmations).
PUBLISH_DELAY: Final = 1.0
# Readings queued at once; the event loop gets a turn between two chunks.
ACCEPT_CHUNK: Final = 1000


@dataclass(slots=True)
class AcceptResult(AddResult):
    """What happened to readings handed to ``async_accept``: in all (the
    counts) and, when asked for, per queue (``of``)."""

    by_key: dict[str, AddResult] = field(default_factory=dict)

    def of(self, key: str) -> AddResult:
        """Return what happened to the readings of one queue."""
        return self.by_key.get(key) or AddResult()


class ReadingPipeline:
    """Accept readings, collect them on the quarter hours and have them sent.

    No polling interval: ticks are scheduled on the wall clock's quarter hours
    (next slot each time, as nordpool does), and sending happens after each
    tick, on retry timers and on ``async_send_now``.
    """

    def __init__(
        self,
        hass: HomeAssistant,
        config_entry: ConfigEntry[Any],
        client: ZevvyClient,
        outbox: Outbox,
    ) -> None:
        """Initialize; ``async_start`` begins the schedule."""
        self.hass = hass
        self.config_entry = config_entry
        self.outbox = outbox
        # Publishes the status for the entities; nothing else.
        self.coordinator = ZevvyCoordinator(hass, config_entry, self.status)
        # What the outbox reports (held, rejected, dropped) as repair issues.
        self._unsub_reports = outbox.async_add_reporter(
            partial(async_apply_outbox_report, hass, config_entry.entry_id)
        )
        self.sender = Sender(
            hass,
            config_entry,
            client,
            outbox,
            track=self._track,
            on_round=self._async_publish,
        )
        # Where each meter's readings come from (its reading source).
        self.sources = ReadingSources(hass, config_entry, outbox)
        # The usable meters, checked again only when they may have changed.
        self.meters = MeterResolver(hass, config_entry)
        # The meters' destinations by subentry id, and the meters' check
        # (``MeterResolver.checked``) they were made for.
        self._destinations: dict[str, Destination] = {}
        self._destinations_checked = -1
        self._unsub_tick: CALLBACK_TYPE | None = None
        self._unsub_outbox: CALLBACK_TYPE | None = None
        self._unsub_publish: CALLBACK_TYPE | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_collect: datetime | None = None
        self._stopped = False

    @property
    def client(self) -> ZevvyClient:
        """Return the API client the readings are sent with."""
        return self.sender.client

    @property
    def last_error_detail(self) -> tuple[datetime, str] | None:
        """Return the last zevvy error (time, type and message), for diagnostics."""
        return self.sender.last_error_detail

    # --- status ---------------------------------------------------------------

    def status(self) -> ZevvyStatus:
        """Return the current status, as the coordinator publishes it."""
        sender = self.sender
        return ZevvyStatus(
            connected=sender.connected,
            last_success=sender.last_success,
            last_collect=self._last_collect,
            last_error=sender.last_error,
            next_retry=sender.next_retry,
            pending=self.outbox.pending_count,
            meters=self.outbox.views(),
        )

    @callback
    def _async_publish(self) -> None:
        """Hand the current status to the entities now."""
        if self._unsub_publish is not None:
            self._unsub_publish()
            self._unsub_publish = None
        if not self._stopped:
            self.coordinator.async_set_updated_data(self.status())

    @callback
    def _async_outbox_changed(self) -> None:
        """Publish at most every PUBLISH_DELAY seconds while batches confirm.

        A round of 1000 confirmations must not rebuild the status (and write
        every entity's state) 1000 times.
        """
        if not self._stopped and self._unsub_publish is None:
            self._unsub_publish = async_call_later(
                self.hass, PUBLISH_DELAY, self._async_delayed_publish
            )

    @callback
    def _async_delayed_publish(self, _now: datetime) -> None:
        self._unsub_publish = None
        self._async_publish()

    # --- life cycle -------------------------------------------------------------

    @callback
    def async_start(self) -> None:
        """Start the quarter-hour schedule and send what waits from before."""
        self._stopped = False
        # Its repair issues again: Home Assistant drops them when it restarts.
        self.outbox.report_kept()
        self._unsub_outbox = self.outbox.async_add_listener(self._async_outbox_changed)
        self._async_follow_meters()
        self.sources.async_start()
        self._schedule_tick()
        if self.outbox.pending_count:
            self.sender.async_start_send()

    async def async_stop(self) -> None:
        """Stop timers and sending and write the outbox (entry unload)."""
        self._stopped = True
        self.sender.async_stop()
        self.sources.async_stop()
        self.meters.async_stop()
        for unsub in (self._unsub_tick, self._unsub_outbox, self._unsub_publish):
            if unsub is not None:
                unsub()
        self._unsub_tick = self._unsub_outbox = self._unsub_publish = None
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.outbox.async_flush()

    async def async_shutdown(self) -> None:
        """Stop unless stopped already (the entry unloads)."""
        if not self._stopped:
            await self.async_stop()

    def _track(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = self.config_entry.async_create_task(self.hass, coro, name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the one way into the outbox -----------------------------------------------

    async def async_accept(
        self,
        items: Iterable[tuple[Destination, Sequence[Reading]]],
        *,
        send: bool = True,
        per_queue: bool = False,
    ) -> AcceptResult:
        """Queue readings; write the outbox, publish and, with ``send``, send.

        Each destination's readings are checked as they enter (drop check,
        duplicates, bound), in chunks with a turn of the event loop between
        them; the outbox is written once, the status published and, with
        ``send``, a send requested for what was queued. Returns what happened,
        in all and, with ``per_queue``, per queue (``AcceptResult.of``).
        """
        total = AcceptResult()
        chunk: list[tuple[Destination, Sequence[Reading]]] = []
        size = 0
        for item in items:
            destination, readings = item
            count = len(readings)
            if 0 < count <= ACCEPT_CHUNK:
                # The common case (a tick: a reading or a few per meter): the
                # item in one part, as it is.
                if size >= ACCEPT_CHUNK:
                    self._add(chunk, total, per_queue)
                    chunk, size = [], 0
                    await asyncio.sleep(0)
                chunk.append(item)
                size += count
                continue
            for pos in range(0, count, ACCEPT_CHUNK):
                if chunk and size >= ACCEPT_CHUNK:
                    self._add(chunk, total, per_queue)
                    chunk, size = [], 0
                    await asyncio.sleep(0)
                part = readings[pos : pos + ACCEPT_CHUNK]
                chunk.append((destination, part))
                size += len(part)
        if chunk:
            self._add(chunk, total, per_queue)
        if total.changed:
            await self.outbox.async_save()
            self._async_publish()
        if send and total.queued:
            self.sender.async_request_send()
        return total

    def _add(
        self,
        chunk: list[tuple[Destination, Sequence[Reading]]],
        total: AcceptResult,
        per_queue: bool,
    ) -> None:
        """Queue one chunk at once (one bound check), counting what happened."""
        total.add(self.outbox.add_many(chunk, total.by_key if per_queue else None))

    async def async_decide(self, key: str, decision: Decision) -> int:
        """Apply the user's decision from a repair issue to a queue.

        Readings released to pending are sent; return how many were released
        (or dropped).
        """
        outbox = self.outbox
        count = await {
            Decision.ACCEPT_HELD: outbox.async_accept_held,
            Decision.DISCARD_HELD: outbox.async_discard_held,
            Decision.RETRY_REJECTED: outbox.async_retry_rejected,
            Decision.DISCARD_REJECTED: outbox.async_discard_rejected,
        }[decision](key)
        self._async_publish()
        if decision in (Decision.ACCEPT_HELD, Decision.RETRY_REJECTED):
            self.sender.async_request_send()
        return count

    # --- collecting ---------------------------------------------------------------

    @callback
    def _schedule_tick(self) -> None:
        self._unsub_tick = async_track_point_in_utc_time(
            self.hass, self._async_tick, next_quarter(dt_util.utcnow())
        )

    @callback
    def _async_tick(self, now: datetime) -> None:
        """Quarter hour: schedule the next one, then collect and send.

        ``now`` is the quarter hour the tick was due at. A tick that fires late
        (Home Assistant busy, a suspended machine, a clock jump) also owes the
        quarter hours passed since; the next one is scheduled after them.
        """
        due = quarter_floor(now)
        passed = quarter_floor(dt_util.utcnow())
        self._schedule_tick()
        self._track(self._async_collect_and_send(due, passed), "zevvy tick")

    async def _async_collect_and_send(self, due: datetime, passed: datetime) -> None:
        await self.async_collect(due, passed)
        if not self.sender.retry_scheduled and not self.sender.auth_failed:
            await self.sender.async_send()

    async def async_collect(
        self, read_at: datetime, until: datetime | None = None
    ) -> AcceptResult:
        """Queue every meter's readings at the quarter hours ``read_at``..``until``.

        Each is the meter's value as of its quarter hour (``quarters.py``): the
        state if it has not changed since, else the recorder's, else none.
        """
        await self._async_prune_removed_meters()
        if until is not None and until > read_at:
            LOGGER.info(
                "The quarter-hour reading of %s was taken late, at %s: readings "
                "of %s to %s are taken as of their quarter hours",
                read_at.isoformat(),
                dt_util.utcnow().isoformat(),
                read_at.isoformat(),
                until.isoformat(),
            )
        owed = quarters_through(read_at, max(read_at, until or read_at))
        meters = self.meters.meters()
        destinations = self._destinations_of(meters)
        found = await self.sources.async_readings_at(meters, owed)
        items = [
            (destinations[meter.subentry_id], rows) for meter, rows in found if rows
        ]
        self._last_collect = owed[-1]
        # The tick sends right after (unless a retry or a new login is due).
        result = await self.async_accept(items, send=False)
        if not result.changed:
            self._async_publish()  # the time of the last collection
        return result

    def _destinations_of(self, meters: list[Meter]) -> dict[str, Destination]:
        """Return the destinations of ``meters`` (the resolver's last answer) by
        subentry id, made again only when the meters were checked again."""
        checked = self.meters.checked
        if checked != self._destinations_checked:
            self._destinations = {
                meter.subentry_id: Destination.for_meter(meter) for meter in meters
            }
            self._destinations_checked = checked
        return self._destinations

    async def _async_prune_removed_meters(self) -> None:
        """Drop the queues of meters whose subentry was deleted."""
        subentries = self.config_entry.subentries
        removed = False
        for key in set(self.outbox.keys).difference(subentries):
            if is_meter_key(key):
                await self.outbox.async_remove_queue(key)
                removed = True
        if removed:
            self._async_publish()

    @callback
    def async_subentries_changed(self) -> None:
        """The entry changed (e.g. a meter was removed or renamed): prune soon."""
        if not self._stopped:
            self._async_follow_meters()
            self._track(self._async_prune_removed_meters(), "zevvy prune meters")

    @callback
    def _async_follow_meters(self) -> None:
        """Take meters' new names (and sources) to their waiting readings now,
        not only with the next quarter hour's readings (``Outbox.follow``)."""
        for meter in self.meters.meters():
            self.outbox.follow(Destination.for_meter(meter))

    # --- sending ------------------------------------------------------------------

    async def async_send(self) -> int:
        """Send the pending readings; return how many zevvy confirmed."""
        return await self.sender.async_send()

    async def async_send_now(self) -> SendResult:
        """Send everything pending now, ignoring a retry timer, a failed login or
        a register's backoff.

        Nothing is collected here: a state read between quarter hours is not
        the meter reading of any quarter hour.
        """
        sent = await self.sender.async_send_now()
        return SendResult(
            sent=sent,
            pending=self.outbox.pending_count,
            held=self.outbox.held_count,
            rejected=self.outbox.rejected_count,
            error=self.sender.last_error,
        )
