"""What zevvy must hold: an independent model of the README's rules.

Written from README.md ("How delivery works", "Chargers and counters that
restart"), not from the integration's code; it imports nothing of
``custom_components.zevvy``. Input: the states Home Assistant saw of each
simulated sensor (a timeline per meter, with the instants they were set), the
meter's reading source and the instants the integration was running. Output, per
meter and quarter hour: the value zevvy must hold, or that the quarter hour may be
missing, or that it must be there.

Rules modelled:

- A sensor-value meter's reading at a quarter hour is the sensor's state as of
  that quarter hour (the last state set at or before it), converted to kWh
  (Wh / 1000, MWh * 1000) and rounded to 3 decimals. ``unknown``/``unavailable``
  give no reading (never a 0). States are taken in the order they were set:
  one set after Home Assistant's clock was set back (stamped before the last
  one, within the quarter hour) is the newer one and still counts.
- A running total's reading is its start value plus what the sensor counted since
  the meter's start (the states the integration saw: the simulation has no
  recorder to replay the others), by Home Assistant's statistics ``sum`` rule: a
  ``total_increasing`` state below 90 % of the previous one is a restart and
  counts from zero; a ``total`` state with a new ``last_reset`` starts a new cycle
  (counts from zero); otherwise the difference counts. Except (README, "Chargers
  and counters that restart"): a ``total`` value that fell below 90 % of the
  cycle's highest before, with the new ``last_reset`` at most a minute after
  the fall, started that new cycle (the cycle before counts in full, the new
  one from the fall). Unavailable states are
  skipped. The count starts from the state as of the meter's start.
- Switching the reading source (*Change meter*, "Switching a meter's reading
  source later"): the new source applies from the next quarter hour (a
  ``Phase``). To the sensor's value with a new register name: a new series.
  To a running total continuing zevvy's series: its start value is zevvy's last
  reading, its start that reading's time; without the recorder only the
  sensor's state at the switch is known, so what a cycle counted between that
  reading and the switch (or, switched while the integration was not running,
  its next start) is not added, and a cycle that began since (a later
  ``last_reset``) counts in full; one whose ``last_reset`` is that reading's
  very time, or up to an hour before it (reported late), counts in full only
  while the sensor reads below that reading (else it is taken for the
  reading's cycle). The held readings since that
  reading are discarded (not owed).
- A reading zevvy refuses as invalid (400/422) is set aside with a repair
  issue ("zevvy rejected readings"): sent again, it must be there with its
  value; discarded, it is not owed (``excused``).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

QUARTER = timedelta(minutes=15)
UNIT_TO_KWH = {"Wh": 0.001, "kWh": 1.0, "MWh": 1000.0}
NOT_NUMERIC = frozenset({"unknown", "unavailable"})


@dataclass(frozen=True, slots=True)
class Observation:
    """One state Home Assistant saw of a sensor."""

    at: datetime
    state: str
    unit: str
    last_reset: str | None = None
    # Whether the integration was running (loaded) to see it. The simulation
    # has no recorder, so a running total counts only the states it saw (and
    # the state current when it starts).
    seen: bool = True


@dataclass(frozen=True, slots=True)
class Phase:
    """A reading source in force from a quarter hour on (*Change meter*)."""

    since: datetime  # the first quarter hour read with it
    running: bool
    start_value: float = 0.0
    start_at: datetime | None = None
    # Continuing zevvy's series without a recorder: only the sensor's state at
    # this instant (the switch) is known of the time since ``start_at``.
    switched_at: datetime | None = None
    # Switched while the integration was not running (a login to renew): the
    # instant is when it starts again (``started``), the state it sees then.
    awaiting_start: bool = False


@dataclass
class MeterModel:
    """One meter: its sensor's timeline and how zevvy names its series."""

    name: str
    running: bool
    state_class: str = "total_increasing"
    start_value: float = 0.0
    start_at: datetime | None = None
    observations: list[Observation] = field(default_factory=list)
    # (since, device_ref, register_ref): the names in force from `since` on.
    registers: list[tuple[datetime, str, str]] = field(default_factory=list)
    added_at: datetime | None = None
    deleted_at: datetime | None = None
    # Later reading sources, in time order (the first is the fields above).
    phases: list[Phase] = field(default_factory=list)
    # Quarter hours not owed (after, before): held readings a switch or a
    # repair discarded, rejected readings the user discarded.
    excused: list[tuple[datetime, datetime]] = field(default_factory=list)
    # While a running total is computed: (time, value before) of the last fall
    # in the current cycle of a ``total`` sensor (see ``_counted``).
    _fell: tuple[datetime, float] | None = field(default=None, repr=False)

    def phase_at(self, quarter: datetime) -> Phase:
        """Return the reading source that reads ``quarter``."""
        for phase in reversed(self.phases):
            if phase.since <= quarter:
                return phase
        return Phase(
            since=datetime.min.replace(tzinfo=quarter.tzinfo),
            running=self.running,
            start_value=self.start_value,
            start_at=self.start_at,
        )

    def running_at(self, quarter: datetime) -> bool:
        """Return whether ``quarter`` is read as a running total."""
        return self.phase_at(quarter).running

    def observe(self, observation: Observation) -> None:
        """Record a state (in time order)."""
        self.observations.append(observation)

    def started(self, moment: datetime) -> None:
        """The integration starts: it sees the sensor's current state (also
        the one a switch made while it was not running counts from)."""
        if self.observations and not self.observations[-1].seen:
            self.observations[-1] = replace(self.observations[-1], seen=True)
        self.phases = [
            replace(phase, switched_at=moment, awaiting_start=False)
            if phase.awaiting_start
            else phase
            for phase in self.phases
        ]

    def state_as_of(self, moment: datetime) -> Observation | None:
        """Return the last state set at or before ``moment``.

        In the order set: the clock set back within a quarter hour keeps every
        state of it after the ones of the quarter hours before.
        """
        times = [o.at for o in self.observations]
        index = bisect_right(times, moment)
        return self.observations[index - 1] if index else None

    def value_at(self, quarter: datetime) -> float | None:
        """Return what zevvy must hold for ``quarter`` (None: no reading)."""
        phase = self.phase_at(quarter)
        if phase.running:
            return self._running_at(quarter, phase)
        observation = self.state_as_of(quarter)
        if observation is None or observation.state in NOT_NUMERIC:
            return None
        return round(float(observation.state) * UNIT_TO_KWH[observation.unit], 3)

    def _running_at(self, quarter: datetime, phase: Phase) -> float | None:
        start_at = phase.start_at
        assert start_at is not None
        if quarter < start_at:
            return None
        total = 0.0
        previous: Observation | None = None
        self._fell = None
        switched = phase.switched_at
        at_switch = self.state_as_of(switched) if switched is not None else None
        for observation in self.observations:
            if observation.at >= quarter:
                # A running total at Q counts the states before Q, like a
                # statistics row ending at Q (a state stamped Q is Q's next).
                break
            if switched is not None and observation.at <= switched:
                # Continuing zevvy's series: its last reading's state, then
                # the state at the switch; nothing else of the time between.
                if observation.at <= start_at:
                    if observation.state not in NOT_NUMERIC:
                        previous = observation
                    continue
                if observation is not at_switch:
                    continue
                if previous is None or observation.state in NOT_NUMERIC:
                    continue
                if self._taken_for_the_start(previous, observation, phase):
                    total += _kwh_raw(observation) - phase.start_value
                else:
                    total += self._counted(previous, observation)
                previous = observation
                continue
            if observation.state in NOT_NUMERIC or not observation.seen:
                continue
            if observation.at <= start_at or previous is None:
                previous = observation  # the baseline: the state as of the start
                continue
            total += self._counted(previous, observation)
            previous = observation
        return round(phase.start_value + total, 3)

    def _taken_for_the_start(
        self, previous: Observation, current: Observation, phase: Phase
    ) -> bool:
        """A new cycle whose ``last_reset`` is the start itself or up to an
        hour before it (a reset reported late), at the switch not below the
        start value: taken for the start's cycle (README, Known limitations)."""
        if (
            self.state_class != "total"
            or current.last_reset is None
            or current.last_reset == previous.last_reset
        ):
            return False
        began = datetime.fromisoformat(current.last_reset)
        return (
            phase.start_at - timedelta(hours=1) <= began <= phase.start_at
            and _kwh_raw(current) + 0.0005 >= phase.start_value
        )

    def _counted(self, previous: Observation, current: Observation) -> float:
        old = float(previous.state) * UNIT_TO_KWH[previous.unit]
        new = float(current.state) * UNIT_TO_KWH[current.unit]
        if self.state_class == "total":
            fell, self._fell = self._fell, None
            if current.last_reset != previous.last_reset:
                if (
                    fell is not None
                    and current.last_reset is not None
                    and datetime.fromisoformat(current.last_reset)
                    <= fell[0] + timedelta(minutes=1)
                ):
                    return new - old + fell[1]  # the cycle began with the fall
                return new
            if new < 0.9 * old and (fell is None or old >= fell[1]):
                fell = (current.at, old)
            self._fell = fell
            return new - old
        if new < 0.9 * old:
            return new
        return new - old

    def below_earlier(self, quarter: datetime) -> bool:
        """Return whether the value at ``quarter`` is below an earlier one.

        Such a reading is a drop: held back with a repair issue (README,
        "Meter reading went down"), not sent.
        """
        value = self.value_at(quarter)
        phase = self.phase_at(quarter)
        if value is None or phase.running:
            return False
        # Readings of the same series: since the phase's first quarter hour.
        first = self.state_as_of(phase.since)
        earlier = [
            v
            for o in self.observations
            if o.at < quarter
            and (first is None or o.at >= first.at)
            and (v := _kwh(o)) is not None
        ]
        return bool(earlier) and value < max(earlier)

    def registers_for(self, quarter: datetime) -> set[tuple[str, str]]:
        """Return the (device, register) names a reading of ``quarter`` may carry.

        The names in force at the quarter hour or set later (waiting readings
        of a renamed meter may move to the new names).
        """
        names: set[tuple[str, str]] = set()
        for index, (_since, device, register) in enumerate(self.registers):
            until = (
                self.registers[index + 1][0]
                if index + 1 < len(self.registers)
                else None
            )
            if until is None or until > quarter:
                names.add((device, register))
        return names


