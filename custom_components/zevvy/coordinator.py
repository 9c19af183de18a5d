"""Runtime data of a zevvy config entry, and the coordinator.

The coordinator reads every meter on the quarter hours of the wall clock, is the
one way into the outbox (``async_adding``: queue, write, publish, request a send),
applies the user's decisions from repair issues, and publishes a ``ZevvyStatus``
for the diagnostic entities. Sending is the sender's job (``sender.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import (
    async_call_later,
    async_track_point_in_utc_time,
)
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util

from .api import Reading, TokenManager, ZevvyClient
from .const import COLLECT_INTERVAL_MINUTES, DOMAIN, LOGGER
from .meters import Meter, MeterResolver
from .outbox import AddResult, Destination, Outbox, QueueView, is_meter_key
from .quarters import async_readings_at, quarters_through
from .readings import MeterReadings
from .sender import Sender, SendError

# Seconds between two status updates while the outbox changes (confirmations).
PUBLISH_DELAY = 1.0

# Queues readings: (destination, readings) pairs in, what happened out.
type AddFn = Callable[[Iterable[tuple[Destination, Iterable[Reading]]]], AddResult]


@dataclass
class ZevvyRuntimeData:
    """What a loaded zevvy config entry holds while Home Assistant runs."""

    tokens: TokenManager
    outbox: Outbox
    coordinator: ZevvyCoordinator


type ZevvyConfigEntry = ConfigEntry[ZevvyRuntimeData]


def quarter_floor(moment: datetime) -> datetime:
    """Return the quarter hour (UTC) at or before ``moment``."""
    moment = dt_util.as_utc(moment)
    return moment.replace(
        minute=moment.minute - moment.minute % COLLECT_INTERVAL_MINUTES,
        second=0,
        microsecond=0,
    )


def next_quarter(moment: datetime) -> datetime:
    """Return the next quarter hour (UTC) strictly after ``moment``."""
    return quarter_floor(moment) + timedelta(minutes=COLLECT_INTERVAL_MINUTES)


@dataclass(frozen=True, kw_only=True, slots=True)
class ZevvyStatus:
    """What the entities and diagnostics show: the coordinator's data."""

    connected: bool
    last_success: datetime | None
    last_collect: datetime | None
    last_error: SendError | None
    next_retry: datetime | None
    pending: int
    # Per queue key (a meter's subentry id): what its queue holds.
    meters: Mapping[str, QueueView] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class SendResult:
    """Outcome of ``async_send_now``: readings sent and what is left."""

    sent: int
    pending: int
    held: int
    rejected: int
    error: SendError | None


class Decision(StrEnum):
    """What the user decided in a repair issue about a queue's readings."""

    ACCEPT_HELD = "accept_held"  # the meter was replaced: send them
    DISCARD_HELD = "discard_held"
    RETRY_REJECTED = "retry_rejected"
    DISCARD_REJECTED = "discard_rejected"


class ZevvyCoordinator(DataUpdateCoordinator[ZevvyStatus]):
    """Collect meter readings on the quarter hours and have them sent.

    No polling interval: ticks are scheduled on the wall clock's quarter hours
    (next slot each time, as nordpool does), and sending happens after each
    tick, on retry timers and on ``async_send_now``.
    """

    config_entry: ZevvyConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        config_entry: ZevvyConfigEntry,
        client: ZevvyClient,
        outbox: Outbox,
    ) -> None:
        """Initialize; ``async_start`` begins the schedule."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=config_entry,
            name=DOMAIN,
            update_interval=None,
        )
        self.outbox = outbox
        self.sender = Sender(
            hass,
            config_entry,
            client,
            outbox,
            track=self._track,
            on_round=self._async_publish,
        )
        # Each meter's reading from its sensor's state (a running total for
        # sensors that restart from zero).
        self.readings = MeterReadings(hass, config_entry, outbox)
        # The usable meters, checked again only when they may have changed.
        self.meters = MeterResolver(hass, config_entry)
        self._destinations: dict[str, tuple[Meter, Destination]] = {}
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

    def _status(self) -> ZevvyStatus:
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

    async def _async_update_data(self) -> ZevvyStatus:
        """Return the current status (no I/O: the schedule drives everything)."""
        return self._status()

    @callback
    def _async_publish(self) -> None:
        """Hand the current status to the entities now."""
        if self._unsub_publish is not None:
            self._unsub_publish()
            self._unsub_publish = None
        if not self._stopped:
            self.async_set_updated_data(self._status())

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
        self._unsub_outbox = self.outbox.async_add_listener(self._async_outbox_changed)
        self._async_follow_meters()
        self.readings.async_start()
        self._schedule_tick()
        if self.outbox.pending_count:
            self.sender.async_start_send()

    async def async_stop(self) -> None:
        """Stop timers and sending and write the outbox (entry unload)."""
        self._stopped = True
        self.sender.async_stop()
        self.readings.async_stop()
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
        """Cancel everything (also called by Home Assistant on unload)."""
        await super().async_shutdown()
        if not self._stopped:
            await self.async_stop()

    def _track(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = self.config_entry.async_create_task(self.hass, coro, name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the one way into the outbox -----------------------------------------------

    @asynccontextmanager
    async def async_adding(self, *, send: bool = True) -> AsyncIterator[AddFn]:
        """Add readings with the returned function; then write, publish, send.

        The one way into the outbox, for the collector, history and the
        send_reading action. Each call of the function queues readings (drop
        check, duplicates, bound) and returns what happened to them; when the
        block ends, the outbox is written (once, however many calls), the status
        published and, with ``send``, a send requested for what was queued.
        """
        total = AddResult()

        def add(items: Iterable[tuple[Destination, Iterable[Reading]]]) -> AddResult:
            result = self.outbox.add_many(items)
            total.add(result)
            return result

        try:
            yield add
        finally:
            if total.changed:
                await self.outbox.async_save()
                self._async_publish()
            if send and total.queued:
                self.sender.async_request_send()

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
    ) -> AddResult:
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
        found = await async_readings_at(
            self.hass, [meter for meter in meters if not meter.running_total], owed
        )
        # Running totals: what each counted up to each quarter hour.
        found += await self.readings.async_readings_at(meters, owed)
        items = [(self._destination(meter), rows) for meter, rows in found if rows]
        self._last_collect = owed[-1]
        # The tick sends right after (unless a retry or a new login is due).
        async with self.async_adding(send=False) as add:
            result = add(items)
        if not result.changed:
            self._async_publish()  # the time of the last collection
        return result

    def _destination(self, meter: Meter) -> Destination:
        """Return a meter's destination, the same while the meter is."""
        kept = self._destinations.get(meter.subentry_id)
        if kept is None or kept[0] is not meter:
            kept = self._destinations[meter.subentry_id] = (
                meter,
                Destination.for_meter(meter),
            )
        return kept[1]

    async def _async_prune_removed_meters(self) -> None:
        """Drop the queues of meters whose subentry was deleted."""
        subentries = self.config_entry.subentries
        removed = False
        for key in self.outbox.keys:
            if is_meter_key(key) and key not in subentries:
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
