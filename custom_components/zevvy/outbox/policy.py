"""What the outbox accepts: duplicates, the drop check and the bound.

* A reading at a time its queue already keeps (pending, held, rejected, or the
  last one sent) is a duplicate and skipped.
* A drop is held back: zevvy flags drops as anomalies; the user decides in a
  repair issue (meter replaced: queue them; or discard them). A reading is
  checked against its neighbours in time, pending or delivered, before *and*
  after it, so that backfilled readings older than what was delivered are
  checked too: lower than the reading before it, or higher than the one after
  it, is a drop (``drop_of``). Delivered neighbours are the last delivered
  reading and, for older readings, the delivered runs (``Delivered``: the two
  ends of each run of consecutive quarter hours zevvy confirmed), so a reading
  typed or backfilled into an old gap meets zevvy's readings on both sides.
  Every such reading is held while the issue is open, so a replaced meter's
  readings are all kept.
* Less precision is no drop: a sensor switched from Wh to kWh with one decimal
  turns 1234.567 into 1234.5. Each reading carries the precision it was made
  with (``Destination.step``: of the sensor's unit and suggested display
  precision, or of the digits typed into ``send_reading``; never guessed from
  the value's digits, 1,235,000 Wh is no whole-kWh reading). Between readings
  of different precision a difference of up to one step of the coarser one
  (here 0.1 kWh) is tolerated; readings of the same precision, and readings
  whose precision is not known (stored before it was kept), must not go down
  at all (``drop_tolerance``).
* The outbox keeps at most ``OUTBOX_MAX_READINGS`` readings, pending, held and
  rejected alike; beyond that the oldest readings of all queues go first,
  whatever their kind, so old stuck readings never push fresh ones out.

Every reading is rounded here, once, as it enters (``round_kwh``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
import heapq

from ..api import Reading
from ..const import LOGGER, OUTBOX_MAX_READINGS, READING_DECIMALS
from .format import NOT_NEWEST, Destination, Queue, Series, from_epoch, to_epoch

# Dropped readings (outbox full) between two warnings in the log.
OVERFLOW_LOG_EVERY = 10_000
# The series of a queue, as enforce_bound numbers them.
PENDING = 0
HELD = 1
_REJECTED = 2


@dataclass(slots=True)
class AddResult:
    """What happened to readings handed to the outbox."""

    queued: int = 0
    duplicates: int = 0
    held: int = 0
    dropped: int = 0

    @property
    def changed(self) -> bool:
        """Return whether the outbox changed (something to save and show)."""
        return bool(self.queued or self.held or self.dropped)

    def add(self, other: AddResult) -> None:
        """Add another result's counts to this one."""
        self.queued += other.queued
        self.duplicates += other.duplicates
        self.held += other.held
        self.dropped += other.dropped


def drop_tolerance(first: int, second: int) -> int:
    """Return how much (Wh) a reading may be below one of another precision.

    ``first`` and ``second``: the two readings' precisions (Wh). Zero for the
    same precision or one not known (0); else one step of the coarser one.
    """
    if first == second or not first or not second:
        return 0
    return max(first, second)


def _is_drop(higher: float, higher_step: int, lower: float, lower_step: int) -> bool:
    """Return whether ``lower`` (the later reading) is a drop from ``higher``.

    Both in kWh, with their precisions in Wh.
    """
    if lower >= higher:
        return False  # the common case; never a drop (rounding keeps the order)
    tolerance = (
        0 if higher_step == lower_step else drop_tolerance(higher_step, lower_step)
    )
    return round(lower * 1000) < round(higher * 1000) - tolerance


def drop_of(
    queue: Queue, when: int, value: float, step: int = 0
) -> tuple[float, float] | None:
    """Return (from, to) if a reading at ``when`` is a drop against its neighbours.

    ``from`` is the higher, earlier value and ``to`` the lower, later one: the
    reading and its neighbour before it, or its neighbour after it and itself.
    ``step``: the reading's precision (Wh).
    """
    before, after = queue.neighbours(when)
    if before is not None and _is_drop(before[0], before[1], value, step):
        return before[0], value
    if after is not None and _is_drop(value, step, after[0], after[1]):
        return value, after[0]
    return None


