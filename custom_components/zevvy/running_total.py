"""Running totals: a meter reading that only goes up, from a sensor that restarts.

Many chargers and counters restart from zero: wallbox's ``added_energy`` and
peblar's ``energy_session`` per charging session, daily counters, utility_meter
cycles. A meter with the reading source "running total" delivers

    reading(Q) = start value + what the sensor counted from the meter's start to Q

adding across resets by the rule Home Assistant's statistics use for the ``sum``
of an energy sensor (``compile_statistics`` in
homeassistant/components/sensor/recorder.py, mirrored in ``count``):

* ``total_increasing``: a value below 90 % of the one before is a reset (a new
  cycle counted from 0, so the new value counts fully); a smaller dip is counted
  as a decrease (the reading goes down and the outbox holds it back); negative
  values are ignored.
* ``total``: a new ``last_reset`` starts a new cycle from 0; otherwise the
  difference counts. One exception, where Home Assistant's ``sum`` loses a
  whole cycle: a sensor whose value falls to the new cycle's (below 90 %)
  before its ``last_reset`` follows in a second state change (a template sensor renders
  the two one after the other; a device may report them apart). When the new
  ``last_reset`` is at most ``CYCLE_SKEW`` after that fall, the new cycle began
  with it: the fall is not a decrease, and the cycle counts from 0 from there.
* The first value is the zero point; unknown, unavailable and non-numeric states
  are skipped.
* A state change stamped before the last one seen (the clock was set back)
  still counts, as of the last one's time.

``readings.py`` feeds every state change of the meters' sensors (as the recorder
sees them) into a ``RunningState`` per meter (last value, counted so far,
``last_reset``, the counted amount at recent quarter hours), persisted with the
outbox, so that a session that ends and restarts between two quarter hours is
counted and the total survives restarts (a reset while Home Assistant was
stopped is seen on the first state after the start), reauthentication and
outages.

The value at quarter hour Q is the one after the last state *before* Q, like a
statistics row ending at Q. History (``history.py``) computes the same readings
from the statistics: start value + sum(Q) - sum(start); both count from the
meter's start (``start_at``, the first quarter hour after the meter was added or
switched), so live ticks, gap fill and ``upload_history`` agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import math
from typing import Any, Final

from homeassistant.components.sensor import (
    ATTR_LAST_RESET,
    ATTR_STATE_CLASS,
    SensorStateClass,
)
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import State
from homeassistant.util import dt as dt_util

from .const import LOGGER
from .meters import KINDS, Meter, MeterKind, to_reading
from .quarters import quarter_floor_epoch

# Home Assistant's rule: a total_increasing value below this share of the one
# before is a meter reset (``reset_detected`` in sensor/recorder.py).
RESET_RATIO: Final = 0.9
# Seconds of quarter-hour marks kept: how late a tick may ask for a quarter hour.
MARKS_KEPT: Final = 24 * 3600
# How late a device may report a new cycle (a daily counter polled every half
# hour shows the old day's value until then): zevvy's last reading within this
# time after a cycle's last_reset may still be of the cycle before.
LATE_RESET: Final = 3600
# Half the last digit of a reading (3 decimals): a sensor value this much below
# the seed (a reading, rounded) may still be the very value it was read from.
SEED_TOLERANCE: Final = 0.0005
# Seconds a new cycle's ``last_reset`` may lie after the fall of the value it
# starts with (the device's clock behind Home Assistant's).
CYCLE_SKEW: Final = 60


def _last_reset(value: Any) -> str | None:
    """Return ``last_reset`` as a UTC ISO string (None if missing or invalid)."""
    if not isinstance(value, str) or (moment := dt_util.parse_datetime(value)) is None:
        return None
    return dt_util.as_utc(moment).isoformat()


@dataclass(slots=True)
class RunningState:
    """What a running total remembers of its sensor (persisted with the outbox).

    ``counted`` is what the sensor counted since the tracker first saw it (in
    the meter kind's billing unit: kWh, m³);
    ``marks`` the counted amount at recent quarter hours crossed by a state
    change; ``known_from``: quarter hours up to it cannot be answered.
    ``start_at``/``start_counted``: the counted amount at the meter's start.
    ``anchor``: the sensor's value and cycle at the start are still to be taken
    from the recorder's history (a switch that continues a series).
    ``fell``: (time, value before) of the last fall of a ``total`` sensor's
    value below 90 % within its cycle, until the cycle ends: a new cycle that
    began with it counts from there.
    """

    value: float | None = None
    last_reset: str | None = None
    counted: float = 0.0
    seen: float | None = None
    known_from: float = 0.0
    marks: list[tuple[int, float]] = field(default_factory=list)
    start_at: int | None = None
    start_counted: float | None = None
    anchor: bool = False
    fell: tuple[float, float] | None = None

    def restart(
        self, meter: Meter, state: State | None, recorded: bool = False
    ) -> RunningState:
        """Return the state for a new start of the meter (its ``start_at``).

        Continuing a meter register's series (``start_seed``: the sensor read
        that at the start, the last reading zevvy has), counting starts there:
        the sensor's value and cycle at ``start_at`` are the zero point. With
        the recorder (``recorded``) they are taken from its history when it is
        replayed (``anchor``); until then, and without it, the seed stands for
        the value, and the current state's ``last_reset`` tells the cycle: one
        that began after ``start_at`` is a new cycle (counted in full). One
        that began at ``start_at`` itself (a daily counter's midnight) was on
        the sensor at the start only if its first state came just before (the
        device's clock ahead): then the seed is its value, and it has not
        gone below it since; below the seed, the seed was the old cycle's end.
        The same within ``LATE_RESET`` before ``start_at``: a device that
        reports its reset late (polled) still showed the old cycle then. A
        cycle that began longer before is the seed's own cycle.
        Otherwise the counting goes on and the new start is looked up.
        """
        if meter.start_at is None or meter.start_seed is None:
            self.start_at, self.start_counted = meter.start_at, None
            return self
        running = RunningState(
            value=meter.start_seed,
            seen=meter.start_at - 1,
            known_from=meter.start_at - 1,
            start_at=meter.start_at,
            start_counted=0.0,
            anchor=recorded,
        )
        found = None if state is None else state_value(state, meter.kind)
        if (
            found is not None
            and found[1] is not None
            and (began := dt_util.parse_datetime(found[1])) is not None
            and (
                began.timestamp() < meter.start_at - LATE_RESET
                or (
                    began.timestamp() <= meter.start_at
                    and found[0] + SEED_TOLERANCE >= meter.start_seed
                )
            )
        ):
            # The cycle of the start goes on (a cycle that began later counts
            # from 0).
            running.last_reset = found[1]
        return running

    def take_anchor(self, value: float, last_reset: str | None) -> None:
        """Take the sensor's value and cycle at ``start_at`` (from history)."""
        self.value, self.last_reset, self.anchor = value, last_reset, False

    def count(
        self, when: float, value: float, last_reset: str | None, state_class: Any
    ) -> None:
        """Add one sensor value (of time ``when``) by Home Assistant's statistics
        rule, a cycle whose value fell before its ``last_reset`` came included."""
        previous = self.value
        if (
            state_class != SensorStateClass.TOTAL_INCREASING
            and last_reset is not None
            and last_reset != self.last_reset
        ):
            # A new cycle (or the zero point): it counts from 0.
            if previous is None:
                pass
            elif (fell := self._fall_the_cycle_began_with(last_reset)) is not None:
                # It began with the fall: counted from there, not from now,
                # also at the quarter hours since (a late tick reads them).
                fell_at, before = fell
                self.counted += value - previous + before
                self.marks = [
                    (quarter, counted + before if quarter > fell_at else counted)
                    for quarter, counted in self.marks
                ]
                if (
                    self.start_counted is not None
                    and self.start_at is not None
                    and self.start_at > fell_at
                ):
                    # The meter started after the fall: within the new cycle.
                    self.start_counted += before
            else:
                self.counted += value
            self.last_reset = last_reset
            self.fell = None
        elif previous is None:
            pass  # the zero point
        elif state_class == SensorStateClass.TOTAL_INCREASING:
            if value < 0:
                return  # Home Assistant ignores it
            reset = value < RESET_RATIO * previous
            self.counted += value if reset else value - previous
        else:
            if (
                self.last_reset is not None
                and value < RESET_RATIO * previous
                and (self.fell is None or previous >= self.fell[1])
            ):
                # A fall like a new cycle's start (Home Assistant's reset
                # rule), from the cycle's highest value so far.
                self.fell = (when, previous)
            self.counted += value - previous
        self.value = value

    def _fall_the_cycle_began_with(self, last_reset: str) -> tuple[float, float] | None:
        """Return (time, value before) of the fall a new cycle began with, if any.

        ``last_reset`` (when the new cycle began) at or before the last fall
        of the value in the old cycle, or at most ``CYCLE_SKEW`` after it.
        """
        if self.fell is None or (began := dt_util.parse_datetime(last_reset)) is None:
            return None
        return self.fell if began.timestamp() <= self.fell[0] + CYCLE_SKEW else None

    def apply(
        self,
        when: float,
        value: float,
        last_reset: str | None,
        state_class: Any,
        *,
        live: bool = False,
    ) -> bool:
        """Take a sensor state of time ``when``; False if not newer than the last.

        A ``live`` state (a state change as it happens) is newer than the last
        even when stamped before it (the clock was set back): it counts as of
        the last one's time (no quarter hour passes), so that a reset in that
        window is not lost. Recorded states stamped so are ones already seen.
        """
        if self.seen is not None and when <= self.seen:
            if not live or (value, last_reset) == (self.value, self.last_reset):
                return False
            self.count(self.seen, value, last_reset, state_class)
            return True
        if self.seen is None:
            self.known_from = when
        elif (quarter := quarter_floor_epoch(when)) > self.seen:
            # The counted amount at the newest quarter hour this state crosses.
            self.marks.append((quarter, self.counted))
        self.count(when, value, last_reset, state_class)
        self.seen = when
        while self.marks and self.marks[0][0] < when - MARKS_KEPT:
            self.known_from = max(self.known_from, self.marks.pop(0)[0])
        return True

    def counted_at(self, quarter: int) -> float | None:
        """Return the counted amount at a quarter hour, None if unknown."""
        if self.seen is None or quarter <= self.known_from:
            return None
        if self.seen < quarter:
            return self.counted
        return next((counted for when, counted in self.marks if when >= quarter), None)

    def reading_at(
        self, quarter: int, start_value: float, kind: MeterKind = MeterKind.ENERGY
    ) -> float | None:
        """Return the running total at a quarter hour, None if unknown.

        In the kind's billing unit (kWh, m³), as ``counted`` is.
        """
        if self.start_at is None or quarter < self.start_at:
            return None
        if self.start_counted is None:
            start = self.counted_at(self.start_at)
            if (
                start is None
                and self.seen is not None
                and self.start_at <= self.known_from
            ):
                # Nothing known of the start (its state was lost, no recorder):
                # the running total starts with this quarter hour instead.
                LOGGER.warning(
                    "Running total: the sensor's state at the meter's start is "
                    "unknown; it starts at %s",
                    dt_util.utc_from_timestamp(quarter).isoformat(),
                )
                start = self.counted_at(quarter)
            if start is None:
                return None
            self.start_counted = start
        counted = self.counted_at(quarter)
        if counted is None:
            return None
        return to_reading(
            start_value + counted - self.start_counted,
            KINDS[kind].billing_unit,
            kind,
        )

    def to_json(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "value": self.value,
            "last_reset": self.last_reset,
            "counted": self.counted,
            "seen": self.seen,
            "known_from": self.known_from,
            "marks": [list(mark) for mark in self.marks],
            "start_at": self.start_at,
            "start_counted": self.start_counted,
            "anchor": self.anchor,
            "fell": None if self.fell is None else list(self.fell),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunningState:
        """Build the state from its stored form."""
        return cls(
            value=data.get("value"),
            last_reset=data.get("last_reset"),
            counted=float(data.get("counted") or 0.0),
            seen=data.get("seen"),
            known_from=float(data.get("known_from") or 0.0),
            marks=[
                (int(when), float(counted)) for when, counted in data.get("marks") or []
            ],
            start_at=data.get("start_at"),
            start_counted=data.get("start_counted"),
            anchor=bool(data.get("anchor")),
            fell=None if not (fell := data.get("fell")) else (fell[0], fell[1]),
        )


def state_value(state: State, kind: MeterKind) -> tuple[float, str | None, Any] | None:
    """Return (value, last_reset, state class) of a state, None if not numeric.

    The value in the kind's billing unit (kWh, m³). Unlike a reading, it is
    neither rounded nor refused when negative (the rule decides).
    """
    spec = KINDS[kind]
    unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
    if unit not in spec.units:
        return None
    try:
        value = float(state.state)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return (
        spec.converter.convert(value, unit, spec.billing_unit),
        _last_reset(state.attributes.get(ATTR_LAST_RESET)),
        state.attributes.get(ATTR_STATE_CLASS),
    )
