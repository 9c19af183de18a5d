"""Runtime data of a zevvy config entry, and the collector and sender.

The coordinator reads every meter on the quarter hours of the wall clock,
queues the readings in the persisted outbox and delivers them to zevvy; its
data is a ``ZevvyStatus`` for the diagnostic entities.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import (
    async_call_later,
    async_track_point_in_utc_time,
)
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util

from .api import (
    Account,
    Reading,
    TokenManager,
    ZevvyAuth,
    ZevvyAuthenticationError,
    ZevvyClient,
    ZevvyConnectionError,
    ZevvyError,
    ZevvyRateLimitError,
    ZevvyRejectedError,
)
from .const import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    COLLECT_INTERVAL_MINUTES,
    DOMAIN,
    LOGGER,
    MAX_BATCH,
    PARALLEL_UPLOADS,
)
from .meters import resolve_meters, state_to_kwh
from .outbox import AddResult, Batch, Outbox, is_meter_key

# Seconds between two status updates while the outbox changes (confirmations).
PUBLISH_DELAY = 1.0


@dataclass
class ZevvyRuntimeData:
    """What a loaded zevvy config entry holds while Home Assistant runs."""

    auth: ZevvyAuth
    tokens: TokenManager
    client: ZevvyClient
    account: Account
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
class MeterStatus:
    """Delivery state of one meter."""

    device_ref: str
    register_ref: str
    last_delivered_at: datetime | None
    last_delivered_value: float | None
    pending: int
    held: int
    parked: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ZevvyStatus:
    """What the entities show: the coordinator's data."""

    connected: bool
    last_success: datetime | None
    last_collect: datetime | None
    last_error: str | None
    next_retry: datetime | None
    pending: int
    held: int
    parked: int
    meters: Mapping[str, MeterStatus] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class UploadResult:
    """Outcome of ``async_upload_now``: readings sent and still waiting."""

    sent: int
    waiting: int
    held: int
    parked: int
    error: str | None


