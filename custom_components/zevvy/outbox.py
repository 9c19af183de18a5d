"""Persisted outbox: every reading waits here until zevvy confirmed it.

One outbox per config entry, stored with Home Assistant's ``Store`` under
``zevvy.<entry_id>.outbox``. Readings are kept per queue key (the meter's
subentry id, or any other stable key for readings without a meter), each queue
sorted by time, as two compact arrays (epoch seconds, kWh): 16 bytes a reading
in memory instead of about 120 for a list of tuples.

A queue has four parts:

* ``pending``: waiting for upload, oldest first.
* ``held``: lower than the reading before it (a drop); waits for the user's
  decision in a repair issue (meter replaced: queue them; or discard them).
  Every reading lower than the baseline is held while the issue is open, so a
  replaced meter's readings are all kept and none is lost.
* ``parked``: rejected by zevvy (400/422); kept out of the retry loop until the
  user retries or discards them in a repair issue.
* ``last``: the last reading zevvy confirmed (time, value): the baseline for the
  drop check and for gap filling.

Saving: ``async_add`` awaits the write (a crash right after a tick loses
nothing); confirmations are saved with ``Store.async_delay_save`` and a short
delay (``SAVE_DELAY``): several coalesce, Home Assistant writes a pending one
when it stops, and a confirmation lost in a crash only means that a reading is
sent again and zevvy answers 409 (already present). Taking a snapshot only
copies the arrays (under a lock, because ``Store`` calls the delayed save's
data function in the executor); encoding runs in the executor and is handed to
``Store`` as ``orjson.Fragment``. Newer Home Assistant versions need
``serialize_in_event_loop=False`` for that (``store_kwargs``).
"""

from __future__ import annotations

from array import array
import asyncio
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
import heapq
import inspect
import threading
from typing import Any, TypedDict

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.storage import Store
import orjson

from .const import DOMAIN, LOGGER, OUTBOX_MAX_READINGS, READING_DECIMALS
from .issues import IssueKind, async_create_issue, async_delete_issue

STORAGE_VERSION = 1
# Seconds a confirmation may wait before it is written (several coalesce).
SAVE_DELAY = 1.0
# Dropped readings (outbox full) between two warnings in the log.
OVERFLOW_LOG_EVERY = 10_000

# Queue keys of readings without a meter subentry (manual readings) start with
# this; every other key is a meter's subentry id.
MANUAL_KEY_PREFIX = "ref:"


def manual_key(device_ref: str, register_ref: str) -> str:
    """Return the queue key for readings of a device/register without a meter."""
    return f"{MANUAL_KEY_PREFIX}{device_ref}/{register_ref}"


def is_meter_key(key: str) -> bool:
    """Return whether a queue key is a meter's subentry id."""
    return not key.startswith(MANUAL_KEY_PREFIX)


def to_epoch(moment: datetime) -> int:
    """Return whole epoch seconds of an aware datetime."""
    return int(moment.timestamp())


