"""Running-total meters' readings: the collector's hook.

``MeterReadings.readings_at(meters, quarters)`` gives the readings of the meters
whose source is a running total (``running_total.py``) at quarter hours; meter
registers are read by ``quarters.py``. It follows every state change of their
sensors and persists their ``RunningState`` with the outbox.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from homeassistant.components.recorder.history import get_significant_states
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util

from .api import Reading
from .helpers import async_on_entry_updated
from .meters import Meter, resolve_meters
from .outbox import Outbox
from .running_total import RunningState, state_value

RECORDER_DOMAIN: Final = "recorder"


def recorded_states(
    hass: HomeAssistant, entity_id: str, since: datetime, with_start: bool
) -> list[State]:
    """Return an entity's recorded states after ``since``, oldest first.

    Every state with its attributes, as the recorder's statistics read them
    (``significant_changes_only=False``); ``with_start``: also the state at
    ``since``. Must run in the recorder's executor.
    """
    found = get_significant_states(
        hass,
        since,
        entity_ids=[entity_id],
        include_start_time_state=with_start,
        significant_changes_only=False,
        no_attributes=False,
    )
    return [state for state in found.get(entity_id, []) if isinstance(state, State)]


class MeterReadings:
    """The running totals of an entry's meters, fed by their state changes.

    ``reading`` is the collector's hook: the reading of any meter for a quarter
    hour (the sensor's value, or the running total). When a tracker starts
    with a state from before (Home Assistant or the integration was stopped,
    or a meter register continues as a running total), it first replays what
    the recorder recorded since, so that nothing counted meanwhile is missed;
    meanwhile it gives no readings (gap fill takes those from the statistics).
    """

    def __init__(
        self, hass: HomeAssistant, entry: ConfigEntry[Any], outbox: Outbox
    ) -> None:
        """Create the tracker; ``async_start`` loads the states and subscribes."""
        self._hass = hass
        self._entry = entry
        self._outbox = outbox
        self._states: dict[str, RunningState] = {}
        self._meters: dict[str, Meter] = {}  # by entity id
        # Meters replaying the recorder's states: the live states meanwhile.
        self._replaying: dict[str, list[State]] = {}
        self._unsub: CALLBACK_TYPE | None = None

    @callback
    def async_start(self) -> None:
        """Load the persisted states, follow the meters and their changes."""
        self._states = {
            key: RunningState.from_json(data)
            for key, data in self._outbox.meter_states.all().items()
        }
        async_on_entry_updated(self._hass, self._entry, self.async_sync)
        self.async_sync(replay=True)

    @callback
    def async_stop(self) -> None:
        """Stop following state changes."""
        if self._unsub is not None:
            self._unsub()
            self._unsub = None

    @callback
    def async_sync(self, replay: bool = False) -> None:
        """Follow the running-total meters (after a meter was added or changed).

        ``replay``: the persisted states are from before a stop.
        """
        meters = {
            meter.entity_id: meter
            for meter in resolve_meters(self._hass, self._entry)
            if meter.running_total
        }
        for meter in meters.values():
            key = meter.subentry_id
            running = self._states.setdefault(key, RunningState())
            catch_up = replay and running.seen is not None
            if running.start_at != meter.start_at:
                # A new start (added, or switched to a running total).
                running = self._states[key] = running.restart(
                    meter, self._hass.states.get(meter.entity_id)
                )
                catch_up = running.seen is not None or (
                    # Its start passed while nothing followed the sensor.
                    meter.start_at is not None
                    and meter.start_at < dt_util.utcnow().timestamp()
                )
            if catch_up and RECORDER_DOMAIN in self._hass.config.components:
                self._async_replay(meter)
            elif key not in self._replaying:
                self._apply(meter, self._hass.states.get(meter.entity_id))
            self._store(key)
        if set(meters) != set(self._meters):
            self.async_stop()
            if meters:
                self._unsub = async_track_state_change_event(
                    self._hass, list(meters), self._async_state_changed
                )
        self._meters = meters

    @callback
    def _async_replay(self, meter: Meter) -> None:
        if meter.subentry_id not in self._replaying:
            self._replaying[meter.subentry_id] = []
            self._entry.async_create_task(
                self._hass, self._async_replay_recorded(meter), "zevvy running total"
            )

    async def _async_replay_recorded(self, meter: Meter) -> None:
        """Apply the states the recorder has since the last one seen."""
        key = meter.subentry_id
        states: list[State] = []
        try:
            running = self._states[key]
            instance = get_instance(self._hass)
            # A meter that never saw its sensor: from the state at its start
            # (the recorder dates that state at the time asked, just before).
            since = running.seen
            if since is None and meter.start_at is not None:
                since = meter.start_at - 1
            if since is not None and await instance.async_db_ready:
                states = await instance.async_add_executor_job(
                    recorded_states,
                    self._hass,
                    meter.entity_id,
                    dt_util.utc_from_timestamp(since),
                    running.seen is None,
                )
        finally:
            live = self._replaying.pop(key, [])
            current = self._hass.states.get(meter.entity_id)
            for state in [*states, *live, current]:
                self._apply(meter, state)
            self._store(key)

    @callback
    def _async_state_changed(self, event: Event[EventStateChangedData]) -> None:
        meter = self._meters.get(event.data["entity_id"])
        if meter is None or (state := event.data["new_state"]) is None:
            return
        if (buffered := self._replaying.get(meter.subentry_id)) is not None:
            buffered.append(state)
        elif self._apply(meter, state):
            # Written with the next tick: a charger reporting every few seconds
            # must not rewrite the outbox each time (and after a crash the
            # recorder's states are replayed).
            self._store(meter.subentry_id, save=False)

    def _apply(self, meter: Meter, state: State | None) -> bool:
        if state is None or (found := state_value(state, meter.kind)) is None:
            return False
        running = self._states.setdefault(meter.subentry_id, RunningState())
        return running.apply(state.last_updated_timestamp, *found)

    def _store(self, key: str, *, save: bool = True) -> None:
        if key in self._states:
            self._outbox.meter_states.set(key, self._states[key].to_json(), save=save)

    def readings_at(
        self, meters: Iterable[Meter], quarters: Sequence[datetime]
    ) -> list[tuple[Meter, list[Reading]]]:
        """Return the running-total meters' readings at ``quarters`` (kWh, m³).

        The collector's hook: each is what the running total counted up to its
        quarter hour (state changes after it do not count, also on a late
        tick). None while a meter replays the recorder (gap fill has those).
        """
        result: list[tuple[Meter, list[Reading]]] = []
        for meter in meters:
            if not meter.running_total:
                continue
            readings: list[Reading] = []
            result.append((meter, readings))
            key = meter.subentry_id
            if key in self._replaying or (running := self._states.get(key)) is None:
                continue
            for quarter in quarters:
                when = int(quarter.timestamp())
                value = running.reading_at(when, meter.start_value, meter.kind)
                if value is not None:
                    readings.append(Reading(quarter, value))
            self._store(key)
        return result
