"""A running total's start: what the sensor counted before it never counts.

A meter becomes a running total from 0 on a new register at the next quarter
hour (12:45): switched from the sensor's value by *Change meter*, or added as a
running total. The sensor (Wh) counts on before the start and after it; zevvy
receives 0.0 at the start and then what the sensor counted since, also when a
change comes in the last second before a quarter hour and the tick follows in
the same turn of Home Assistant's event loop (before the change reached the
running total). With the recorder (in-memory SQLite, 5-minute statistics
compiled by Home Assistant's own code) live ticks, gap fill and
``upload_history`` give the same numbers; without it, live ticks alone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import Recorder
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER, ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
)

from custom_components.zevvy.const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_READING_SOURCE,
    CONF_REGISTER_REF,
    CONF_START_VALUE,
    DOMAIN,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.meters import meter_title
from custom_components.zevvy.services import SERVICE_UPLOAD_HISTORY
from zevvy_sandbox import ZevvySandbox

from .test_running_total import (
    START,
    WH_SESSION,
    _stamp,
    add_running_meter,
    add_sensor,
    at,
    minute,
    readings,
    setup_entry,
)

FIVE = timedelta(minutes=5)
SECOND = timedelta(seconds=1)
NEW = "Energy total"  # the new series' register

# The sensor's changes (minute after 12:00, Wh). Those before 12:45, 13:00 and
# 13:30 come at 12:40, 12:50 and 13:25, or (``just_before``) in the last
# second before the quarter hour, its tick in the same turn of the event loop.
CHANGES: list[tuple[int, str]] = [
    (45, "1000400"),  # before the start: not counted
    (60, "1000650"),  # +0.25
    (90, "1001500"),  # +0.5 (after 13:05's +0.35)
]
# While the integration is stopped (13:02-13:20, with the recorder).
STOPPED_CHANGE = (65, "1001000")  # +0.35

EXPECTED_NEW = [
    (_stamp(minute(45)), 0.0),
    (_stamp(minute(0, 13)), 0.25),
    (_stamp(minute(15, 13)), 0.6),
    (_stamp(minute(30, 13)), 1.1),
]


def _plain_meter(
    hass: HomeAssistant, entry: MockConfigEntry, entity: er.RegistryEntry
) -> str:
    """Add a meter delivering the sensor's value to Dev / Energy."""
    subentry = ConfigSubentry(
        data={
            CONF_ENTITY_REGISTRY_ID: entity.id,
            CONF_ENTITY_ID: entity.entity_id,
            CONF_DEVICE_REF: "Dev",
            CONF_REGISTER_REF: "Energy",
        },
        subentry_type=SUBENTRY_TYPE_METER,
        title=meter_title("Dev", "Energy"),
        unique_id=entity.id,
    )
    hass.config_entries.async_add_subentry(entry, subentry)
    return subentry.subentry_id


async def _start_new_series(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    entity: er.RegistryEntry,
    key: str | None,
) -> None:
    """At 12:33: a running total from 0 on Dev / Energy total, from 12:45.

    ``key``: Change meter of that meter; None: Add meter.
    """
    names = {CONF_DEVICE_REF: "Dev", CONF_REGISTER_REF: NEW}
    if key is None:
        result = await hass.config_entries.subentries.async_init(
            (entry.entry_id, SUBENTRY_TYPE_METER), context={"source": SOURCE_USER}
        )
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"], {CONF_ENTITY_ID: entity.entity_id}
        )
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"], {**names, CONF_READING_SOURCE: "running_total"}
        )
        assert result["step_id"] == "start"
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"], {CONF_START_VALUE: 0.0}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
    else:
        result = await hass.config_entries.subentries.async_init(
            (entry.entry_id, SUBENTRY_TYPE_METER),
            context={"source": SOURCE_RECONFIGURE, "subentry_id": key},
        )
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"], {**names, CONF_READING_SOURCE: "running_total"}
        )
        assert result["step_id"] == "reconfigure_start"
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"], {CONF_START_VALUE: 0.0, CONF_REGISTER_REF: NEW}
        )
        assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()


class _Clock:
    """The clock, one minute at a time; the sensors' changes on the way."""

    def __init__(
        self,
        hass: HomeAssistant,
        freezer: FrozenDateTimeFactory,
        entities: list[er.RegistryEntry],
        *,
        just_before: bool,
        recorder: bool,
    ) -> None:
        self.hass = hass
        self.freezer = freezer
        self.entities = entities
        self.just_before = just_before
        self.recorder = recorder

    def show(self, value: str) -> None:
        for entity in self.entities:
            self.hass.states.async_set(entity.entity_id, value, WH_SESSION)

    async def recorded(self) -> None:
        if self.recorder:
            await async_wait_recording_done(self.hass)

    async def to(self, offset: int, change: str | None = None) -> None:
        """Move to ``offset`` minutes after 12:00 (ticks, statistics).

        ``change``: the sensor's value before this quarter hour: at 5 minutes
        before, or in the last second with the tick in the same turn.
        """
        moment = START.replace(minute=0) + timedelta(minutes=offset)
        if change is None:
            await at(self.hass, self.freezer, moment)
        elif self.just_before:
            await at(self.hass, self.freezer, moment - SECOND)
            self.show(change)
            # The tick, before the change reached the integration's trackers.
            self.freezer.move_to(moment)
            async_fire_time_changed(self.hass)
            await self.hass.async_block_till_done()
        else:
            await at(self.hass, self.freezer, moment - FIVE)
            self.show(change)
            await self.recorded()
            await at(self.hass, self.freezer, moment)
        await self.recorded()
        if self.recorder and offset % 5 == 0:
            # The recorder compiles the 5-minute period that just ended.
            do_adhoc_statistics(self.hass, start=moment - FIVE)
            await async_wait_recording_done(self.hass)


