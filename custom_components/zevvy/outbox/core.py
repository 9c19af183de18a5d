"""The outbox of one config entry: queues of readings and what acts on them.

Readings leave a queue only when zevvy confirmed them. The rest of the
integration reads the outbox through counts, ``views`` and ``last_delivered``,
never through its series.

The outbox stores and reports: what a user should hear about (readings held or
rejected, readings the bound dropped, a queue removed) goes to its reporters as
an ``OutboxReport``; the pipeline turns reports into repair issues
(``issues.py``). The outbox imports no issue code.

The counts are kept as the queues change: adding readings counts each queue
as it goes (``_count``), any other change marks its queue (``_mark``) and the
next read recounts only the marked queues, so that publishing the status after
a tick of 1000 meters does not walk every queue again. A queue's view is made
when it is read and kept until the queue changes: a tick changes every meter's
queue, and most views are not read before the next one.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
import threading
from typing import Any, NamedTuple

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback

from ..api import Reading
from ..const import LOGGER, READING_DECIMALS
from ..meters import KINDS, MeterKind, stored_kind
from . import policy
from .format import (
    Delivered,
    Destination,
    Queue,
    Series,
    decode,
    from_epoch,
    manual_key,
    snapshot,
    to_epoch,
)
from .meter_states import MeterStates
from .policy import AddResult
from .store import OutboxStore


class QueueView(NamedTuple):
    """What one queue holds, for the status, the entities and diagnostics.

    A named tuple (immutable, and built ten times faster than a frozen
    dataclass: a tick rebuilds the view of every queue it changed).
    """

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


def _view_of(key: str, queue: Queue) -> QueueView:
    """Return a queue's view (made directly: a third faster than through
    ``QueueView``'s own ``__new__``)."""
    times = queue.pending.times
    last_time = queue.last_time
    return tuple.__new__(
        QueueView,
        (
            key,
            queue.device_ref,
            queue.register_ref,
            len(times),
            len(queue.held.times),
            len(queue.rejected.times),
            _moment(times[0]) if times else None,
            queue.rejected_message,
            None if last_time is None else _moment(last_time),
            queue.last_value,
        ),
    )


class QueueViews(Mapping[str, QueueView]):
    """What each queue of an outbox holds, by key, in the order of the queues.

    Live: a view is made when it is read, from its queue as it is then (and
    kept until the queue changes), not for every queue each time the status is
    published: a tick changes every meter's queue, and the meters' own sensors
    (disabled by default) are what reads them.
    """

    __slots__ = ("_outbox",)

    def __init__(self, outbox: Outbox) -> None:
        """Read the views of ``outbox``."""
        self._outbox = outbox

    def __getitem__(self, key: str) -> QueueView:
        """Return what the queue ``key`` holds now."""
        if (view := self._outbox.view(key)) is None:
            raise KeyError(key)
        return view

    def __iter__(self) -> Iterator[str]:
        """Iterate over the keys of the queues (as they are when asked)."""
        return iter(self._outbox.queue_keys())

    def __len__(self) -> int:
        """Return the number of queues."""
        return len(self._outbox.queue_keys())


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


@dataclass(slots=True)
class BoundWatch:
    """The readings the outbox bound dropped while watched, per queue key."""

    pending: dict[str, set[int]] = field(default_factory=dict)
    held: dict[str, set[int]] = field(default_factory=dict)

    def record(self, times: Mapping[tuple[str, int], list[int]]) -> None:
        """Add what one ``enforce_bound`` dropped."""
        for (key, kind), dropped in times.items():
            if kind in (policy.PENDING, policy.HELD):
                target = self.pending if kind == policy.PENDING else self.held
                target.setdefault(key, set()).update(dropped)

    def lost(self, key: str, moments: Iterable[datetime]) -> tuple[int, int]:
        """Return how many of ``moments`` were dropped: (pending, held)."""
        times = {to_epoch(moment) for moment in moments}
        return (
            len(times & self.pending.get(key, set())),
            len(times & self.held.get(key, set())),
        )