class ZevvyCoordinator(DataUpdateCoordinator[ZevvyStatus]):
    """Collect meter readings on the quarter hours and deliver them to zevvy.

    No polling interval: ticks are scheduled on the wall clock's quarter hours
    (next slot each time, as nordpool does), and sending happens after each
    tick, on retry timers and on ``async_upload_now``.
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
        self.client = client
        self.outbox = outbox
        self._unsub_tick: CALLBACK_TYPE | None = None
        self._unsub_retry: CALLBACK_TYPE | None = None
        self._unsub_outbox: CALLBACK_TYPE | None = None
        self._unsub_publish: CALLBACK_TYPE | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._send_lock = asyncio.Lock()
        self._backoff = 0.0
        self._next_retry: datetime | None = None
        self._connected = True
        self._auth_failed = False
        self._last_success: datetime | None = None
        self._last_collect: datetime | None = None
        self._last_error: str | None = None
        # The last zevvy error (time, type and message) for diagnostics; kept
        # after recovery. Messages of api.py's errors carry no secrets.
        self.last_error_detail: tuple[datetime, str] | None = None
        self._stopped = False

    # --- status ---------------------------------------------------------------

    def _status(self) -> ZevvyStatus:
        meters: dict[str, MeterStatus] = {}
        for key in self.outbox.keys:
            queue = self.outbox.queue(key)
            if queue is None:  # pragma: no cover - keys come from the outbox
                continue
            last = self.outbox.last_delivered(key)
            meters[key] = MeterStatus(
                device_ref=queue.device_ref,
                register_ref=queue.register_ref,
                last_delivered_at=last[0] if last else None,
                last_delivered_value=last[1] if last else None,
                pending=len(queue.pending),
                held=len(queue.held),
                parked=len(queue.parked),
            )
        return ZevvyStatus(
            connected=self._connected,
            last_success=self._last_success,
            last_collect=self._last_collect,
            last_error=self._last_error,
            next_retry=self._next_retry,
            pending=self.outbox.pending_count,
            held=self.outbox.held_count,
            parked=self.outbox.parked_count,
            meters=meters,
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
    def async_update_status(self) -> None:
        """Publish the status now (e.g. after a repair flow changed the outbox)."""
        self._async_publish()

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
        self._schedule_tick()
        if self.outbox.pending_count:
            self._async_start_send()

    async def async_stop(self) -> None:
        """Stop timers and uploads and write the outbox (entry unload)."""
        self._stopped = True
        for unsub in (
            self._unsub_tick,
            self._unsub_retry,
            self._unsub_outbox,
            self._unsub_publish,
        ):
            if unsub is not None:
                unsub()
        self._unsub_tick = self._unsub_retry = None
        self._unsub_outbox = self._unsub_publish = None
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

    # --- collecting ---------------------------------------------------------------

    @callback
    def _schedule_tick(self) -> None:
        self._unsub_tick = async_track_point_in_utc_time(
            self.hass, self._async_tick, next_quarter(dt_util.utcnow())
        )

    @callback
    def _async_tick(self, now: datetime) -> None:
        """Quarter hour: schedule the next one, then collect and send."""
        self._schedule_tick()
        self._track(self._async_collect_and_send(quarter_floor(now)), "zevvy tick")

    async def _async_collect_and_send(self, read_at: datetime) -> None:
        await self.async_collect(read_at)
        if self._unsub_retry is None and not self._auth_failed:
            await self.async_send()

    async def async_collect(self, read_at: datetime) -> AddResult:
        """Queue the current state of every meter as its reading at ``read_at``."""
        await self._async_prune_removed_meters()
        items: list[tuple[str, str, str, tuple[tuple[datetime, float], ...]]] = []
        for meter in resolve_meters(self.hass, self.config_entry):
            value = state_to_kwh(self.hass.states.get(meter.entity_id))
            if value is None:
                LOGGER.debug("No reading for %s at %s", meter.entity_id, read_at)
                continue
            items.append(
                (
                    meter.subentry_id,
                    meter.device_ref,
                    meter.register_ref,
                    ((read_at, value),),
                )
            )
        total = self.outbox.add_many(items)
        if total.queued or total.held or total.dropped:
            await self.outbox.async_save()
        self._last_collect = read_at
        self._async_publish()
        return total

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
        """The entry changed (e.g. a meter was removed): prune soon."""
        if not self._stopped:
            self._track(self._async_prune_removed_meters(), "zevvy prune meters")

    # --- sending ------------------------------------------------------------------

    @callback
    def _async_start_send(self) -> None:
        self._track(self.async_send(), "zevvy send")

    @callback
    def async_request_send(self) -> None:
        """Send soon (e.g. after readings were released in a repair flow)."""
        if not self._stopped and self._unsub_retry is None:
            self._async_start_send()

    async def async_upload_now(self) -> UploadResult:
        """Send everything that waits now, ignoring a pending retry timer.

        Nothing is collected here: a state read between quarter hours is not
        the meter reading of any quarter hour.
        """
        self._cancel_retry()
        self._auth_failed = False
        sent = await self.async_send()
        return UploadResult(
            sent=sent,
            waiting=self.outbox.pending_count,
            held=self.outbox.held_count,
            parked=self.outbox.parked_count,
            error=self._last_error,
        )

    def _cancel_retry(self) -> None:
        if self._unsub_retry is not None:
            self._unsub_retry()
            self._unsub_retry = None
        self._next_retry = None

    async def async_send(self) -> int:
        """Deliver the pending readings; return how many zevvy confirmed."""
        async with self._send_lock:
            if self._stopped:
                return 0
            sent, error = await self._async_send_round()
            self._async_after_round(sent, error)
            return sent

    async def _async_send_round(self) -> tuple[int, ZevvyError | None]:
        """Send every queue oldest first; stop at the first transient error."""
        keys = self.outbox.keys_with_pending()
        if not keys:
            return 0, None
        semaphore = asyncio.Semaphore(PARALLEL_UPLOADS)
        failures: list[ZevvyError] = []
        sent = 0

        async def deliver(key: str) -> None:
            nonlocal sent
            while not failures:
                batch = self.outbox.next_batch(key, MAX_BATCH)
                if batch is None:
                    return
                async with semaphore:
                    if failures:
                        return
                    try:
                        await self.client.bulk_create(
                            batch.device_ref,
                            batch.register_ref,
                            [Reading(when, value) for when, value in batch.pairs()],
                        )
                    except ZevvyRejectedError as err:
                        self._async_park(batch, err.message)
                        continue
                    except ValueError as err:
                        self._async_park(batch, str(err))
                        continue
                    except ZevvyError as err:
                        failures.append(err)
                        return
                self.outbox.confirm(batch)
                sent += len(batch)

        await asyncio.gather(*(deliver(key) for key in keys))
        return sent, failures[0] if failures else None

    @callback
    def _async_park(self, batch: Batch, message: str) -> None:
        LOGGER.error(
            "zevvy rejected %s readings of %s / %s (%s); they are kept aside, "
            "see Repairs",
            len(batch),
            batch.device_ref,
            batch.register_ref,
            message,
        )
        self.outbox.park(batch, message)

    @callback
    def _async_after_round(self, sent: int, error: ZevvyError | None) -> None:
        now = dt_util.utcnow()
        if sent:
            self._last_success = now
        if error is not None:
            self.last_error_detail = (now, f"{type(error).__name__}: {error}")
        if error is None:
            if not self._connected:
                LOGGER.info(
                    "zevvy is reachable again; %s readings delivered, %s waiting",
                    sent,
                    self.outbox.pending_count,
                )
            self._connected = True
            self._backoff = 0.0
            self._last_error = None
            self._next_retry = None
        elif isinstance(error, ZevvyAuthenticationError):
            self._last_error = "authentication"
            if not self._auth_failed:
                LOGGER.warning(
                    "zevvy needs a new login; readings keep waiting in the outbox "
                    "(%s now) and are delivered after you sign in again",
                    self.outbox.pending_count,
                )
            self._auth_failed = True
            self.config_entry.async_start_reauth(self.hass)
        else:
            self._async_schedule_retry(error)
        self._async_publish()

    @callback
    def _async_schedule_retry(self, error: ZevvyError) -> None:
        self._backoff = (
            BACKOFF_INITIAL
            if not self._backoff
            else min(self._backoff * 2, BACKOFF_MAX)
        )
        delay = self._backoff
        if isinstance(error, ZevvyRateLimitError) and error.retry_after is not None:
            # Not before the server asks, and not more often than the backoff.
            delay = max(error.retry_after, delay)
        self._last_error = (
            "rate_limited"
            if isinstance(error, ZevvyRateLimitError)
            else ("unreachable" if isinstance(error, ZevvyConnectionError) else "error")
        )
        if self._connected:
            LOGGER.warning(
                "zevvy is unreachable (%s); %s readings wait in the outbox, "
                "retrying in %.0f s"
                if isinstance(error, ZevvyConnectionError)
                else "zevvy refused the upload (%s); %s readings wait in the "
                "outbox, retrying in %.0f s",
                error,
                self.outbox.pending_count,
                delay,
            )
        else:
            LOGGER.debug("zevvy still unreachable (%s); retry in %.0f s", error, delay)
        self._connected = False
        self._cancel_retry()
        self._next_retry = dt_util.utcnow() + timedelta(seconds=delay)
        self._unsub_retry = async_call_later(self.hass, delay, self._async_retry)

    @callback
    def _async_retry(self, _now: datetime) -> None:
        self._unsub_retry = None
        self._next_retry = None
        self._async_start_send()