async def _before_the_switch(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    clock: _Clock,
    sensor: er.RegistryEntry,
    change_meter: bool,
) -> None:
    """12:07 to 12:33: the sensor reads 1000 kWh, 1000.25 from 12:20; the new
    series starts at 12:33 (Change meter, or Add meter)."""
    key = _plain_meter(hass, entry, sensor) if change_meter else None
    await setup_entry(hass, entry)
    await clock.to(15)
    await clock.to(20)
    clock.show("1000250")
    await clock.recorded()
    for offset in range(25, 35, 5):
        await clock.to(offset)
    await _start_new_series(hass, entry, sensor, key)


SHAPES = [
    pytest.param(True, False, id="change_meter"),
    pytest.param(True, True, id="change_meter-just_before"),
    pytest.param(False, False, id="add_meter"),
    pytest.param(False, True, id="add_meter-just_before"),
]


class TestWithRecorder:
    """Live ticks, gap fill and upload_history agree for a new start."""

    @pytest.fixture
    def mock_recorder_before_hass(self, async_test_recorder: Any) -> None:
        """Prepare the recorder's database before hass (recorder_mock needs it)."""

    @pytest.mark.parametrize(("change_meter", "just_before"), SHAPES)
    async def test_new_start_counts_from_its_quarter_hour(
        self,
        recorder_mock: Recorder,
        hass: HomeAssistant,
        mock_config_entry: MockConfigEntry,
        sandbox: ZevvySandbox,
        freezer: FrozenDateTimeFactory,
        change_meter: bool,
        just_before: bool,
    ) -> None:
        """The new series gets 0.0 at 12:45, then what the sensor counted
        since (13:15 from the statistics, the integration being stopped); a
        twin added afterwards gets the same from upload_history."""
        freezer.move_to(START)
        sensor = add_sensor(hass, "meter", "1000000", WH_SESSION)
        twin = add_sensor(hass, "twin", "1000000", WH_SESSION)
        await async_wait_recording_done(hass)
        mock_config_entry.add_to_hass(hass)
        clock = _Clock(
            hass, freezer, [sensor, twin], just_before=just_before, recorder=True
        )
        await _before_the_switch(hass, mock_config_entry, clock, sensor, change_meter)

        changes = dict(CHANGES)
        for offset in range(35, 91, 5):
            await clock.to(offset, changes.get(offset))
            if offset == 60:
                await clock.to(62)
                assert await hass.config_entries.async_unload(
                    mock_config_entry.entry_id
                )
                clock.show(STOPPED_CHANGE[1])
                await clock.recorded()
            if offset == 80:
                await setup_entry(hass, mock_config_entry)  # gap fill: 13:15
                await hass.async_block_till_done(wait_background_tasks=True)

        assert readings(sandbox, "Dev", NEW) == EXPECTED_NEW
        if change_meter:
            assert readings(sandbox, "Dev") == [
                (_stamp(minute(15)), 1000.0),
                (_stamp(minute(30)), 1000.25),
            ]
        add_running_meter(
            hass, mock_config_entry, twin, device="Twin", start_at=minute(45)
        )
        response = await hass.services.async_call(
            DOMAIN,
            SERVICE_UPLOAD_HISTORY,
            {
                "start": minute(0),
                "end": minute(30, 13),
                "meters": [twin.entity_id],
            },
            blocking=True,
            return_response=True,
        )
        assert response is not None
        assert response["queued"] == len(EXPECTED_NEW)
        await hass.async_block_till_done()
        assert readings(sandbox, "Twin") == EXPECTED_NEW


class TestWithoutRecorder:
    """Without the recorder the running total counts the states it sees."""

    @pytest.mark.parametrize(("change_meter", "just_before"), SHAPES)
    async def test_new_start_counts_from_its_quarter_hour(
        self,
        hass: HomeAssistant,
        mock_config_entry: MockConfigEntry,
        sandbox: ZevvySandbox,
        freezer: FrozenDateTimeFactory,
        change_meter: bool,
        just_before: bool,
    ) -> None:
        """0.0 at 12:45, then what the sensor counted since."""
        freezer.move_to(START)
        sensor = add_sensor(hass, "meter", "1000000", WH_SESSION)
        mock_config_entry.add_to_hass(hass)
        clock = _Clock(hass, freezer, [sensor], just_before=just_before, recorder=False)
        await _before_the_switch(hass, mock_config_entry, clock, sensor, change_meter)

        changes = dict(CHANGES)
        for offset in range(35, 91, 5):
            await clock.to(offset, changes.get(offset))
            if offset == 60:
                await clock.to(62)
                clock.show(STOPPED_CHANGE[1])

        assert readings(sandbox, "Dev", NEW) == EXPECTED_NEW
        if change_meter:
            assert readings(sandbox, "Dev") == [
                (_stamp(minute(15)), 1000.0),
                (_stamp(minute(30)), 1000.25),
            ]
