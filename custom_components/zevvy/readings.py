"""The reading source ``running_total`` (``reading_sources.py``).

``MeterReadings.async_readings_at(meters, quarters)`` gives the readings of the meters
whose source is a running total (``running_total.py``) at quarter hours; the
sensor's value is read by ``quarters.py``. It follows every state change of their
sensors (by entity registry id: through a rename of the entity id) and persists
their ``RunningState`` with the outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import replace
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
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util

from .api import Reading
from .helpers import async_on_entry_updated
from .meters import Meter, MeterKind, resolve_meters
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

    ``async_readings_at`` is the collector's hook: the running totals at
    quarter hours. State changes are taken in the order they were made (the
    current state after those Home Assistant has not handed over yet, a
    quarter hour read after them). When a tracker starts
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
        self._entry.async_on_unload(
            self._hass.bus.async_listen(
                er.EVENT_ENTITY_REGISTRY_UPDATED, self._async_registry_updated
            )
        )
        self.async_sync(replay=True)

    @callback
    def _async_registry_updated(
        self, event: Event[er.EventEntityRegistryUpdatedData]
    ) -> None:
        """Follow a sensor whose entity id was renamed (by its registry id)."""
        data = event.data
        if data["action"] != "update" or "old_entity_id" not in data:
            return
        if (meter := self._meters.get(data["old_entity_id"])) is None:
            return
        # The sensor may have no state under its new id yet (so it would not
        # resolve as a meter now): follow the new id directly.
        meters = {
            entity_id: other
            for entity_id, other in self._meters.items()
            if other.subentry_id != meter.subentry_id
        }
        meters[data["entity_id"]] = replace(meter, entity_id=data["entity_id"])
        self._async_follow(meters)

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
                    meter,
                    self._hass.states.get(meter.entity_id),
                    RECORDER_DOMAIN in self._hass.config.components,
                )
                catch_up = running.seen is not None or (
                    # Its start passed while nothing followed the sensor.
                    meter.start_at is not None
                    and meter.start_at < dt_util.utcnow().timestamp()
                )
            if catch_up and RECORDER_DOMAIN in self._hass.config.components:
                self._async_replay(meter)
            elif key not in self._replaying:
                self._async_apply_current_soon(meter)
            self._store(key)
        self._async_follow(meters)

    @callback
    def _async_apply_current_soon(self, meter: Meter) -> None:
        """Take a meter's current state after the state changes still on their
        way (Home Assistant hands them to trackers a turn later); taken before
        them, an older one would count as if the clock had been set back."""
        self._hass.loop.call_soon(self._async_apply_current, meter)

    @callback
    def _async_apply_current(self, meter: Meter) -> None:
        """Take a followed meter's current state (its zero point if new)."""
        key = meter.subentry_id
        followed = self._meters.get(meter.entity_id)
        if (
            self._unsub is None
            or followed is None
            or followed.subentry_id != key
            or key in self._replaying
        ):
            return  # stopped, no longer followed so, or replaying again
        if self._apply(followed, self._hass.states.get(followed.entity_id)):
            self._store(key)

    @callback
    def _async_follow(self, meters: dict[str, Meter]) -> None:
        """Follow the state changes of these meters' sensors (by entity id)."""
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
            # A meter that never saw its sensor, or that takes its zero point
            # from the state at its start: from that state (the recorder dates
            # it at the time asked, just before).
            since = running.seen
            with_start = running.seen is None or running.anchor
            if with_start and meter.start_at is not None:
                since = meter.start_at - 1
            if since is not None and await instance.async_db_ready:
                states = await instance.async_add_executor_job(
                    recorded_states,
                    self._hass,
                    meter.entity_id,
                    dt_util.utc_from_timestamp(since),
                    with_start,
                )
        finally:
            live = self._replaying.pop(key, [])
            running = self._states[key]
            if running.anchor:
                states = self._take_anchor(running, states, meter.kind)
            for state in [*states, *live]:
                self._apply(meter, state)
            self._store(key)
            self._async_apply_current_soon(meter)

    @staticmethod
    def _take_anchor(
        running: RunningState, states: list[State], kind: MeterKind
    ) -> list[State]:
        """Take the zero point from the last state before the start.

        Return the states after it. Without a usable state before the start,
        the seed and the current cycle stand (``restart``).
        """
        start = running.start_at or 0
        before = [s for s in states if s.last_updated_timestamp < start]
        for state in reversed(before):
            if (found := state_value(state, kind)) is not None:
                running.take_anchor(found[0], found[1])
                break
        running.anchor = False
        return states[len(before) :]

    @callback
    def _async_state_changed(self, event: Event[EventStateChangedData]) -> None:
        meter = self._meters.get(event.data["entity_id"])
        if meter is None or (state := event.data["new_state"]) is None:
            return
        if (buffered := self._replaying.get(meter.subentry_id)) is not None:
            buffered.append(state)
        elif self._apply(meter, state, live=True):
            # Written with the next tick: a charger reporting every few seconds
            # must not rewrite the outbox each time (and after a crash the
            # recorder's states are replayed).
            self._store(meter.subentry_id, save=False)

    def _apply(self, meter: Meter, state: State | None, *, live: bool = False) -> bool:
        if state is None or (found := state_value(state, meter.kind)) is None:
            return False
        running = self._states.setdefault(meter.subentry_id, RunningState())
        return running.apply(state.last_updated_timestamp, *found, live=live)

    def statistics_base(self, meter: Meter) -> tuple[int, float] | None:
        """The statistics' ``sum`` since the start, plus the start value."""
        if meter.start_at is None:
            return None
        return meter.start_at, meter.start_value

    def _store(self, key: str, *, save: bool = True) -> None:
        if key in self._states:
            self._outbox.meter_states.set(key, self._states[key].to_json(), save=save)

    async def async_readings_at(
        self, meters: Iterable[Meter], quarters: Sequence[datetime]
    ) -> list[tuple[Meter, list[Reading]]]:
        """Return the running-total meters' readings at ``quarters`` (kWh, m³).

        The collector's hook: each is what the running total counted up to its
        quarter hour (state changes after it do not count, also on a late
        tick). None while a meter replays the recorder (gap fill has those).

        Home Assistant hands a state change to its trackers one turn of the
        event loop after it was made (``async_track_state_change_event``
        dispatches "soon"), and the tick's collection starts in the turn the
        quarter hour came: a change made just before it would reach the
        running total only after its quarter hour was read (at a meter's
        start, that shifts the whole series). So the pending changes are let
        in first.
        """
        await asyncio.sleep(0)
        return self.readings_at(meters, quarters)

    def readings_at(
        self, meters: Iterable[Meter], quarters: Sequence[datetime]
    ) -> list[tuple[Meter, list[Reading]]]:
        """Return the readings at ``quarters`` as the states seen so far tell."""
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