def _kwh_raw(observation: Observation) -> float:
    return float(observation.state) * UNIT_TO_KWH[observation.unit]


def _kwh(observation: Observation) -> float | None:
    if observation.state in NOT_NUMERIC:
        return None
    return round(float(observation.state) * UNIT_TO_KWH[observation.unit], 3)


@dataclass(frozen=True, slots=True)
class Expectation:
    """What zevvy must hold for one meter and quarter hour."""

    value: float | None  # None: no reading may exist
    required: bool  # must be on zevvy (or held/set aside with a repair)


def expectation(
    meter: MeterModel, quarter: datetime, *, running: bool, late: bool = False
) -> Expectation:
    """Return what zevvy must hold for ``meter`` at ``quarter``.

    ``running``: the integration was running (set up, ticking or stalled) at the
    quarter hour, so the reading is owed; ``late``: its tick came late while the
    sensor kept reporting. While Home Assistant was stopped, the
    quarter may be missing (no recorder in the simulation), but a reading that is
    there must still be the model's value.
    """
    value = meter.value_at(quarter)
    running_total = meter.running_at(quarter)
    # A deleted meter's readings not yet delivered are dropped with it (README,
    # "Removing a meter"): none of its quarter hours is owed.
    alive = (
        meter.added_at is None or meter.added_at < quarter
    ) and meter.deleted_at is None
    required = running and alive and value is not None
    if any(after < quarter < before for after, before in meter.excused):
        required = False
    if late and not running_total:
        # Read late (Home Assistant busy): the state as of the quarter hour comes
        # from the recorder when it changed since; without one it stays empty.
        required = False
    if running_total and value is not None:
        # A running total at a quarter hour its sensor was unavailable: the
        # README does not promise a reading then.
        observation = meter.state_as_of(quarter)
        if observation is None or observation.state in NOT_NUMERIC:
            required = False
    return Expectation(value=value, required=required)