def from_epoch(seconds: int) -> datetime:
    """Return the aware UTC datetime of epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC)


def store_kwargs() -> dict[str, Any]:
    """Return the ``Store`` options that keep our encoding off the event loop.

    Newer Home Assistant versions call a delayed save's data function and
    serialize the data on the event loop unless the store is created with
    ``serialize_in_event_loop=False`` (which 2025.4 does not know; it always
    does both in the executor). Our data function is thread-safe (it takes the
    snapshot under ``Outbox._lock``).
    """
    if "serialize_in_event_loop" in inspect.signature(Store.__init__).parameters:
        return {"serialize_in_event_loop": False}
    return {}


def _times() -> array[int]:
    return array("q")


def _values() -> array[float]:
    return array("d")


@dataclass(slots=True)
class Series:
    """Readings sorted by time: epoch seconds and kWh, side by side."""

    times: array[int] = field(default_factory=_times)
    values: array[float] = field(default_factory=_values)

    def __len__(self) -> int:
        """Return the number of readings."""
        return len(self.times)

    def index(self, when: int) -> int:
        """Return the position of ``when`` or -1."""
        pos = bisect_left(self.times, when)
        return pos if pos < len(self.times) and self.times[pos] == when else -1

    def insert(self, when: int, value: float) -> None:
        """Insert a reading at its place in time (appending is the fast path)."""
        if not self.times or self.times[-1] < when:
            self.times.append(when)
            self.values.append(value)
            return
        pos = bisect_left(self.times, when)
        self.times.insert(pos, when)
        self.values.insert(pos, value)

    def drop_first(self, count: int) -> None:
        """Remove the oldest ``count`` readings."""
        del self.times[:count]
        del self.values[:count]

    def remove_times(self, times: array[int]) -> int:
        """Remove the readings at ``times`` (sorted); return how many went."""
        if not times or not self.times:
            return 0
        lo = bisect_left(self.times, times[0])
        hi = bisect_right(self.times, times[-1])
        if self.times[lo:hi] == times:
            del self.times[lo:hi]
            del self.values[lo:hi]
            return len(times)
        wanted = set(times)
        keep = [i for i in range(lo, hi) if self.times[i] not in wanted]
        removed = hi - lo - len(keep)
        self.times[lo:hi] = array("q", [self.times[i] for i in keep])
        self.values[lo:hi] = array("d", [self.values[i] for i in keep])
        return removed

    def clear(self) -> None:
        """Remove every reading."""
        del self.times[:]
        del self.values[:]

    def copy(self) -> Series:
        """Return a copy (two memcpy's, cheap on the event loop)."""
        return Series(array("q", self.times), array("d", self.values))

    def to_json(self) -> dict[str, list[Any]]:
        """Return the columnar JSON form."""
        return {"t": self.times.tolist(), "v": self.values.tolist()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Series:
        """Build a series from its JSON form (tolerates unsorted input)."""
        if not data:
            return cls()
        pairs = sorted(zip(data["t"], data["v"], strict=True))
        return cls(
            array("q", [int(t) for t, _ in pairs]),
            array("d", [float(v) for _, v in pairs]),
        )


@dataclass(slots=True)
class Queue:
    """Everything the outbox keeps for one meter (device and register)."""

    device_ref: str
    register_ref: str
    pending: Series = field(default_factory=Series)
    held: Series = field(default_factory=Series)
    parked: Series = field(default_factory=Series)
    parked_message: str | None = None
    last_time: int | None = None
    last_value: float | None = None

    def baseline(self, when: int) -> float | None:
        """Return the value of the reading just before ``when`` (pending or sent)."""
        pos = bisect_left(self.pending.times, when)
        if pos > 0:
            prev_time = self.pending.times[pos - 1]
            if self.last_time is None or self.last_time <= prev_time:
                return self.pending.values[pos - 1]
        if self.last_time is not None and self.last_time < when:
            return self.last_value
        return None


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings taken from one queue for one upload, oldest first."""

    key: str
    device_ref: str
    register_ref: str
    times: array[int]
    values: array[float]

    def __len__(self) -> int:
        """Return the number of readings."""
        return len(self.times)

    def pairs(self) -> list[tuple[datetime, float]]:
        """Return (aware UTC time, value) pairs."""
        return [
            (from_epoch(t), v) for t, v in zip(self.times, self.values, strict=True)
        ]


@dataclass(slots=True)
class AddResult:
    """What happened to readings handed to the outbox."""

    queued: int = 0
    duplicates: int = 0
    held: int = 0
    dropped: int = 0


class _QueueData(TypedDict, total=False):
    device: str
    register: str
    last: list[float] | None
    pending: Any
    held: Any
    parked: Any
    parked_message: str | None


class Outbox:
    """The persisted queue of readings of one config entry."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Create an empty outbox; call ``async_load`` before use."""
        self.hass = hass
        self.entry_id = entry_id
        self._store: Store[dict[str, Any]] = Store(
            hass, STORAGE_VERSION, f"{DOMAIN}.{entry_id}.outbox", **store_kwargs()
        )
        self._queues: dict[str, Queue] = {}
        self._overflow_dropped = 0
        self._save_lock = asyncio.Lock()
        self._dirty = False
        # Guards the queues against a snapshot taken in the executor.
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []

    # --- persistence -------------------------------------------------------

    async def async_load(self) -> None:
        """Load the outbox from storage."""
        data = await self._store.async_load()
        if not data:
            return
        for key, raw in data.get("queues", {}).items():
            last = raw.get("last")
            self._queues[key] = Queue(
                device_ref=raw["device"],
                register_ref=raw["register"],
                pending=Series.from_json(raw.get("pending")),
                held=Series.from_json(raw.get("held")),
                parked=Series.from_json(raw.get("parked")),
                parked_message=raw.get("parked_message"),
                last_time=int(last[0]) if last else None,
                last_value=float(last[1]) if last else None,
            )
        self._overflow_dropped = int(data.get("overflow_dropped", 0))
        LOGGER.debug(
            "Outbox %s loaded: %s readings pending", self.entry_id, self.pending_count
        )

    def _snapshot(self) -> dict[str, Any]:
        """Copy what is to be saved; runs on the event loop and must be cheap."""
        return {
            "queues": {
                key: (
                    queue.device_ref,
                    queue.register_ref,
                    None
                    if queue.last_time is None
                    else [queue.last_time, queue.last_value],
                    queue.pending.copy(),
                    queue.held.copy(),
                    queue.parked.copy(),
                    queue.parked_message,
                )
                for key, queue in self._queues.items()
            },
            "overflow_dropped": self._overflow_dropped,
        }

    @staticmethod
    def _encode(snapshot: dict[str, Any]) -> dict[str, Any]:
        """Turn a snapshot into JSON-ready data; runs in the executor."""

        def fragment(series: Series) -> orjson.Fragment | None:
            if not series:
                return None
            return orjson.Fragment(orjson.dumps(series.to_json()))

        queues: dict[str, _QueueData] = {}
        for key, item in snapshot["queues"].items():
            device, register, last, pending, held, parked, message = item
            queues[key] = {
                "device": device,
                "register": register,
                "last": last,
                "pending": fragment(pending),
                "held": fragment(held),
                "parked": fragment(parked),
                "parked_message": message,
            }
        return {"queues": queues, "overflow_dropped": snapshot["overflow_dropped"]}

    def _take_snapshot(self) -> dict[str, Any]:
        with self._lock:
            self._dirty = False
            return self._snapshot()

    def _data_func(self) -> dict[str, Any]:
        """Return the data to write; Store may call this in the executor."""
        return self._encode(self._take_snapshot())

    async def async_save(self) -> None:
        """Write the outbox now; return when the current state is on disk."""
        self._dirty = True
        async with self._save_lock:
            if not self._dirty:
                return  # a save that started after our change wrote it
            snapshot = self._take_snapshot()
            data = await self.hass.async_add_executor_job(self._encode, snapshot)
            await self._store.async_save(data)

    @callback
    def async_schedule_save(self) -> None:
        """Write the outbox within ``SAVE_DELAY`` seconds (and when HA stops)."""
        self._dirty = True
        self._store.async_delay_save(self._data_func, SAVE_DELAY)

    async def async_flush(self) -> None:
        """Write pending changes now (on unload)."""
        if self._dirty:
            await self.async_save()

    async def async_remove(self) -> None:
        """Delete the stored outbox (the config entry is being removed)."""
        with self._lock:
            self._dirty = False
            self._queues.clear()
        await self._store.async_remove()

    # --- listeners ----------------------------------------------------------

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> CALLBACK_TYPE:
        """Call ``listener`` whenever the content changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # --- counts and views ---------------------------------------------------

    @property
    def pending_count(self) -> int:
        """Return the number of readings waiting for upload."""
        return sum(len(queue.pending) for queue in self._queues.values())

    @property
    def held_count(self) -> int:
        """Return the number of readings waiting for the user (drops)."""
        return sum(len(queue.held) for queue in self._queues.values())

    @property
    def parked_count(self) -> int:
        """Return the number of readings zevvy rejected."""
        return sum(len(queue.parked) for queue in self._queues.values())

    @property
    def total_count(self) -> int:
        """Return every reading the outbox keeps."""
        return sum(
            len(queue.pending) + len(queue.held) + len(queue.parked)
            for queue in self._queues.values()
        )

    @property
    def keys(self) -> list[str]:
        """Return the keys of all queues."""
        return list(self._queues)

    def queue(self, key: str) -> Queue | None:
        """Return one queue (read only by convention)."""
        return self._queues.get(key)

    def last_delivered(self, key: str) -> tuple[datetime, float] | None:
        """Return the last reading zevvy confirmed for a queue."""
        queue = self._queues.get(key)
        if queue is None or queue.last_time is None or queue.last_value is None:
            return None
        return from_epoch(queue.last_time), queue.last_value

    def keys_with_pending(self) -> list[str]:
        """Return keys that have readings to send, oldest first reading first."""
        keyed = [(q.pending.times[0], k) for k, q in self._queues.items() if q.pending]
        return [key for _, key in sorted(keyed)]

    # --- adding -------------------------------------------------------------

    def _queue_for(self, key: str, device_ref: str, register_ref: str) -> Queue:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = Queue(device_ref, register_ref)
        elif (queue.device_ref, queue.register_ref) != (device_ref, register_ref):
            # References are frozen per meter; if they change anyway, the new
            # ones apply to everything not yet delivered.
            queue.device_ref = device_ref
            queue.register_ref = register_ref
        return queue

    @callback
    def add(
        self,
        key: str,
        device_ref: str,
        register_ref: str,
        readings: Iterable[tuple[datetime, float]],
    ) -> AddResult:
        """Queue readings (drop check, duplicates, bound); does not save."""
        with self._lock:
            result = self._add(key, device_ref, register_ref, readings)
            result.dropped = self._enforce_bound()
        if result.queued or result.held or result.dropped:
            self._changed()
        return result

    @callback
    def add_many(
        self,
        items: Iterable[tuple[str, str, str, Iterable[tuple[datetime, float]]]],
    ) -> AddResult:
        """Queue readings of many queues at once: (key, device, register, readings).

        The bound is checked and listeners are told once, not per queue (a tick
        of 1000 meters stays linear).
        """
        total = AddResult()
        with self._lock:
            for key, device_ref, register_ref, readings in items:
                result = self._add(key, device_ref, register_ref, readings)
                total.queued += result.queued
                total.duplicates += result.duplicates
                total.held += result.held
            total.dropped = self._enforce_bound()
        if total.queued or total.held or total.dropped:
            self._changed()
        return total

    def _add(
        self,
        key: str,
        device_ref: str,
        register_ref: str,
        readings: Iterable[tuple[datetime, float]],
    ) -> AddResult:
        queue = self._queue_for(key, device_ref, register_ref)
        result = AddResult()
        newly_held = False
        for moment, raw_value in readings:
            when = to_epoch(moment)
            value = round(float(raw_value), READING_DECIMALS)
            if (
                when == queue.last_time
                or queue.pending.index(when) >= 0
                or queue.held.index(when) >= 0
                or queue.parked.index(when) >= 0
            ):
                result.duplicates += 1
                continue
            baseline = queue.baseline(when)
            if baseline is not None and value < baseline:
                queue.held.insert(when, value)
                result.held += 1
                newly_held = True
                LOGGER.warning(
                    "Reading %s kWh of %s / %s at %s is lower than the one before "
                    "(%s kWh); held back until you decide in Repairs",
                    value,
                    device_ref,
                    register_ref,
                    from_epoch(when).isoformat(),
                    baseline,
                )
                continue
            queue.pending.insert(when, value)
            result.queued += 1
        if newly_held:
            self._async_update_held_issue(key, queue)
        return result

    async def async_add(
        self,
        key: str,
        device_ref: str,
        register_ref: str,
        readings: Iterable[tuple[datetime, float]],
    ) -> AddResult:
        """Queue readings and write the outbox before returning."""
        result = self.add(key, device_ref, register_ref, readings)
        if result.queued or result.held or result.dropped:
            await self.async_save()
        return result

    def _enforce_bound(self) -> int:
        """Drop the oldest pending readings beyond OUTBOX_MAX_READINGS."""
        excess = self.total_count - OUTBOX_MAX_READINGS
        if excess <= 0:
            return 0
        # Walk the queues' oldest readings in time order with a heap.
        cursors = {key: 0 for key, queue in self._queues.items() if queue.pending}
        heap = [(self._queues[key].pending.times[0], key) for key in cursors]
        heapq.heapify(heap)
        dropped = 0
        while heap and dropped < excess:
            _, key = heapq.heappop(heap)
            cursors[key] += 1
            dropped += 1
            times = self._queues[key].pending.times
            if cursors[key] < len(times):
                heapq.heappush(heap, (times[cursors[key]], key))
        oldest: int | None = None
        for key, count in cursors.items():
            if count:
                series = self._queues[key].pending
                first = series.times[0]
                oldest = first if oldest is None else min(oldest, first)
                series.drop_first(count)
        if not dropped:
            return 0
        # Warn when the outbox starts dropping, then every OVERFLOW_LOG_EVERY
        # readings, so a long outage does not flood the log (debug otherwise).
        before = self._overflow_dropped
        log = (
            LOGGER.warning
            if before == 0
            or before // OVERFLOW_LOG_EVERY != (before + dropped) // OVERFLOW_LOG_EVERY
            else LOGGER.debug
        )
        self._overflow_dropped += dropped
        log(
            "The zevvy outbox is full (%s readings): dropped the %s oldest readings "
            "(from %s); %s dropped so far",
            OUTBOX_MAX_READINGS,
            dropped,
            from_epoch(oldest).isoformat() if oldest is not None else "?",
            self._overflow_dropped,
        )
        async_create_issue(
            self.hass,
            IssueKind.OUTBOX_OVERFLOW,
            self.entry_id,
            None,
            {
                "dropped": str(self._overflow_dropped),
                "limit": str(OUTBOX_MAX_READINGS),
            },
        )
        return dropped

    @callback
    def acknowledge_overflow(self) -> None:
        """The user saw the overflow issue: start counting from zero again."""
        self._overflow_dropped = 0
        self.async_schedule_save()

    # --- sending ------------------------------------------------------------

    def next_batch(self, key: str, size: int) -> Batch | None:
        """Return the oldest ``size`` pending readings of a queue, or None."""
        queue = self._queues.get(key)
        if queue is None or not queue.pending:
            return None
        return Batch(
            key,
            queue.device_ref,
            queue.register_ref,
            queue.pending.times[:size],
            queue.pending.values[:size],
        )

    @callback
    def confirm(self, batch: Batch) -> None:
        """Zevvy has these readings: remove them, move the baseline, save soon."""
        queue = self._queues.get(batch.key)
        if queue is None or not batch:
            return
        newest = len(batch) - 1
        with self._lock:
            queue.pending.remove_times(batch.times)
            if queue.last_time is None or batch.times[newest] >= queue.last_time:
                queue.last_time = batch.times[newest]
                queue.last_value = batch.values[newest]
        self.async_schedule_save()
        self._changed()

    @callback
    def park(self, batch: Batch, message: str) -> None:
        """Zevvy rejected a batch: keep it out of the retry loop, raise an issue."""
        queue = self._queues.get(batch.key)
        if queue is None:
            return
        with self._lock:
            queue.pending.remove_times(batch.times)
            for when, value in zip(batch.times, batch.values, strict=True):
                if queue.parked.index(when) < 0:
                    queue.parked.insert(when, value)
            queue.parked_message = message
        async_create_issue(
            self.hass,
            IssueKind.BATCH_REJECTED,
            self.entry_id,
            batch.key,
            {
                "device": queue.device_ref,
                "register": queue.register_ref,
                "message": message,
                "count": str(len(queue.parked)),
            },
        )
        self.async_schedule_save()
        self._changed()

    # --- decisions from repair issues ----------------------------------------

    def _async_update_held_issue(self, key: str, queue: Queue) -> None:
        last_value = queue.held.values[-1]
        baseline = queue.baseline(queue.held.times[0])
        async_create_issue(
            self.hass,
            IssueKind.READING_HELD,
            self.entry_id,
            key,
            {
                "device": queue.device_ref,
                "register": queue.register_ref,
                "value": f"{last_value:.{READING_DECIMALS}f}",
                "previous": "?"
                if baseline is None
                else f"{baseline:.{READING_DECIMALS}f}",
                "count": str(len(queue.held)),
                "time": from_epoch(queue.held.times[0]).isoformat(),
            },
        )

    async def async_accept_held(self, key: str) -> int:
        """The meter was replaced: queue the held readings (new baseline)."""
        return await self._async_settle(key, IssueKind.READING_HELD, requeue=True)

    async def async_discard_held(self, key: str) -> int:
        """The held readings are wrong: drop them."""
        return await self._async_settle(key, IssueKind.READING_HELD, requeue=False)

    async def async_retry_parked(self, key: str) -> int:
        """Put rejected readings back into the pending queue."""
        return await self._async_settle(key, IssueKind.BATCH_REJECTED, requeue=True)

    async def async_discard_parked(self, key: str) -> int:
        """Forget rejected readings."""
        return await self._async_settle(key, IssueKind.BATCH_REJECTED, requeue=False)

    async def _async_settle(self, key: str, kind: IssueKind, *, requeue: bool) -> int:
        """Empty a queue's held or parked readings once the user decided.

        ``kind`` names the repair issue and so the series: held readings for
        ``READING_HELD``, parked ones for ``BATCH_REJECTED``. With
        ``requeue`` they go back to pending (except quarter hours already
        pending) and the number requeued is returned; otherwise they are dropped
        and the number dropped is returned.
        """
        queue = self._queues.get(key)
        if queue is None:
            return 0
        series = queue.held if kind is IssueKind.READING_HELD else queue.parked
        count = 0 if requeue else len(series)
        with self._lock:
            if requeue:
                for when, value in zip(series.times, series.values, strict=True):
                    if queue.pending.index(when) < 0:
                        queue.pending.insert(when, value)
                        count += 1
            series.clear()
            if kind is IssueKind.BATCH_REJECTED:
                queue.parked_message = None
        async_delete_issue(self.hass, kind, self.entry_id, key)
        await self.async_save()
        self._changed()
        return count

    # --- meters going away ----------------------------------------------------

    async def async_remove_queue(self, key: str) -> int:
        """A meter was removed: drop everything it still had (and its issues)."""
        with self._lock:
            queue = self._queues.pop(key, None)
        if queue is None:
            return 0
        for kind in (IssueKind.READING_HELD, IssueKind.BATCH_REJECTED):
            async_delete_issue(self.hass, kind, self.entry_id, key)
        dropped = len(queue.pending) + len(queue.held) + len(queue.parked)
        if dropped:
            LOGGER.info(
                "Meter %s / %s removed: %s readings not yet delivered are dropped",
                queue.device_ref,
                queue.register_ref,
                dropped,
            )
        await self.async_save()
        self._changed()
        return dropped
