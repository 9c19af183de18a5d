"""The outbox's storage format: readings as compact arrays, and their JSON.

Readings are kept per queue key (the meter's subentry id, or ``ref:<device>/
<register>`` for readings without a meter), each queue sorted by time, as two
compact arrays (epoch seconds, kWh) and the precision each reading was made
with (Wh, ``meters.reading_step``; 0: not known): 20 bytes a reading in memory
instead of about 120 for a list of tuples. Stored as JSON under
``zevvy.<entry_id>.outbox``::

    {"queues": {"<key>": {"device": ..., "register": ...,
                          "last": [epoch, kWh] | null, "last_step": <int>,
                          "series": <str> | null,
                          "pending": {"t": [...], "v": [...], "p": [...]} | null,
                          "held": ..., "parked": ..., "parked_message": ...,
                          "delivered": {"first": {...}, "last": {...}}}},
     "overflow_dropped": <int>,
     "meter_states": {"<key>": {...}},
     "sender": {...}}

``p``, ``last_step``, ``series`` and ``delivered`` came later: outboxes written
without them load with precision 0 (unknown: such readings are compared
strictly), no series and no delivered runs (only the last delivered reading is
then a neighbour). ``delivered`` (optional): the runs of consecutive quarter
hours zevvy confirmed, each by its first and last reading (``Delivered``).
``series``: the meter's reading source the queue's readings were made with
(``Destination.series``).

``meter_states``: what meters' reading sources remember (``meter_states.py``).
``sender`` (optional, written only when not empty): what the sender learned
about zevvy, registers set aside and a lowered batch size (``sender.py``).

``parked`` and ``parked_message`` are the stored names of the rejected readings
and zevvy's message (kept so that existing outboxes load unchanged).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
import math
from typing import TYPE_CHECKING, Any, Final, TypedDict

import orjson

from ..quarters import QUARTER_SECONDS

if TYPE_CHECKING:
    from ..meters import Meter

STORAGE_VERSION = 1
# Queue keys of readings without a meter subentry (manual readings) start with
# this; every other key is a meter's subentry id.
MANUAL_KEY_PREFIX = "ref:"


def manual_key(device_ref: str, register_ref: str) -> str:
    """Return the queue key for readings of a device/register without a meter."""
    return f"{MANUAL_KEY_PREFIX}{device_ref}/{register_ref}"


def is_meter_key(key: str) -> bool:
    """Return whether a queue key is a meter's subentry id."""
    return not key.startswith(MANUAL_KEY_PREFIX)


@lru_cache(maxsize=1024)
def to_epoch(moment: datetime) -> int:
    """Return whole epoch seconds of an aware datetime.

    Kept for the last times asked: the readings of a tick share their time.
    """
    return int(moment.timestamp())


def from_epoch(seconds: int) -> datetime:
    """Return the aware UTC datetime of epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC)


def meter_series(reading_source: str, start_at: int | None) -> str:
    """Return the series a meter's readings belong to: its reading source and,
    for a running total, its start (a new start is a new series)."""
    return reading_source if start_at is None else f"{reading_source}@{start_at}"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where readings go: their outbox queue, and zevvy's device and register.

    ``step``: the precision (Wh) of the readings added with it, where they were
    made (0: not known). ``series``: a meter's reading source (``meter_series``),
    None for readings that do not come from it (typed ones).
    """

    key: str
    device_ref: str
    register_ref: str
    step: int = 0
    series: str | None = None

    @classmethod
    def for_meter(cls, meter: Meter) -> Destination:
        """Return a meter's destination (its queue is keyed by its subentry id)."""
        return cls(
            meter.subentry_id,
            meter.device_ref,
            meter.register_ref,
            meter.step,
            meter_series(
                meter.reading_source, meter.start_at if meter.running_total else None
            ),
        )

    @classmethod
    def manual(cls, device_ref: str, register_ref: str) -> Destination:
        """Return the destination of a device/register without a meter."""
        return cls(manual_key(device_ref, register_ref), device_ref, register_ref)


