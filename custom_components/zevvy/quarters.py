"""Quarter hours: their arithmetic, and what a meter read at one.

All quarter-hour arithmetic of the integration lives here (``quarter_floor``,
``next_quarter``, ``quarters_through`` and their epoch twins). A meter's value
at a quarter hour is its state, or the recorder's state history:

A reading filed under quarter hour Q is the meter's value as of Q, never one read
later. On time, that is the current state. A tick that fires late (Home Assistant
busy, a suspended machine, a clock jump) owes every quarter hour since it was due,
and for each one:

* the current state, if its value has not changed since Q (``last_changed`` <= Q;
  ``last_updated`` also moves on attribute-only updates, which do not change the
  reading);
* else the state the recorder had at Q (its state history: the last change at or
  before Q), when the recorder is loaded and ready;
* else no reading: Q stays empty rather than get a later value.

A state that is ``unknown`` or ``unavailable`` at Q gives no reading, as on time.
A state stamped after the current time (the clock was set back since) counts as
unchanged: the recorder's history carries the same wrong times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from homeassistant.components.recorder.history import state_changes_during_period
from homeassistant.core import HomeAssistant, State, callback
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util
from sqlalchemy.exc import SQLAlchemyError

from .api import Reading
from .const import COLLECT_INTERVAL_MINUTES, LOGGER
from .meters import Meter, MeterKind, state_reading, state_value

RECORDER_DOMAIN: Final = "recorder"
QUARTER: Final = timedelta(minutes=COLLECT_INTERVAL_MINUTES)
QUARTER_SECONDS: Final = COLLECT_INTERVAL_MINUTES * 60
# The recorder's start-time state is the last one strictly before the start of
# a query, its changes strictly after: start a little before the first quarter
# hour so that a change exactly on it is seen.
_MARGIN: Final = timedelta(seconds=1)
# No recorded readings (shared, never changed).
_NOTHING: Final[Mapping[datetime, float]] = {}


class SensorValueSource:
    """The reading source ``sensor``: the sensor's value as of each quarter hour."""

    def __init__(self, hass: HomeAssistant, entry: Any, outbox: Any) -> None:
        """Read the states of ``hass`` (the entry and its outbox keep nothing)."""
        self._hass = hass

    @callback
    def async_start(self) -> None:
        """Nothing to follow: the states are read when asked."""

    @callback
    def async_stop(self) -> None:
        """Nothing to stop."""

    async def async_readings_at(
        self, meters: Sequence[Meter], quarters: Sequence[datetime]
    ) -> list[tuple[Meter, list[Reading]]]:
        """Return each meter's value as of each quarter hour (``async_readings_at``)."""
        return await async_readings_at(self._hass, meters, quarters)

    def statistics_base(self, meter: Meter) -> tuple[int, float] | None:
        """The statistics' ``state`` is the sensor's value."""
        return None


@callback
def recorder_loaded(hass: HomeAssistant) -> bool:
    """Return whether the recorder is set up (it is optional)."""
    return RECORDER_DOMAIN in hass.config.components


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
    return quarter_floor(moment) + QUARTER


def quarter_floor_epoch(epoch: float) -> int:
    """Return the quarter hour (epoch seconds) at or before ``epoch``."""
    return int(epoch - epoch % QUARTER_SECONDS)


def next_quarter_epoch(epoch: float) -> int:
    """Return the next quarter hour (epoch seconds) strictly after ``epoch``."""
    return quarter_floor_epoch(epoch) + QUARTER_SECONDS


def is_quarter_epoch(epoch: float) -> bool:
    """Return whether ``epoch`` (seconds) is a quarter hour."""
    return not epoch % QUARTER_SECONDS


def quarters_through(first: datetime, last: datetime) -> list[datetime]:
    """Return the quarter hours from ``first`` to ``last`` (both quarter hours)."""
    quarters = [first]
    while quarters[-1] + QUARTER <= last:
        quarters.append(quarters[-1] + QUARTER)
    return quarters


def _value_at(
    states: Sequence[State], quarter: datetime, kind: MeterKind
) -> float | None:
    """Return the reading of the last state changed at or before ``quarter``."""
    value: float | None = None
    for state in states:
        if state.last_changed > quarter:
            break
        value = state_reading(state, kind)
    return value