class ReportKind(StrEnum):
    """What an ``OutboxReport`` is about."""

    HELD = "held"  # a queue's held readings (a drop)
    REJECTED = "rejected"  # a queue's readings zevvy rejected
    OVERFLOW = "overflow"  # the bound dropped readings (no key)
    REMOVED = "removed"  # a queue was removed with its meter


@dataclass(frozen=True, slots=True)
class OutboxReport:
    """What a user should hear about: ``placeholders`` to show it, None when
    it is over (nothing held or rejected any more, a queue removed)."""

    kind: ReportKind
    key: str | None
    placeholders: dict[str, str] | None = None


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
        self._reporters: list[Callable[[OutboxReport], None]] = []
        # Queues renamed or moved while adding: their issues need an update.
        self._touched: set[str] = set()
        # Watching what the bound drops (``watch_bound``).
        self._watches: list[BoundWatch] = []
        # The totals and what each queue adds to them (pending, held, rejected),
        # kept as the queues change: ``_mark`` a changed queue, ``_recount``
        # before reading. The views made since their queue last changed.
        self._counted: dict[str, tuple[int, int, int]] = {}
        self._views: dict[str, QueueView] = {}
        self._marked: set[str] = set()
        self._pending = self._held = self._rejected = 0
        # What the sender learned about zevvy (registers set aside, a lowered
        # batch size); replaced, never changed in place.
        self._sender_state: dict[str, Any] = {}
        self.storage = OutboxStore(
            hass,
            entry_id,
            lambda: snapshot(
                self._queues,
                self._overflow_dropped,
                self.meter_states.snapshot(),
                self._sender_state,
            ),
            self._lock,
        )

    # --- persistence -------------------------------------------------------

    async def async_load(self) -> None:
        """Load the outbox from storage."""
        if data := await self.storage.async_load():
            self._queues, self._overflow_dropped = decode(data)
            self._mark_all()
            self.meter_states.load(data)
            sender = data.get("sender")
            self._sender_state = dict(sender) if isinstance(sender, dict) else {}
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

    @property
    def sender_state(self) -> dict[str, Any]:
        """Return what the sender stored (empty for outboxes stored without)."""
        return self._sender_state

    @callback
    def set_sender_state(self, state: dict[str, Any]) -> None:
        """Keep the sender's state (a new dict) and write it soon if it changed."""
        if state != self._sender_state:
            with self._lock:
                self._sender_state = state
            self.async_schedule_save()

    async def async_remove(self) -> None:
        """Delete the stored outbox (the config entry is being removed)."""
        with self._lock:
            self._queues.clear()
            self.meter_states.clear()
        self._mark_all()
        await self.storage.async_remove()

    # --- listeners ----------------------------------------------------------

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> CALLBACK_TYPE:
        """Call ``listener`` whenever the content changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @callback
    def async_add_reporter(
        self, reporter: Callable[[OutboxReport], None]
    ) -> CALLBACK_TYPE:
        """Hand every report (held, rejected, overflow, removed) to ``reporter``."""
        self._reporters.append(reporter)
        return lambda: self._reporters.remove(reporter)

    def _report(self, report: OutboxReport) -> None:
        for reporter in list(self._reporters):
            reporter(report)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # --- reading --------------------------------------------------------------

    def _mark(self, key: str) -> None:
        """A queue changed (or came or went): recount it on the next read."""
        self._marked.add(key)

    def _mark_all(self) -> None:
        self._marked.update(self._counted.keys() | self._queues.keys())

    def _recount(self) -> None:
        """Bring the totals of the marked queues up to date."""
        if not self._marked:
            return
        marked, self._marked = self._marked, set()
        queues, count = self._queues, self._count
        for key in marked:
            count(key, queues.get(key))

    def _count(self, key: str, queue: Queue | None) -> None:
        """Bring the totals up to date with a queue (``queue``: None if it is
        gone); its view is made again when it is read.

        A tick counts every queue as it adds its readings (while the queue is
        at hand, not in a second walk over them all).
        """
        self._views.pop(key, None)
        counted = self._counted
        if queue is None:
            if (old := counted.pop(key, None)) is None:
                return
            pending, held, rejected = -old[0], -old[1], -old[2]
        else:
            pending = len(queue.pending.times)
            held = len(queue.held.times)
            rejected = len(queue.rejected.times)
            old = counted.get(key)
            counted[key] = (pending, held, rejected)
            if old is not None:
                pending -= old[0]
                held -= old[1]
                rejected -= old[2]
        # Only the totals that changed (a tick changes the pending ones).
        if pending:
            self._pending += pending
        if held:
            self._held += held
        if rejected:
            self._rejected += rejected

    @property
    def pending_count(self) -> int:
        """Return the number of readings waiting to be sent."""
        self._recount()
        return self._pending

    @property
    def held_count(self) -> int:
        """Return the number of readings waiting for the user (drops)."""
        self._recount()
        return self._held

    @property
    def rejected_count(self) -> int:
        """Return the number of readings zevvy rejected."""
        self._recount()
        return self._rejected

    @property
    def keys(self) -> list[str]:
        """Return the keys of all queues (and of meters with a stored state)."""
        return list(self._queues.keys() | self.meter_states.keys())

    def views(self) -> QueueViews:
        """Return what each queue holds, by key, in the order of the queues
        (each view made when read: ``QueueViews``)."""
        return QueueViews(self)

    def view(self, key: str) -> QueueView | None:
        """Return what a queue holds now (None: no such queue)."""
        self._recount()
        if (view := self._views.get(key)) is None:
            if (queue := self._queues.get(key)) is None:
                return None
            view = self._views[key] = _view_of(key, queue)
        return view

    def queue_keys(self) -> list[str]:
        """Return the keys of the queues, in their order."""
        return list(self._queues)

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
        """Return the queue of a destination, following a meter's new names.

        New names with the same series (a plain rename): everything not yet
        delivered goes to the new names, and zevvy starts a new series there,
        so the old register's last reading is no baseline any more. New names
        and a new series (another reading source): the readings made so far
        belong to the old register and stay with it, in the queue of those
        references without a meter (``manual_key``); the meter's queue starts
        empty. Runs under the lock; the keys whose issues need an update are
        collected in ``_touched``. The caller marks (or counts) the queue.
        """
        key = destination.key
        queue = self._queues.get(key)
        if (
            queue is not None
            and queue.device_ref == destination.device_ref
            and queue.register_ref == destination.register_ref
        ):
            # The common case: the same names as before.
            if destination.series is not None:
                queue.series = destination.series
            return queue
        refs = (destination.device_ref, destination.register_ref)
        if queue is None:
            queue = self._queues[key] = Queue(*refs, series=destination.series)
            return queue
        # New names.
        old_refs = (queue.device_ref, queue.register_ref)
        new_series = (
            destination.series is not None
            and queue.series is not None
            and destination.series != queue.series
        )
        self._touched.add(key)
        if new_series and len(queue):
            old = manual_key(*old_refs)
            self._queues[old] = _merged(self._queues.get(old), queue)
            self._touched.add(old)
            self._mark(old)
            LOGGER.info(
                "Meter %s / %s renamed to %s / %s with a new reading source: "
                "its %s readings not yet delivered go to %s / %s",
                *old_refs,
                *refs,
                len(queue),
                *old_refs,
            )
            queue = self._queues[key] = Queue(*refs)
        else:
            queue.device_ref, queue.register_ref = refs
            queue.last_time = queue.last_value = None
            queue.last_step = 0
            queue.delivered = Delivered()
        if destination.series is not None:
            queue.series = destination.series
        return queue

    @callback
    def follow(
        self, destination: Destination, previous_series: str | None = None
    ) -> None:
        """A meter was changed (names, reading source): apply it to its queue now.

        ``previous_series``: the meter's series before the change, for a queue
        stored before series were kept. Waiting readings then go where they
        belong before anything is sent (see ``_queue_for``); does not save.
        """
        queue = self._queues.get(destination.key)
        if queue is None or (
            (queue.device_ref, queue.register_ref, queue.series)
            == (destination.device_ref, destination.register_ref, destination.series)
        ):
            return
        with self._lock:
            if queue.series is None:
                queue.series = previous_series
            self._queue_for(destination)
            self._mark(destination.key)
        self._async_update_touched()
        self.async_schedule_save()
        self._changed()

    def _async_update_touched(self) -> None:
        """Report the held and rejected readings of queues whose names changed."""
        touched, self._touched = self._touched, set()
        for key in touched:
            for kind in (ReportKind.HELD, ReportKind.REJECTED):
                self._async_report_settle(key, kind)

    @callback
    def add(self, destination: Destination, readings: Iterable[Reading]) -> AddResult:
        """Queue readings (drop check, duplicates, bound); does not save."""
        return self.add_many(((destination, readings),))

    @callback
    def add_many(
        self,
        items: Iterable[tuple[Destination, Iterable[Reading]]],
        by_key: dict[str, AddResult] | None = None,
    ) -> AddResult:
        """Queue readings of many destinations at once; does not save.

        The bound is checked and listeners are told once, not per queue (a tick
        of 1000 meters stays linear). ``by_key``: also what happened per queue.
        """
        total = AddResult()
        newly_held: list[tuple[str, Queue]] = []  # (key, queue)
        count = self._count
        with self._lock:
            for destination, readings in items:
                queue = self._queue_for(destination)
                key = destination.key
                held = total.held
                if by_key is None:
                    policy.add_readings(queue, destination, readings, total)
                else:
                    result = policy.add_readings(queue, destination, readings)
                    total.add(result)
                    by_key.setdefault(key, AddResult()).add(result)
                if total.held > held:
                    newly_held.append((key, queue))
                # Its view and the totals now, while the queue is at hand.
                self._marked.discard(key)
                count(key, queue)
            self._recount()
            overflow = policy.enforce_bound(
                self._queues, self._pending + self._held + self._rejected
            )
            for key, _ in overflow.times:
                self._mark(key)
        self._async_update_touched()
        held_keys = {key for key, _ in newly_held} | overflow.held_keys
        for key in held_keys:
            self._async_report_settle(key, ReportKind.HELD)
        for key in overflow.rejected_keys:
            self._async_report_settle(key, ReportKind.REJECTED)
        if dropped := overflow.dropped:
            total.dropped = dropped
            for watch in self._watches:
                watch.record(overflow.times)
            policy.log_overflow(self._overflow_dropped, dropped, overflow.oldest)
            self._overflow_dropped += dropped
            self._report_overflow()
        if total.changed:
            self._changed()
        return total

    def _report_overflow(self) -> None:
        self._report(
            OutboxReport(
                ReportKind.OVERFLOW,
                None,
                policy.overflow_placeholders(self._overflow_dropped),
            )
        )

    @callback
    def report_kept(self) -> None:
        """Report what the outbox keeps for the user: every queue's held and
        rejected readings, and the readings the bound dropped since the user
        last saw it.

        For the start: Home Assistant does not keep the repair issues of
        these reports over its restart (they are not persistent), the readings
        they are about stay in the outbox.
        """
        for key, queue in self._queues.items():
            if queue.held:
                self._async_report_settle(key, ReportKind.HELD)
            if queue.rejected:
                self._async_report_settle(key, ReportKind.REJECTED)
        if self._overflow_dropped:
            self._report_overflow()

    def contains(self, key: str, read_at: datetime) -> bool:
        """Return whether a queue keeps a reading at ``read_at`` (or sent it last)."""
        queue = self._queues.get(key)
        return queue is not None and queue.contains(to_epoch(read_at))

    @contextmanager
    def watch_bound(self) -> Iterator[BoundWatch]:
        """Record the readings the outbox bound drops while the block runs."""
        watch = BoundWatch()
        self._watches.append(watch)
        try:
            yield watch
        finally:
            self._watches.remove(watch)

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

    def _queue_of(self, batch: Batch) -> tuple[str, Queue | None]:
        """Return the queue a batch was taken from, also if it moved since.

        A meter changed while the batch was on its way: its readings are in
        the queue of the batch's references (a new series), or they went to
        the meter's new names (then its baseline is not the batch's).
        """
        destination = batch.destination
        refs = (destination.device_ref, destination.register_ref)
        queue = self._queues.get(destination.key)
        if queue is None or (queue.device_ref, queue.register_ref) == refs:
            return destination.key, queue
        if (moved := self._queues.get(manual_key(*refs))) is not None:
            return manual_key(*refs), moved
        return destination.key, queue

    @callback
    def confirm(self, batch: Batch) -> None:
        """Zevvy has these readings: remove them, move the baseline, save soon."""
        key, queue = self._queue_of(batch)
        if queue is None or not batch:
            return
        self._mark(key)
        destination = batch.destination
        same_register = (queue.device_ref, queue.register_ref) == (
            destination.device_ref,
            destination.register_ref,
        )
        newest = len(batch) - 1
        with self._lock:
            pending = queue.pending
            count = newest + 1
            if pending.times[:count] == batch.times:
                # The common case: the batch is still the oldest readings.
                steps: Sequence[int] = pending.steps[:count]
            else:
                steps = [pending.step_at(when) for when in batch.times]
            pending.remove_times(batch.times)
            if same_register:
                delivered = queue.delivered
                for when, value, step in zip(
                    batch.times, batch.values, steps, strict=True
                ):
                    delivered.add(when, value, step)
            if same_register and (
                queue.last_time is None or batch.times[newest] >= queue.last_time
            ):
                queue.last_time = batch.times[newest]
                queue.last_value = batch.values[newest]
                queue.last_step = steps[newest]
        self.async_schedule_save()
        self._changed()

    @callback
    def reject(self, batch: Batch, message: str) -> None:
        """Zevvy rejected a batch: keep it out of the retry loop, report it."""
        key, queue = self._queue_of(batch)
        if queue is None:
            return
        self._mark(key)
        with self._lock:
            steps = [queue.pending.step_at(when) for when in batch.times]
            queue.pending.remove_times(batch.times)
            for when, value, step in zip(batch.times, batch.values, steps, strict=True):
                if queue.rejected.index(when) < 0:
                    queue.rejected.insert(when, value, step)
            queue.rejected_message = message
        self._async_report_settle(key, ReportKind.REJECTED)
        self.async_schedule_save()
        self._changed()

    # --- decisions from repair issues ----------------------------------------

    def _async_report_settle(self, key: str, kind: ReportKind) -> None:
        """Report a queue's held or rejected readings (that they are over when
        the outbox bound dropped all of them)."""
        queue = self._queues[key]
        series = queue.held if kind is ReportKind.HELD else queue.rejected
        if not series:
            if kind is ReportKind.REJECTED:
                queue.rejected_message = None
                self._mark(key)
            self._report(OutboxReport(kind, key))
        elif kind is ReportKind.HELD:
            self._async_report_held(key, queue)
        else:
            self._report(
                OutboxReport(
                    ReportKind.REJECTED,
                    key,
                    {
                        "device": queue.device_ref,
                        "register": queue.register_ref,
                        "message": queue.rejected_message or "",
                        "count": str(len(queue.rejected)),
                    },
                )
            )

    def _async_report_held(self, key: str, queue: Queue) -> None:
        # From the higher to the lower value: the reading before the first held
        # one to the newest held one, or (held because higher than a reading
        # after it, e.g. a backfill across a reset) the first held one to that.
        first = queue.held.values[0]
        higher, lower = policy.drop_of(
            queue, queue.held.times[0], first, queue.held.steps[0]
        ) or (
            None,
            first,
        )
        if lower == first:
            lower = queue.held.values[-1]
        # The meter's unit (kWh, m³); readings typed for a register that is no
        # meter: kWh, as before meters had kinds.
        entry = self.hass.config_entries.async_get_entry(self.entry_id)
        subentry = entry.subentries.get(key) if entry is not None else None
        kind = stored_kind(subentry.data) if subentry else MeterKind.ENERGY
        self._report(
            OutboxReport(
                ReportKind.HELD,
                key,
                {
                    "device": queue.device_ref,
                    "register": queue.register_ref,
                    "value": f"{lower:.{READING_DECIMALS}f}",
                    "previous": "?"
                    if higher is None
                    else f"{higher:.{READING_DECIMALS}f}",
                    "count": str(len(queue.held)),
                    "time": from_epoch(queue.held.times[0]).isoformat(),
                    "unit": KINDS[kind].billing_unit,
                },
            )
        )

    async def async_accept_held(self, key: str) -> int:
        """The meter was replaced: queue the held readings (new baseline)."""
        return await self._async_settle(key, ReportKind.HELD, requeue=True)

    async def async_discard_held(self, key: str) -> int:
        """The held readings are wrong: drop them."""
        return await self._async_settle(key, ReportKind.HELD, requeue=False)

    async def async_retry_rejected(self, key: str) -> int:
        """Put rejected readings back into the pending queue."""
        return await self._async_settle(key, ReportKind.REJECTED, requeue=True)

    async def async_discard_rejected(self, key: str) -> int:
        """Forget rejected readings."""
        return await self._async_settle(key, ReportKind.REJECTED, requeue=False)

    async def _async_settle(self, key: str, kind: ReportKind, *, requeue: bool) -> int:
        """Empty a queue's held or rejected readings once the user decided.

        ``kind`` names the series: held readings for ``HELD``, rejected ones
        for ``REJECTED``; that it is over is reported. With ``requeue``
        they go back to pending (except quarter hours already pending) and the
        number requeued is returned; otherwise they are dropped and the number
        dropped is returned.
        """
        queue = self._queues.get(key)
        if queue is None:
            return 0
        self._mark(key)
        series: Series = queue.held if kind is ReportKind.HELD else queue.rejected
        count = 0 if requeue else len(series)
        with self._lock:
            if requeue:
                for when, value, step in zip(
                    series.times, series.values, series.steps, strict=True
                ):
                    if queue.pending.index(when) < 0:
                        queue.pending.insert(when, value, step)
                        count += 1
            series.clear()
            if kind is ReportKind.REJECTED:
                queue.rejected_message = None
        self._report(OutboxReport(kind, key))
        await self.async_save()
        self._changed()
        return count

    # --- meters going away ----------------------------------------------------

    async def async_remove_queue(self, key: str) -> int:
        """A meter was removed: drop everything it still had (and report it)."""
        with self._lock:
            queue = self._queues.pop(key, None)
            self.meter_states.pop(key)
        self._mark(key)
        if queue is None:
            return 0
        self._report(OutboxReport(ReportKind.REMOVED, key))
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


@lru_cache(maxsize=256)
def _moment(seconds: int) -> datetime:
    """Return ``from_epoch(seconds)``, kept: the views of a tick share times."""
    return from_epoch(seconds)


def _merged(into: Queue | None, queue: Queue) -> Queue:
    """Return ``into`` with the readings of ``queue`` added (``queue`` if None).

    Readings at a time ``into`` already keeps stay as they are there; its last
    delivered reading stays unless ``queue``'s is newer.
    """
    if into is None:
        return queue
    for mine, theirs in (
        (into.pending, queue.pending),
        (into.held, queue.held),
        (into.rejected, queue.rejected),
    ):
        for when, value, step in zip(
            theirs.times, theirs.values, theirs.steps, strict=True
        ):
            if not into.contains(when):
                mine.insert(when, value, step)
    if queue.rejected and into.rejected_message is None:
        into.rejected_message = queue.rejected_message
    if queue.last_time is not None and (
        into.last_time is None or queue.last_time > into.last_time
    ):
        into.last_time, into.last_value = queue.last_time, queue.last_value
        into.last_step = queue.last_step
    # Each run by its two ends (a query inside it compares with both).
    for run in (queue.delivered.firsts, queue.delivered.lasts):
        for when, value, step in zip(run.times, run.values, run.steps, strict=True):
            into.delivered.add(when, value, step)
    return into