def _times() -> array[int]:
    return array("q")


def _values() -> array[float]:
    return array("d")


def _steps() -> array[int]:
    return array("i")


@dataclass(slots=True)
class Series:
    """Readings sorted by time: epoch seconds, kWh and precision, side by side.

    ``steps``: the precision (Wh) each reading was made with; 0: not known.
    """

    times: array[int] = field(default_factory=_times)
    values: array[float] = field(default_factory=_values)
    steps: array[int] = field(default_factory=_steps)

    def __len__(self) -> int:
        """Return the number of readings."""
        return len(self.times)

    def index(self, when: int) -> int:
        """Return the position of ``when`` or -1."""
        times = self.times
        if not times or when > times[-1]:
            return -1  # the common case: a reading newer than all
        pos = bisect_left(times, when)
        return pos if times[pos] == when else -1

    def step_at(self, when: int) -> int:
        """Return the precision of the reading at ``when`` (0 if none)."""
        pos = self.index(when)
        return self.steps[pos] if pos >= 0 else 0

    def insert(self, when: int, value: float, step: int = 0) -> None:
        """Insert a reading at its place in time (appending is the fast path)."""
        if not self.times or self.times[-1] < when:
            self.times.append(when)
            self.values.append(value)
            self.steps.append(step)
            return
        pos = bisect_left(self.times, when)
        self.times.insert(pos, when)
        self.values.insert(pos, value)
        self.steps.insert(pos, step)

    def at(self, pos: int) -> tuple[int, float, int]:
        """Return the reading at position ``pos``: time, value, precision."""
        return self.times[pos], self.values[pos], self.steps[pos]

    def put(self, pos: int, when: int, value: float, step: int) -> None:
        """Replace the reading at position ``pos`` (the order must stay)."""
        self.times[pos] = when
        self.values[pos] = value
        self.steps[pos] = step

    def remove_at(self, pos: int) -> None:
        """Remove the reading at position ``pos``."""
        del self.times[pos]
        del self.values[pos]
        del self.steps[pos]

    def drop_first(self, count: int) -> None:
        """Remove the oldest ``count`` readings."""
        del self.times[:count]
        del self.values[:count]
        del self.steps[:count]

    def remove_times(self, times: array[int]) -> int:
        """Remove the readings at ``times`` (sorted); return how many went."""
        if not times or not self.times:
            return 0
        lo = bisect_left(self.times, times[0])
        hi = bisect_right(self.times, times[-1])
        if self.times[lo:hi] == times:
            del self.times[lo:hi]
            del self.values[lo:hi]
            del self.steps[lo:hi]
            return len(times)
        wanted = set(times)
        keep = [i for i in range(lo, hi) if self.times[i] not in wanted]
        removed = hi - lo - len(keep)
        self.times[lo:hi] = array("q", [self.times[i] for i in keep])
        self.values[lo:hi] = array("d", [self.values[i] for i in keep])
        self.steps[lo:hi] = array("i", [self.steps[i] for i in keep])
        return removed

    def clear(self) -> None:
        """Remove every reading."""
        del self.times[:]
        del self.values[:]
        del self.steps[:]

    def for_snapshot(self) -> Series:
        """Return a copy for a save's snapshot (three memcpy's, cheap on the
        event loop), never to be changed: an empty series gives
        ``NO_READINGS``, shared (a save of 1000 queues copies thousands).
        """
        if not self.times:
            return NO_READINGS
        return Series(
            self.times.__copy__(), self.values.__copy__(), self.steps.__copy__()
        )

    def to_json(self) -> dict[str, list[Any]]:
        """Return the columnar JSON form."""
        return {
            "t": self.times.tolist(),
            "v": self.values.tolist(),
            "p": self.steps.tolist(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Series:
        """Build a series from its JSON form (tolerates unsorted input).

        Without ``p`` (written before precisions were kept) every reading's
        precision is 0, not known.
        """
        if not data:
            return cls()
        times, values = data["t"], data["v"]
        steps = data.get("p") or [0] * len(times)
        rows = sorted(zip(times, values, steps, strict=True))
        return cls(
            array("q", [int(t) for t, _, _ in rows]),
            array("d", [float(v) for _, v, _ in rows]),
            array("i", [int(p) for _, _, p in rows]),
        )


# The copy of every empty series (never changed: snapshots only read it).
NO_READINGS: Final = Series()

# Runs of delivered readings a queue remembers (the oldest go first).
MAX_DELIVERED_RUNS = 100


@dataclass(slots=True)
class Delivered:
    """What zevvy confirmed of a queue, as runs of consecutive quarter hours.

    Each run is kept by its first and its last reading (``firsts[i]`` and
    ``lasts[i]``, sorted by time, never overlapping): enough to tell, for a
    reading typed or backfilled into a gap, the delivered readings just before
    and after the gap, however long ago they were delivered. At most
    ``MAX_DELIVERED_RUNS`` runs (a gap each) are kept.
    """

    firsts: Series = field(default_factory=Series)
    lasts: Series = field(default_factory=Series)

    def __len__(self) -> int:
        """Return the number of runs."""
        return len(self.firsts)

    def add(self, when: int, value: float, step: int = 0) -> None:
        """Note a delivered reading (extends, joins or starts a run)."""
        firsts, lasts = self.firsts, self.lasts
        ends = lasts.times
        count = len(ends)
        if count and ends[-1] == when - QUARTER_SECONDS:
            # The common case: the next quarter hour after the newest run.
            lasts.put(count - 1, when, value, step)
            return
        pos = bisect_left(firsts.times, when)
        if pos > 0 and ends[pos - 1] >= when:
            return  # inside a run: delivered already
        if pos < count and firsts.times[pos] == when:
            return
        joins_before = pos > 0 and ends[pos - 1] == when - QUARTER_SECONDS
        joins_after = pos < count and firsts.times[pos] == when + QUARTER_SECONDS
        if joins_before and joins_after:
            lasts.put(pos - 1, *lasts.at(pos))
            firsts.remove_at(pos)
            lasts.remove_at(pos)
        elif joins_before:
            lasts.put(pos - 1, when, value, step)
        elif joins_after:
            firsts.put(pos, when, value, step)
        else:
            firsts.insert(when, value, step)
            lasts.insert(when, value, step)
            if len(firsts) > MAX_DELIVERED_RUNS:
                firsts.drop_first(1)
                lasts.drop_first(1)

    def neighbours(
        self, when: int
    ) -> tuple[tuple[int, float, int] | None, tuple[int, float, int] | None]:
        """Return (time, value, precision) of the delivered readings around ``when``.

        The newest delivered before ``when`` and the oldest after it, as far as
        the runs tell (inside a run, its first and last reading).
        """
        firsts, lasts = self.firsts, self.lasts
        count = len(firsts)
        if not count:
            return None, None
        pos = bisect_left(firsts.times, when)
        before: tuple[int, float, int] | None = None
        after: tuple[int, float, int] | None = None
        if pos > 0:
            run = pos - 1
            if lasts.times[run] < when:
                before = lasts.at(run)
            else:
                before = firsts.at(run)
                if lasts.times[run] > when:
                    after = lasts.at(run)
        if after is None:
            if pos < count and firsts.times[pos] > when:
                after = firsts.at(pos)
            elif pos < count and lasts.times[pos] > when:
                after = lasts.at(pos)
            elif pos + 1 < count:
                after = firsts.at(pos + 1)
        return before, after

    def for_snapshot(self) -> Delivered:
        """Return a copy for a save's snapshot, never to be changed
        (``NOTHING_DELIVERED``, shared, when there is none)."""
        if not self.firsts.times:
            return NOTHING_DELIVERED
        return Delivered(self.firsts.for_snapshot(), self.lasts.for_snapshot())

    def to_json(self) -> dict[str, Any] | None:
        """Return the JSON form (None when nothing was delivered)."""
        if not self.firsts:
            return None
        return {"first": self.firsts.to_json(), "last": self.lasts.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Delivered:
        """Build the runs from their JSON form (None: none)."""
        if not data:
            return cls()
        firsts = Series.from_json(data.get("first"))
        lasts = Series.from_json(data.get("last"))
        if len(firsts) != len(lasts):
            return cls()  # not ours: forget it rather than guess
        return cls(firsts, lasts)


# What ``Queue.newest_neighbour_of`` returns for a time that is not the newest
# (compared by identity).
NOT_NEWEST: Final[tuple[float, int]] = (math.nan, -1)


# The copy of every queue's runs when nothing was delivered (only read).
NOTHING_DELIVERED: Final = Delivered()


@dataclass(slots=True)
class Queue:
    """Everything the outbox keeps for one destination.

    ``pending``: to send, oldest first. ``held``: a drop against the readings
    beside it in time, waiting for the user's decision. ``rejected``: refused by zevvy
    (400/422), out of the retry loop until the user decides. ``last_*``: the
    last reading zevvy confirmed, a neighbour in the drop check and the start of
    gap fill; ``last_step`` its precision. ``delivered``: the runs of readings
    zevvy confirmed, neighbours in the drop check of readings older than the
    last one. ``series``: the reading source the readings were made with
    (``Destination.series``; None: not known).
    """

    device_ref: str
    register_ref: str
    pending: Series = field(default_factory=Series)
    held: Series = field(default_factory=Series)
    rejected: Series = field(default_factory=Series)
    rejected_message: str | None = None
    last_time: int | None = None
    last_value: float | None = None
    last_step: int = 0
    series: str | None = None
    delivered: Delivered = field(default_factory=Delivered)

    def __len__(self) -> int:
        """Return every reading the queue keeps."""
        return len(self.pending) + len(self.held) + len(self.rejected)

    def contains(self, when: int) -> bool:
        """Return whether a reading at ``when`` is kept or was the last sent."""
        if when == self.last_time:
            return True
        for series in (self.pending, self.held, self.rejected):
            times = series.times
            # A reading newer than all of a series (the common case) is not in it.
            if times and when <= times[-1] and series.index(when) >= 0:
                return True
        return False

    def newest_neighbour_of(self, when: int) -> tuple[float, int] | None:
        """Return ``neighbours(when)[0]`` if ``when`` is after every reading
        kept and the last sent (a tick's reading), else ``NOT_NEWEST``.

        That neighbour is the newest pending reading or the last delivered
        one, whichever is newer (the pending one if at the same time).
        """
        last = self.last_time
        pending = self.pending
        times = pending.times
        held, rejected = self.held.times, self.rejected.times
        if (
            (last is not None and when <= last)
            or (times and when <= times[-1])
            or (held and when <= held[-1])
            or (rejected and when <= rejected[-1])
        ):
            return NOT_NEWEST
        value = self.last_value
        if times and (last is None or value is None or times[-1] >= last):
            return pending.values[-1], pending.steps[-1]
        if last is not None and value is not None:
            return value, self.last_step
        return None

    def neighbours(
        self, when: int
    ) -> tuple[tuple[float, int] | None, tuple[float, int] | None]:
        """Return (value, precision) of the readings just before and after ``when``.

        Neighbours are pending readings and delivered ones: the last delivered
        one, and for a reading older than it the delivered runs (held and
        rejected readings are not trusted as neighbours); None where there is
        none.
        """
        pending = self.pending
        times = pending.times
        pos = bisect_left(times, when)
        before: tuple[int, float, int] | None = None
        after: tuple[int, float, int] | None = None
        if pos > 0:
            before = (times[pos - 1], pending.values[pos - 1], pending.steps[pos - 1])
        end = pos + 1 if pos < len(times) and times[pos] == when else pos
        if end < len(times):
            after = (times[end], pending.values[end], pending.steps[end])
        last, value = self.last_time, self.last_value
        if last is not None and value is not None:
            if last < when:
                if before is None or before[0] < last:
                    before = (last, value, self.last_step)
            elif last > when:
                if after is None or after[0] > last:
                    after = (last, value, self.last_step)
                # Older than the last delivered reading: the delivered runs
                # know the readings around it (a gap being filled).
                sent_before, sent_after = self.delivered.neighbours(when)
                if sent_before is not None and (
                    before is None or before[0] < sent_before[0]
                ):
                    before = sent_before
                if sent_after is not None and sent_after[0] < after[0]:
                    after = sent_after
        return (
            None if before is None else (before[1], before[2]),
            None if after is None else (after[1], after[2]),
        )


class _QueueData(TypedDict, total=False):
    device: str
    register: str
    last: list[float] | None
    last_step: int
    series: str | None
    pending: Any
    held: Any
    parked: Any
    parked_message: str | None
    delivered: Any


type Snapshot = dict[str, Any]


def snapshot(
    queues: Mapping[str, Queue],
    overflow_dropped: int,
    meter_states: Mapping[str, dict[str, Any]] | None = None,
    sender: Mapping[str, Any] | None = None,
) -> Snapshot:
    """Copy what is to be saved; runs on the event loop and must be cheap.

    Meter states and the sender's state are replaced, never changed in place:
    a shallow copy suffices.
    """
    return {
        "meter_states": dict(meter_states or {}),
        "sender": dict(sender or {}),
        "queues": {
            key: (
                queue.device_ref,
                queue.register_ref,
                None
                if queue.last_time is None
                else [queue.last_time, queue.last_value],
                queue.pending.for_snapshot(),
                queue.held.for_snapshot(),
                queue.rejected.for_snapshot(),
                queue.rejected_message,
                queue.last_step,
                queue.series,
                queue.delivered.for_snapshot(),
            )
            for key, queue in queues.items()
        },
        "overflow_dropped": overflow_dropped,
    }


def encode(data: Snapshot) -> dict[str, Any]:
    """Turn a snapshot into JSON-ready data; runs in the executor."""

    def fragment(series: Series) -> orjson.Fragment | None:
        if not series:
            return None
        return orjson.Fragment(orjson.dumps(series.to_json()))

    queues: dict[str, _QueueData] = {}
    for key, item in data["queues"].items():
        (
            device,
            register,
            last,
            pending,
            held,
            rejected,
            message,
            step,
            series,
            delivered,
        ) = item
        runs = delivered.to_json()
        queues[key] = {
            "device": device,
            "register": register,
            "last": last,
            "last_step": step,
            "series": series,
            "pending": fragment(pending),
            "held": fragment(held),
            "parked": fragment(rejected),
            "parked_message": message,
        }
        if runs is not None:
            queues[key]["delivered"] = orjson.Fragment(orjson.dumps(runs))
    encoded: dict[str, Any] = {
        "queues": queues,
        "overflow_dropped": data["overflow_dropped"],
        "meter_states": data.get("meter_states", {}),
    }
    if sender := data.get("sender"):
        encoded["sender"] = sender
    return encoded


def decode(data: Mapping[str, Any]) -> tuple[dict[str, Queue], int]:
    """Return the queues and the overflow counter of stored data."""
    queues: dict[str, Queue] = {}
    for key, raw in data.get("queues", {}).items():
        last = raw.get("last")
        queues[key] = Queue(
            device_ref=raw["device"],
            register_ref=raw["register"],
            pending=Series.from_json(raw.get("pending")),
            held=Series.from_json(raw.get("held")),
            rejected=Series.from_json(raw.get("parked")),
            rejected_message=raw.get("parked_message"),
            last_time=int(last[0]) if last else None,
            last_value=float(last[1]) if last else None,
            last_step=int(raw.get("last_step") or 0) if last else 0,
            series=raw.get("series"),
            delivered=Delivered.from_json(raw.get("delivered")),
        )
    return queues, int(data.get("overflow_dropped", 0))