def add_readings(
    queue: Queue,
    destination: Destination,
    readings: Iterable[Reading],
    result: AddResult | None = None,
) -> AddResult:
    """Queue readings in ``queue``: skip duplicates, hold drops back.

    Return what happened, counted into ``result`` if given (a tick adds the
    readings of every meter into one result).
    """
    if result is None:
        result = AddResult()
    step = destination.step
    for reading in readings:
        when = to_epoch(reading.read_at)
        # round_kwh, inline: every reading entering the outbox passes here.
        value = round(float(reading.value), READING_DECIMALS) + 0.0
        before = queue.newest_neighbour_of(when)
        if before is not NOT_NEWEST:
            # The common case (a tick): no duplicate, and only the reading
            # before it to compare with (drop_of, in short).
            if before is None or value >= before[0]:
                # No drop (_is_drop's first test, without the call).
                pending = queue.pending
                pending.times.append(when)
                pending.values.append(value)
                pending.steps.append(step)
                result.queued += 1
                continue
            drop = (
                (before[0], value)
                if _is_drop(before[0], before[1], value, step)
                else None
            )
        elif queue.contains(when):
            result.duplicates += 1
            continue
        else:
            drop = drop_of(queue, when, value, step)
        if drop is not None:
            queue.held.insert(when, value, step)
            result.held += 1
            LOGGER.warning(
                # In the meter's billing unit (kWh, or m³ for water and gas).
                "Reading %s of %s / %s at %s is a drop (%s, then %s); "
                "held back until you decide in Repairs",
                value,
                destination.device_ref,
                destination.register_ref,
                from_epoch(when).isoformat(),
                *drop,
            )
            continue
        queue.pending.insert(when, value, step)
        result.queued += 1
    return result


@dataclass(slots=True)
class Overflow:
    """What ``enforce_bound`` dropped: how many, the oldest time, which queues'
    held or rejected readings (their repair issues need an update)."""

    dropped: int = 0
    oldest: int | None = None
    held_keys: set[str] = field(default_factory=set)
    rejected_keys: set[str] = field(default_factory=set)
    # The times dropped, per (queue key, series: pending, held or rejected).
    times: dict[tuple[str, int], list[int]] = field(default_factory=dict)


def _series(queue: Queue) -> tuple[Series, Series, Series]:
    return queue.pending, queue.held, queue.rejected


def enforce_bound(queues: Mapping[str, Queue], total: int | None = None) -> Overflow:
    """Drop the oldest readings beyond OUTBOX_MAX_READINGS, of whatever kind.

    Pending, held and rejected readings all count and the oldest go first,
    whichever kind they are: readings stuck waiting for a decision never push
    fresh ones out, and memory stays bounded. ``total``: how many readings the
    queues keep, if known (else counted).
    """
    overflow = Overflow()
    if total is None:
        total = sum(len(queue) for queue in queues.values())
    excess = total - OUTBOX_MAX_READINGS
    if excess <= 0:
        return overflow
    # Walk the series' oldest readings in time order with a heap.
    cursors: dict[tuple[str, int], int] = {}
    heap: list[tuple[int, str, int]] = []
    for key, queue in queues.items():
        for kind, series in enumerate(_series(queue)):
            if series:
                cursors[key, kind] = 0
                heap.append((series.times[0], key, kind))
    heapq.heapify(heap)
    while heap and overflow.dropped < excess:
        _, key, kind = heapq.heappop(heap)
        cursors[key, kind] += 1
        overflow.dropped += 1
        times = _series(queues[key])[kind].times
        if cursors[key, kind] < len(times):
            heapq.heappush(heap, (times[cursors[key, kind]], key, kind))
    for (key, kind), count in cursors.items():
        if count:
            series = _series(queues[key])[kind]
            first = series.times[0]
            oldest = overflow.oldest
            overflow.oldest = first if oldest is None else min(oldest, first)
            overflow.times[key, kind] = series.times[:count].tolist()
            series.drop_first(count)
            if kind == HELD:
                overflow.held_keys.add(key)
            elif kind == _REJECTED:
                overflow.rejected_keys.add(key)
    return overflow


def log_overflow(before: int, dropped: int, oldest: int | None) -> None:
    """Log dropped readings: a warning when dropping starts, then every
    OVERFLOW_LOG_EVERY readings, so a long outage does not flood the log."""
    total = before + dropped
    log = (
        LOGGER.warning
        if before == 0 or before // OVERFLOW_LOG_EVERY != total // OVERFLOW_LOG_EVERY
        else LOGGER.debug
    )
    log(
        "The zevvy outbox is full (%s readings): dropped the %s oldest readings "
        "(from %s); %s dropped so far",
        OUTBOX_MAX_READINGS,
        dropped,
        from_epoch(oldest).isoformat() if oldest is not None else "?",
        total,
    )


def overflow_placeholders(total: int) -> dict[str, str]:
    """Return the overflow issue's placeholders: dropped so far, and the bound."""
    return {"dropped": str(total), "limit": str(OUTBOX_MAX_READINGS)}
