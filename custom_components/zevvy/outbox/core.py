"""The outbox of one config entry: queues of readings and what acts on them.

Readings leave a queue only when zevvy confirmed them. The rest of the
integration reads the outbox through counts, ``views`` and ``last_delivered``,
never through its series.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
import threading

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback

from ..api import Reading
from ..const import LOGGER, READING_DECIMALS
from ..issues import IssueKind, async_create_issue, async_delete_issue
from . import policy
from .format import Destination, Queue, Series, decode, from_epoch, snapshot, to_epoch
from .meter_states import MeterStates
from .policy import AddResult
from .store import OutboxStore


@dataclass(frozen=True, slots=True)
class QueueView:
    """What one queue holds, for the status, the entities and diagnostics."""

    key: str
    device_ref: str
    register_ref: str
    pending: int
    held: int
    rejected: int
    oldest_pending: datetime | None
    rejected_message: str | None
    last_delivered_at: datetime | None
    last_delivered_value: float | None


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings taken from one queue to be sent, oldest first."""

    destination: Destination
    times: array[int]
    values: array[float]

    def __len__(self) -> int:
        """Return the number of readings."""
        return len(self.times)

    def readings(self) -> list[Reading]:
        """Return the readings (aware UTC times)."""
        return [
            Reading(from_epoch(t), v)
            for t, v in zip(self.times, self.values, strict=True)
        ]

    def __getitem__(self, index: slice) -> Batch:
        """Return a part of the batch (``batch[:half]``)."""
        return Batch(self.destination, self.times[index], self.values[index])

    def partition(self, moments: Iterable[datetime]) -> tuple[Batch, Batch]:
        """Return the readings at ``moments`` and the others, each oldest first."""
        wanted = {to_epoch(moment) for moment in moments}
        inside = [i for i, when in enumerate(self.times) if when in wanted]
        outside = [i for i, when in enumerate(self.times) if when not in wanted]
        return self._pick(inside), self._pick(outside)

    def _pick(self, indices: list[int]) -> Batch:
        return Batch(
            self.destination,
            array("q", [self.times[i] for i in indices]),
            array("d", [self.values[i] for i in indices]),
        )


