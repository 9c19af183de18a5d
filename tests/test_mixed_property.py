"""A whole building: 10 electricity, 2 heat, 4 water and 1 gas meter.

Through the login (meters grouped by kind, preselected from the Energy
dashboard, names accepted as suggested), live quarter hours, gap fill after
the integration was stopped and upload_history of an earlier quarter hour:
zevvy receives every meter in its billing unit (kWh or m³). The recorder runs
for real (in-memory SQLite) and compiles its statistics from the states.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.energy.data import async_get_manager
from homeassistant.components.recorder import Recorder
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult, FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
)

from custom_components.zevvy.config_flow import SECTION_ADVANCED
from custom_components.zevvy.const import (
    CONF_API_URL,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_ISSUER,
    CONF_KIND,
    DOMAIN,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.diagnostics import async_get_config_entry_diagnostics
from custom_components.zevvy.meter_flow import (
    CONF_ENTITIES,
    CONF_GAS_ENTITIES,
    CONF_WATER_ENTITIES,
)
from custom_components.zevvy.services import SERVICE_UPLOAD_HISTORY
from zevvy_sandbox import ZevvySandbox

from .test_meter_flow import selector_config, suggested
from .test_meter_kinds import PREFERENCES_2025_4
from .test_running_total import at, setup_entry

BASE = datetime(2026, 11, 26, 12, tzinfo=UTC)
FIVE = timedelta(minutes=5)
# Minutes after 12:00 at which every sensor counts one more step.
CHANGES = (10, 25, 35)
# Factor of each unit to the billing unit (kWh, m³).
TO_BILLING: dict[str, float] = {
    "kWh": 1.0,
    "MWh": 1000.0,
    "GJ": 1e9 / 3.6e6,
    "m³": 1.0,
    "L": 0.001,
}


class Sensor:
    """A meter sensor of the building: its unit, first value and step."""

    def __init__(
        self,
        object_id: str,
        name: str,
        unit: str,
        device_class: str,
        first: float,
        step: float,
        register: str,
    ) -> None:
        self.object_id = object_id
        self.name = name
        self.unit = unit
        self.device_class = device_class
        self.first = first
        self.step = step
        self.register = register  # the default register name of its kind

    @property
    def entity_id(self) -> str:
        return f"sensor.{self.object_id}"

    def value(self, changes: int) -> float:
        return round(self.first + changes * self.step, 4)

    def attributes(self) -> dict[str, Any]:
        return {
            "unit_of_measurement": self.unit,
            "device_class": self.device_class,
            "state_class": "total_increasing",
            "friendly_name": self.name,
        }

    def billed(self, changes: int) -> float:
        """The reading zevvy receives after ``changes`` steps."""
        return round(self.value(changes) * TO_BILLING[self.unit], 3)


SENSORS: list[Sensor] = [
    *(
        Sensor(
            f"apartment_{n}_electricity",
            f"Apartment {n} electricity",
            "kWh",
            "energy",
            1000.0 * n + 0.5,
            1.25,
            "Energy",
        )
        for n in range(1, 11)
    ),
    Sensor("heat_a", "Heat A", "MWh", "energy", 12.3456, 0.001, "Energy"),
    Sensor("heat_b", "Heat B", "GJ", "energy", 100.0, 0.0036, "Energy"),
    Sensor("cold_water", "Cold water 1", "m³", "water", 123.456, 0.012, "Water"),
    Sensor("cold_water_2", "Cold water 2", "m³", "water", 99.001, 0.004, "Water"),
    Sensor("hot_water", "Hot water 1", "L", "water", 45678.0, 15.0, "Water"),
    Sensor("hot_water_2", "Hot water 2", "L", "water", 1234.0, 7.0, "Water"),
    Sensor("gas", "Gas", "m³", "gas", 5432.1, 0.25, "Gas"),
]


def add_sensors(hass: HomeAssistant) -> None:
    """Register every sensor with its first state."""
    registry = er.async_get(hass)
    for sensor in SENSORS:
        registry.async_get_or_create(
            "sensor",
            "test",
            sensor.object_id,
            suggested_object_id=sensor.object_id,
            unit_of_measurement=sensor.unit,
            capabilities={"state_class": "total_increasing"},
            original_device_class=sensor.device_class,
        )
        hass.states.async_set(
            sensor.entity_id, str(sensor.value(0)), sensor.attributes()
        )


async def frozen_login(hass: HomeAssistant, sandbox: ZevvySandbox) -> FlowResult:
    """Run the login against the sandbox with the clock frozen: the wait before
    each poll of the device login is a timer, fired here."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_CLIENT_ID: sandbox.config.client_id,
            CONF_CLIENT_SECRET: sandbox.config.client_secret,
            SECTION_ADVANCED: {
                CONF_ISSUER: sandbox.issuer,
                CONF_API_URL: sandbox.api_url,
            },
        },
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    sandbox.approve(result["description_placeholders"]["user_code"])
    for _ in range(5):
        await asyncio.sleep(0)
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=10))
    await hass.async_block_till_done()
    return await hass.config_entries.flow.async_configure(result["flow_id"])


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: Any) -> None:
    """Prepare the recorder's database before hass (recorder_mock needs it)."""


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_mixed_property(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Every meter of the building arrives each quarter hour in kWh or m³."""
    freezer.move_to(BASE - timedelta(minutes=7))
    add_sensors(hass)
    await (await async_get_manager(hass)).async_update(PREFERENCES_2025_4)  # type: ignore[arg-type]
    # The building's grid meter: on the dashboard, but zevvy gets it elsewhere.
    er.async_get(hass).async_get_or_create(
        "sensor", "test", "grid_import", suggested_object_id="grid_import"
    )
    hass.states.async_set(
        "sensor.grid_import",
        "1.0",
        {"unit_of_measurement": "kWh", "state_class": "total_increasing"},
    )
    await async_wait_recording_done(hass)

    # --- login: the meter choice, grouped by kind ---------------------------------
    result = await frozen_login(hass, sandbox)
    assert result["step_id"] == "meters"
    by_kind = {
        field: selector_config(result, field)["include_entities"]
        for field in (CONF_ENTITIES, CONF_WATER_ENTITIES, CONF_GAS_ENTITIES)
    }
    assert len(by_kind[CONF_ENTITIES]) == 13  # 10 + 2 heat + the grid's meter
    assert by_kind[CONF_WATER_ENTITIES] == [
        "sensor.cold_water",
        "sensor.cold_water_2",
        "sensor.hot_water",
        "sensor.hot_water_2",
    ]
    assert by_kind[CONF_GAS_ENTITIES] == ["sensor.gas"]
    assert suggested(result) == {
        CONF_ENTITIES: ["sensor.grid_import"],
        CONF_WATER_ENTITIES: ["sensor.cold_water"],
        CONF_GAS_ENTITIES: ["sensor.gas"],
    }
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_ENTITIES: [s.entity_id for s in SENSORS if s.register == "Energy"],
            CONF_WATER_ENTITIES: [
                s.entity_id for s in SENSORS if s.register == "Water"
            ],
            CONF_GAS_ENTITIES: ["sensor.gas"],
        },
    )
    names: dict[str, tuple[str, str]] = {}
    while result["type"] is FlowResultType.FORM:
        assert result["step_id"] == "meter_names"
        values = suggested(result)
        names[result["description_placeholders"]["entity_id"]] = (
            values["device_ref"],
            values["register_ref"],
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], values
        )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    # The default register names the kind.
    assert names == {s.entity_id: (s.name, s.register) for s in SENSORS}
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    kinds = sorted(
        subentry.data[CONF_KIND]
        for subentry in entry.subentries.values()
        if subentry.subentry_type == SUBENTRY_TYPE_METER
    )
    assert kinds == ["energy"] * 12 + ["gas"] + ["water"] * 4

    # --- quarter hours, stopped from 12:20 to 12:40 ---------------------------------
    for offset in range(-6, 51):
        moment = BASE + timedelta(minutes=offset)
        await at(hass, freezer, moment)
        if offset % 5 == 0:
            do_adhoc_statistics(hass, start=moment - FIVE)
            await async_wait_recording_done(hass)
        if offset == 20:
            assert await hass.config_entries.async_unload(entry.entry_id)
        if offset == 40:
            await setup_entry(hass, entry)  # gap fill: 12:30
        if offset in CHANGES:
            changes = CHANGES.index(offset) + 1
            for sensor in SENSORS:
                hass.states.async_set(
                    sensor.entity_id, str(sensor.value(changes)), sensor.attributes()
                )
            await async_wait_recording_done(hass)

    # --- an earlier quarter hour from the statistics ----------------------------------
    response = await hass.services.async_call(
        DOMAIN,
        SERVICE_UPLOAD_HISTORY,
        {"start": BASE - timedelta(minutes=5), "end": BASE + timedelta(minutes=5)},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    await hass.async_block_till_done()

    # Gap fill and the 12:45 tick may deliver in either order.
    for sensor in SENSORS:
        assert sorted(
            (r.read_at, r.value) for r in sandbox.readings(sensor.name, sensor.register)
        ) == [
            ("2026-11-26T12:00:00.000Z", sensor.billed(0)),  # upload_history
            ("2026-11-26T12:15:00.000Z", sensor.billed(1)),  # live
            ("2026-11-26T12:30:00.000Z", sensor.billed(2)),  # gap fill
            ("2026-11-26T12:45:00.000Z", sensor.billed(3)),  # live
        ], sensor.entity_id
    assert sensor.billed(3) == 5432.85  # the gas meter, in m³

    # --- what the user sees ----------------------------------------------------------
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    seen = {
        meter["entity_id"]: (meter["kind"], meter["unit"], meter["reading_unit"])
        for meter in diagnostics["meters"].values()
    }
    assert seen["sensor.hot_water"] == ("water", "L", "m³")
    assert seen["sensor.gas"] == ("gas", "m³", "m³")
    assert seen["sensor.heat_b"] == ("energy", "GJ", "kWh")
    registry = er.async_get(hass)
    units = {}
    for entity in registry.entities.values():
        if entity.platform == DOMAIN and entity.unique_id.endswith("_last_reading"):
            state = hass.states.get(entity.entity_id)
            assert state is not None
            units[state.attributes.get("device_class")] = state.attributes.get(
                "unit_of_measurement"
            )
    assert units == {"energy": "kWh", "water": "m³", "gas": "m³"}
