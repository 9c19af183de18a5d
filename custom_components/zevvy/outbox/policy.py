"""What the outbox accepts: duplicates, the drop check and the bound.

* A reading at a time its queue already keeps (pending, held, rejected, or the
  last one sent) is a duplicate and skipped.
* A reading lower than the one before it (pending or sent) is held back: zevvy
  flags drops as anomalies; the user decides in a repair issue (meter replaced:
  queue them; or discard them). Every reading lower than the baseline is held
  while the issue is open, so a replaced meter's readings are all kept.
* The outbox keeps at most ``OUTBOX_MAX_READINGS``; beyond that the oldest
  pending readings of all queues go first.

Every reading is rounded here, once, as it enters (``round_kwh``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
import heapq

from ..api import Reading
from ..const import LOGGER, OUTBOX_MAX_READINGS
from ..meters import round_kwh
from .format import Destination, Queue, from_epoch, to_epoch

# Dropped readings (outbox full) between two warnings in the log.
OVERFLOW_LOG_EVERY = 10_000


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


def add_readings(
    queue: Queue, destination: Destination, readings: Iterable[Reading]
) -> AddResult:
    """Queue readings in ``queue``: skip duplicates, hold drops back."""
    result = AddResult()
    for reading in readings:
        when = to_epoch(reading.read_at)
        value = round_kwh(float(reading.value))
        if queue.contains(when):
            result.duplicates += 1
            continue
        baseline = queue.baseline(when)
        if baseline is not None and value < baseline:
            queue.held.insert(when, value)
            result.held += 1
            LOGGER.warning(
                "Reading %s kWh of %s / %s at %s is lower than the one before "
                "(%s kWh); held back until you decide in Repairs",
                value,
                destination.device_ref,
                destination.register_ref,
                from_epoch(when).isoformat(),
                baseline,
            )
            continue
        queue.pending.insert(when, value)
        result.queued += 1
    return result


def enforce_bound(queues: Mapping[str, Queue]) -> tuple[int, int | None]:
    """Drop the oldest pending readings beyond OUTBOX_MAX_READINGS.

    Return how many were dropped and the time of the oldest one.
    """
    excess = sum(len(queue) for queue in queues.values()) - OUTBOX_MAX_READINGS
    if excess <= 0:
        return 0, None
    # Walk the queues' oldest readings in time order with a heap.
    cursors = {key: 0 for key, queue in queues.items() if queue.pending}
    heap = [(queues[key].pending.times[0], key) for key in cursors]
    heapq.heapify(heap)
    dropped = 0
    while heap and dropped < excess:
        _, key = heapq.heappop(heap)
        cursors[key] += 1
        dropped += 1
        times = queues[key].pending.times
        if cursors[key] < len(times):
            heapq.heappush(heap, (times[cursors[key]], key))
    oldest: int | None = None
    for key, count in cursors.items():
        if count:
            series = queues[key].pending
            first = series.times[0]
            oldest = first if oldest is None else min(oldest, first)
            series.drop_first(count)
    return dropped, oldest


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
