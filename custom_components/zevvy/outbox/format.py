"""The outbox's storage format: readings as compact arrays, and their JSON.

Readings are kept per queue key (the meter's subentry id, or ``ref:<device>/
<register>`` for readings without a meter), each queue sorted by time, as two
compact arrays (epoch seconds, kWh): 16 bytes a reading in memory instead of
about 120 for a list of tuples. Stored as JSON under ``zevvy.<entry_id>.outbox``::

    {"queues": {"<key>": {"device": ..., "register": ...,
                          "last": [epoch, kWh] | null,
                          "pending": {"t": [...], "v": [...]} | null,
                          "held": ..., "parked": ..., "parked_message": ...}},
     "overflow_dropped": <int>,
     "meter_states": {"<key>": {...}},
     "sender": {...}}

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
from typing import TYPE_CHECKING, Any, TypedDict

import orjson

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


def to_epoch(moment: datetime) -> int:
    """Return whole epoch seconds of an aware datetime."""
    return int(moment.timestamp())


def from_epoch(seconds: int) -> datetime:
    """Return the aware UTC datetime of epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where readings go: their outbox queue, and zevvy's device and register."""

    key: str
    device_ref: str
    register_ref: str

    @classmethod
    def for_meter(cls, meter: Meter) -> Destination:
        """Return a meter's destination (its queue is keyed by its subentry id)."""
        return cls(meter.subentry_id, meter.device_ref, meter.register_ref)

    @classmethod
    def manual(cls, device_ref: str, register_ref: str) -> Destination:
        """Return the destination of a device/register without a meter."""
        return cls(manual_key(device_ref, register_ref), device_ref, register_ref)


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
    """Everything the outbox keeps for one destination.

    ``pending``: to send, oldest first. ``held``: a drop against the readings
    beside it in time, waiting for the user's decision. ``rejected``: refused by zevvy
    (400/422), out of the retry loop until the user decides. ``last_*``: the
    last reading zevvy confirmed, a neighbour in the drop check and the start of
    gap fill.
    """

    device_ref: str
    register_ref: str
    pending: Series = field(default_factory=Series)
    held: Series = field(default_factory=Series)
    rejected: Series = field(default_factory=Series)
    rejected_message: str | None = None
    last_time: int | None = None
    last_value: float | None = None

    def __len__(self) -> int:
        """Return every reading the queue keeps."""
        return len(self.pending) + len(self.held) + len(self.rejected)

    def contains(self, when: int) -> bool:
        """Return whether a reading at ``when`` is kept or was the last sent."""
        return (
            when == self.last_time
            or self.pending.index(when) >= 0
            or self.held.index(when) >= 0
            or self.rejected.index(when) >= 0
        )

    def neighbours(self, when: int) -> tuple[float | None, float | None]:
        """Return the values of the readings just before and just after ``when``.

        Neighbours are pending readings and the last delivered one (held and
        rejected readings are not trusted as neighbours); None where there is none.
        """
        times = self.pending.times
        pos = bisect_left(times, when)
        before: tuple[int, float] | None = None
        after: tuple[int, float] | None = None
        if pos > 0:
            before = (times[pos - 1], self.pending.values[pos - 1])
        end = pos + 1 if pos < len(times) and times[pos] == when else pos
        if end < len(times):
            after = (times[end], self.pending.values[end])
        last, value = self.last_time, self.last_value
        if last is not None and value is not None:
            if last < when and (before is None or before[0] < last):
                before = (last, value)
            elif last > when and (after is None or after[0] > last):
                after = (last, value)
        return (
            None if before is None else before[1],
            None if after is None else after[1],
        )


class _QueueData(TypedDict, total=False):
    device: str
    register: str
    last: list[float] | None
    pending: Any
    held: Any
    parked: Any
    parked_message: str | None


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
                queue.pending.copy(),
                queue.held.copy(),
                queue.rejected.copy(),
                queue.rejected_message,
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
        device, register, last, pending, held, rejected, message = item
        queues[key] = {
            "device": device,
            "register": register,
            "last": last,
            "pending": fragment(pending),
            "held": fragment(held),
            "parked": fragment(rejected),
            "parked_message": message,
        }
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
        )
    return queues, int(data.get("overflow_dropped", 0))