class Outbox:
    """The persisted queues of readings of one config entry."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Create an empty outbox; call ``async_load`` before use."""
        self.hass = hass
        self.entry_id = entry_id
        self._queues: dict[str, Queue] = {}
        self._overflow_dropped = 0
        # Guards the queues against a snapshot taken in the executor.
        self._lock = threading.RLock()
        # What the meters' reading sources remember (running totals).
        self.meter_states = MeterStates(
            self._lock,
            self.async_schedule_save,
            lambda: self.storage.async_mark_dirty(),
        )
        self._listeners: list[Callable[[], None]] = []
        self.storage = OutboxStore(
            hass,
            entry_id,
            lambda: snapshot(
                self._queues, self._overflow_dropped, self.meter_states.snapshot()
            ),
            self._lock,
        )

    # --- persistence -------------------------------------------------------

    async def async_load(self) -> None:
        """Load the outbox from storage."""
        if data := await self.storage.async_load():
            self._queues, self._overflow_dropped = decode(data)
            self.meter_states.load(data)
        LOGGER.debug(
            "Outbox %s loaded: %s readings pending", self.entry_id, self.pending_count
        )

    async def async_save(self) -> None:
        """Write the outbox now; return when the current state is on disk."""
        await self.storage.async_save()

    @callback
    def async_schedule_save(self) -> None:
        """Write the outbox soon (and when Home Assistant stops)."""
        self.storage.async_schedule_save()

    async def async_flush(self) -> None:
        """Write pending changes now (on unload)."""
        await self.storage.async_flush()

    async def async_remove(self) -> None:
        """Delete the stored outbox (the config entry is being removed)."""
        with self._lock:
            self._queues.clear()
            self.meter_states.clear()
        await self.storage.async_remove()

    # --- listeners ----------------------------------------------------------

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> CALLBACK_TYPE:
        """Call ``listener`` whenever the content changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # --- reading --------------------------------------------------------------

    @property
    def pending_count(self) -> int:
        """Return the number of readings waiting to be sent."""
        return sum(len(queue.pending) for queue in self._queues.values())

    @property
    def held_count(self) -> int:
        """Return the number of readings waiting for the user (drops)."""
        return sum(len(queue.held) for queue in self._queues.values())

    @property
    def rejected_count(self) -> int:
        """Return the number of readings zevvy rejected."""
        return sum(len(queue.rejected) for queue in self._queues.values())

    @property
    def keys(self) -> list[str]:
        """Return the keys of all queues (and of meters with a stored state)."""
        return list(self._queues.keys() | self.meter_states.keys())

    def views(self) -> dict[str, QueueView]:
        """Return what each queue holds, by key."""
        return {
            key: QueueView(
                key=key,
                device_ref=queue.device_ref,
                register_ref=queue.register_ref,
                pending=len(queue.pending),
                held=len(queue.held),
                rejected=len(queue.rejected),
                oldest_pending=from_epoch(queue.pending.times[0])
                if queue.pending
                else None,
                rejected_message=queue.rejected_message,
                last_delivered_at=None
                if queue.last_time is None
                else from_epoch(queue.last_time),
                last_delivered_value=queue.last_value,
            )
            for key, queue in self._queues.items()
        }

    def last_delivered(self, key: str) -> Reading | None:
        """Return the last reading zevvy confirmed for a queue."""
        queue = self._queues.get(key)
        if queue is None or queue.last_time is None or queue.last_value is None:
            return None
        return Reading(from_epoch(queue.last_time), queue.last_value)

    def is_waiting(self, key: str, read_at: datetime) -> bool:
        """Return whether a reading waits to be sent or was rejected."""
        queue = self._queues.get(key)
        when = to_epoch(read_at)
        return queue is not None and (
            queue.pending.index(when) >= 0 or queue.rejected.index(when) >= 0
        )

    def keys_with_pending(self) -> list[str]:
        """Return keys that have readings to send, oldest first reading first."""
        keyed = [(q.pending.times[0], k) for k, q in self._queues.items() if q.pending]
        return [key for _, key in sorted(keyed)]

    # --- adding -------------------------------------------------------------

    def _queue_for(self, destination: Destination) -> Queue:
        queue = self._queues.get(destination.key)
        refs = (destination.device_ref, destination.register_ref)
        if queue is None:
            queue = self._queues[destination.key] = Queue(*refs)
        elif (queue.device_ref, queue.register_ref) != refs:
            # Renamed: the new names apply to everything not yet delivered, and
            # zevvy starts a new series there, so the old series' last reading
            # is no baseline any more (a lower reading is no drop).
            queue.device_ref, queue.register_ref = refs
            queue.last_time = queue.last_value = None
        return queue

    @callback
    def add(self, destination: Destination, readings: Iterable[Reading]) -> AddResult:
        """Queue readings (drop check, duplicates, bound); does not save."""
        return self.add_many(((destination, readings),))

    @callback
    def add_many(
        self, items: Iterable[tuple[Destination, Iterable[Reading]]]
    ) -> AddResult:
        """Queue readings of many destinations at once; does not save.

        The bound is checked and listeners are told once, not per queue (a tick
        of 1000 meters stays linear).
        """
        total = AddResult()
        newly_held: list[tuple[str, Queue]] = []  # (key, queue)
        with self._lock:
            for destination, readings in items:
                queue = self._queue_for(destination)
                result = policy.add_readings(queue, destination, readings)
                if result.held:
                    newly_held.append((destination.key, queue))
                total.add(result)
            overflow = policy.enforce_bound(self._queues)
        held_keys = {key for key, _ in newly_held} | overflow.held_keys
        for key in held_keys:
            self._async_update_settle_issue(key, IssueKind.READING_HELD)
        for key in overflow.rejected_keys:
            self._async_update_settle_issue(key, IssueKind.BATCH_REJECTED)
        if dropped := overflow.dropped:
            total.dropped = dropped
            policy.log_overflow(self._overflow_dropped, dropped, overflow.oldest)
            self._overflow_dropped += dropped
            async_create_issue(
                self.hass,
                IssueKind.OUTBOX_OVERFLOW,
                self.entry_id,
                None,
                policy.overflow_placeholders(self._overflow_dropped),
            )
        if total.changed:
            self._changed()
        return total

    async def async_add(
        self, destination: Destination, readings: Iterable[Reading]
    ) -> AddResult:
        """Queue readings and write the outbox before returning."""
        result = self.add(destination, readings)
        if result.changed:
            await self.async_save()
        return result

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
            Destination(key, queue.device_ref, queue.register_ref),
            queue.pending.times[:size],
            queue.pending.values[:size],
        )

    @callback
    def confirm(self, batch: Batch) -> None:
        """Zevvy has these readings: remove them, move the baseline, save soon."""
        queue = self._queues.get(batch.destination.key)
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
    def reject(self, batch: Batch, message: str) -> None:
        """Zevvy rejected a batch: keep it out of the retry loop, raise an issue."""
        key = batch.destination.key
        queue = self._queues.get(key)
        if queue is None:
            return
        with self._lock:
            queue.pending.remove_times(batch.times)
            for when, value in zip(batch.times, batch.values, strict=True):
                if queue.rejected.index(when) < 0:
                    queue.rejected.insert(when, value)
            queue.rejected_message = message
        self._async_update_settle_issue(key, IssueKind.BATCH_REJECTED)
        self.async_schedule_save()
        self._changed()

    # --- decisions from repair issues ----------------------------------------

    def _async_update_settle_issue(self, key: str, kind: IssueKind) -> None:
        """Raise or update the held or rejected issue of a queue (delete it
        when the outbox bound dropped all those readings)."""
        queue = self._queues[key]
        series = queue.held if kind is IssueKind.READING_HELD else queue.rejected
        if not series:
            if kind is IssueKind.BATCH_REJECTED:
                queue.rejected_message = None
            async_delete_issue(self.hass, kind, self.entry_id, key)
        elif kind is IssueKind.READING_HELD:
            self._async_raise_held_issue(key, queue)
        else:
            async_create_issue(
                self.hass,
                IssueKind.BATCH_REJECTED,
                self.entry_id,
                key,
                {
                    "device": queue.device_ref,
                    "register": queue.register_ref,
                    "message": queue.rejected_message or "",
                    "count": str(len(queue.rejected)),
                },
            )

    def _async_raise_held_issue(self, key: str, queue: Queue) -> None:
        # From the higher to the lower value: the reading before the first held
        # one to the newest held one, or (held because higher than a reading
        # after it, e.g. a backfill across a reset) the first held one to that.
        first = queue.held.values[0]
        higher, lower = policy.drop_of(queue, queue.held.times[0], first) or (
            None,
            first,
        )
        if lower == first:
            lower = queue.held.values[-1]
        async_create_issue(
            self.hass,
            IssueKind.READING_HELD,
            self.entry_id,
            key,
            {
                "device": queue.device_ref,
                "register": queue.register_ref,
                "value": f"{lower:.{READING_DECIMALS}f}",
                "previous": "?" if higher is None else f"{higher:.{READING_DECIMALS}f}",
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

    async def async_retry_rejected(self, key: str) -> int:
        """Put rejected readings back into the pending queue."""
        return await self._async_settle(key, IssueKind.BATCH_REJECTED, requeue=True)

    async def async_discard_rejected(self, key: str) -> int:
        """Forget rejected readings."""
        return await self._async_settle(key, IssueKind.BATCH_REJECTED, requeue=False)

    async def _async_settle(self, key: str, kind: IssueKind, *, requeue: bool) -> int:
        """Empty a queue's held or rejected readings once the user decided.

        ``kind`` names the repair issue and so the series: held readings for
        ``READING_HELD``, rejected ones for ``BATCH_REJECTED``. With ``requeue``
        they go back to pending (except quarter hours already pending) and the
        number requeued is returned; otherwise they are dropped and the number
        dropped is returned.
        """
        queue = self._queues.get(key)
        if queue is None:
            return 0
        series: Series = (
            queue.held if kind is IssueKind.READING_HELD else queue.rejected
        )
        count = 0 if requeue else len(series)
        with self._lock:
            if requeue:
                for when, value in zip(series.times, series.values, strict=True):
                    if queue.pending.index(when) < 0:
                        queue.pending.insert(when, value)
                        count += 1
            series.clear()
            if kind is IssueKind.BATCH_REJECTED:
                queue.rejected_message = None
        async_delete_issue(self.hass, kind, self.entry_id, key)
        await self.async_save()
        self._changed()
        return count

    # --- meters going away ----------------------------------------------------

    async def async_remove_queue(self, key: str) -> int:
        """A meter was removed: drop everything it still had (and its issues)."""
        with self._lock:
            queue = self._queues.pop(key, None)
            self.meter_states.pop(key)
        if queue is None:
            return 0
        for kind in (
            IssueKind.READING_HELD,
            IssueKind.BATCH_REJECTED,
            IssueKind.REGISTER_REFUSED,
        ):
            async_delete_issue(self.hass, kind, self.entry_id, key)
        if dropped := len(queue):
            LOGGER.info(
                "Meter %s / %s removed: %s readings not yet delivered are dropped",
                queue.device_ref,
                queue.register_ref,
                dropped,
            )
        await self.async_save()
        self._changed()
        return dropped