def _recorded_values(
    hass: HomeAssistant,
    wanted: Mapping[str, Sequence[datetime]],
    kinds: Mapping[str, MeterKind],
) -> dict[str, dict[datetime, float]]:
    """Return, per entity, its readings at the quarter hours from state history.

    Must run in the recorder's executor. Quarter hours before the recorder's
    oldest state of an entity (or without a usable state) are left out.
    """
    found: dict[str, dict[datetime, float]] = {}
    for entity_id, quarters in wanted.items():
        states = state_changes_during_period(
            hass,
            quarters[0] - _MARGIN,
            quarters[-1] + _MARGIN,
            entity_id,
            include_start_time_state=True,
        ).get(entity_id, [])
        kind = kinds.get(entity_id, MeterKind.ENERGY)
        values = {
            q: v for q in quarters if (v := _value_at(states, q, kind)) is not None
        }
        found[entity_id] = values
    return found


async def _async_recorded_values(
    hass: HomeAssistant,
    wanted: Mapping[str, Sequence[datetime]],
    kinds: Mapping[str, MeterKind],
) -> dict[str, dict[datetime, float]]:
    """Ask the recorder's state history; empty without a usable recorder."""
    if not wanted or not recorder_loaded(hass):
        return {}
    instance = get_instance(hass)
    ready = instance.async_db_ready
    if not ready.done() or not ready.result():
        return {}
    try:
        # States of the last seconds may still wait in the recorder's queue.
        await instance.async_block_till_done()
        return await instance.async_add_executor_job(
            _recorded_values, hass, wanted, kinds
        )
    except SQLAlchemyError:
        LOGGER.debug("Recorder history unavailable", exc_info=True)
        return {}


async def async_readings_at(
    hass: HomeAssistant, meters: Iterable[Meter], quarters: Sequence[datetime]
) -> list[tuple[Meter, list[Reading]]]:
    """Return each meter's readings at ``quarters`` (oldest first), where known."""
    now = dt_util.utcnow()
    first = min(quarters)
    get_state = hass.states.get
    result: list[tuple[Meter, list[Reading]]] = []
    # Meters whose value changed after a quarter hour: their readings wait
    # for the recorder's (with the state and since when its value holds).
    later: list[tuple[Meter, State, datetime, list[Reading]]] = []
    wanted: dict[str, list[datetime]] = {}
    meter_list = list(meters)
    # The common case: one quarter hour (a tick on time).
    single = len(quarters) == 1
    for meter in meter_list:
        if (state := get_state(meter.entity_id)) is None:
            LOGGER.debug("No state of %s: no reading", meter.entity_id)
            result.append((meter, []))
            continue
        since = state.last_changed
        if since > now:
            # Stamped by a clock that was set back since: the recorder's
            # history has the same wrong times, the state is the best value.
            since = datetime.min.replace(tzinfo=UTC)
        if since > first:
            readings: list[Reading] = []
            result.append((meter, readings))
            wanted[meter.entity_id] = [q for q in quarters if since > q]
            later.append((meter, state, since, readings))
            continue
        # On time (the common case): its value held at every quarter hour
        # (rounded by the outbox as it enters, not twice).
        if (value := state_value(state, meter.kind)) is None:
            for quarter in quarters:
                LOGGER.debug("No reading for %s at %s", meter.entity_id, quarter)
            result.append((meter, []))
            continue
        result.append(
            (
                meter,
                [Reading(first, value)]
                if single
                else [Reading(quarter, value) for quarter in quarters],
            )
        )
    if later:
        recorded = await _async_recorded_values(
            hass, wanted, {meter.entity_id: meter.kind for meter in meter_list}
        )
        _readings_later(later, quarters, recorded)
    return result


def _readings_later(
    later: Iterable[tuple[Meter, State, datetime, list[Reading]]],
    quarters: Sequence[datetime],
    recorded: Mapping[str, Mapping[datetime, float]],
) -> None:
    """Add the readings of meters whose value changed after a quarter hour:
    the state's from when it holds, the recorder's before."""
    for meter, state, since, readings in later:
        past = recorded.get(meter.entity_id, _NOTHING)
        for quarter in quarters:
            if since <= quarter:
                value = state_reading(state, meter.kind)
            elif quarter in past:
                value = past[quarter]
            else:
                LOGGER.info(
                    "No reading of %s for %s: its state changed since and the "
                    "recorder has no reading of that time",
                    meter.entity_id,
                    quarter.isoformat(),
                )
                continue
            if value is None:
                LOGGER.debug("No reading for %s at %s", meter.entity_id, quarter)
                continue
            readings.append(Reading(quarter, value))
