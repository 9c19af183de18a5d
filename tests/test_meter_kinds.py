"""Meters of every kind: energy (electricity, heat), water and gas.

Conversions of every unit to the billing unit (kWh, m³), eligibility by device
class, unit and state class, the kind stored with a meter (old meters without
one are energy meters), default register names per kind, preselection from both
shapes of the Energy dashboard's preferences, and water readings delivered to
the sandbox every quarter hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.energy.data import async_get_manager
from homeassistant.config_entries import SOURCE_USER, ConfigSubentry
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import HomeAssistant, State
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er, issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.zevvy.const import (
    CONF_ENTITY_ID,
    CONF_KIND,
    DOMAIN,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.issues import async_update_meter_issues
from custom_components.zevvy.meters import (
    KINDS,
    Eligibility,
    MeterKind,
    async_candidates,
    async_default_references,
    async_suggested_entity_ids,
    entity_eligibility,
    entity_kind,
    meter_subentry_data,
    reading_step,
    resolve_meters,
    state_reading,
    to_reading,
    unit_kind,
)
from zevvy_sandbox import ZevvySandbox

from . import icu
from .test_meter_flow import selector_config, suggested
from .test_meters import make_device, make_sensor

WATER: dict[str, Any] = {"device_class": "water"}
GAS: dict[str, Any] = {"device_class": "gas"}
START = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)


def volume_state(value: str, unit: str) -> State:
    """Return a sensor state with a unit."""
    return State("sensor.meter", value, {ATTR_UNIT_OF_MEASUREMENT: unit})


# --- conversions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("1234.5678", "m³", 1234.568),
        ("1234.5674", "m³", 1234.567),
        ("1500", "L", 1.5),
        ("1", "L", 0.001),
        ("0.4", "L", 0.0),
        ("100", "gal", 0.379),  # 100 US gallons = 0.378541 m³
        ("100", "ft³", 2.832),  # 2.8316847 m³
        ("1", "CCF", 2.832),  # 100 ft³
        ("0", "m³", 0.0),
        ("-0.0", "L", 0.0),
    ],
)
def test_every_water_unit_to_cubic_metres(
    value: str, unit: str, expected: float
) -> None:
    """Water readings are m³ rounded to litres, from each water unit."""
    assert state_reading(volume_state(value, unit), MeterKind.WATER) == expected


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("12.3456", "m³", 12.346),
        ("1000", "ft³", 28.317),
        ("10", "CCF", 28.317),
    ],
)
def test_every_gas_unit_to_cubic_metres(value: str, unit: str, expected: float) -> None:
    """Gas readings are m³ rounded to litres, from each gas unit."""
    assert state_reading(volume_state(value, unit), MeterKind.GAS) == expected


def test_kind_units_and_billing_units() -> None:
    """The units of each kind (those of Home Assistant's device classes)."""
    assert {"L", "m³", "gal", "ft³", "CCF"} <= KINDS[MeterKind.WATER].units
    assert {"m³", "ft³", "CCF"} <= KINDS[MeterKind.GAS].units
    assert {"Wh", "kWh", "MWh", "GJ"} <= KINDS[MeterKind.ENERGY].units
    assert KINDS[MeterKind.ENERGY].billing_unit == "kWh"
    assert KINDS[MeterKind.WATER].billing_unit == "m³"
    assert KINDS[MeterKind.GAS].billing_unit == "m³"
    for kind, spec in KINDS.items():
        for unit in spec.units:
            reading = to_reading(1.0, unit, kind)
            assert reading is not None
            assert reading >= 0


@pytest.mark.parametrize(
    ("unit", "kind"),
    [
        ("kWh", MeterKind.WATER),
        ("kWh", MeterKind.GAS),
        ("m³", MeterKind.ENERGY),
        ("L", MeterKind.ENERGY),
        ("mL", MeterKind.WATER),  # a volume unit, but not of water meters
        ("fl. oz.", MeterKind.WATER),
        ("mL", MeterKind.GAS),
        ("W", MeterKind.WATER),
        (None, MeterKind.WATER),
    ],
)
def test_unit_of_another_kind_is_refused(unit: str | None, kind: MeterKind) -> None:
    """A unit that is not of the meter's kind gives no reading, never a guess."""
    assert to_reading(5.0, unit, kind) is None
    state = State("sensor.meter", "5", {ATTR_UNIT_OF_MEASUREMENT: unit} if unit else {})
    assert state_reading(state, kind) is None


@pytest.mark.parametrize(
    ("value", "kind"),
    [("nan", MeterKind.WATER), ("-1", MeterKind.WATER), ("inf", MeterKind.GAS)],
)
def test_bad_volume_values_give_no_reading(value: str, kind: MeterKind) -> None:
    """Negative and non-finite values are no readings, of every kind."""
    assert state_reading(volume_state(value, "m³"), kind) is None


@pytest.mark.parametrize(
    ("unit", "device_class", "expected"),
    [
        ("m³", "water", MeterKind.WATER),
        ("L", "water", MeterKind.WATER),
        ("gal", "water", MeterKind.WATER),
        ("m³", "gas", MeterKind.GAS),
        ("CCF", "gas", MeterKind.GAS),
        # A gas (or heat) sensor in an energy unit is an energy meter.
        ("kWh", "gas", MeterKind.ENERGY),
        ("GJ", None, MeterKind.ENERGY),
        ("MWh", "energy", MeterKind.ENERGY),
        # A volume without the water or gas device class is no meter.
        ("m³", None, None),
        ("m³", "volume", None),
        ("mL", "water", None),
        ("W", "water", None),
        (None, "water", None),
    ],
)
def test_unit_kind(unit: str | None, device_class: str | None, expected: Any) -> None:
    """The kind follows from the unit and, for volumes, the device class."""
    assert unit_kind(unit, device_class) is expected


@pytest.mark.parametrize(
    ("unit", "decimals", "kind", "expected"),
    [
        ("L", None, MeterKind.WATER, 1),
        ("L", 0, MeterKind.WATER, 1),
        ("m³", 3, MeterKind.WATER, 1),
        ("m³", 2, MeterKind.WATER, 10),
        ("m³", None, MeterKind.WATER, 1000),
        ("gal", 0, MeterKind.WATER, 4),
        ("ft³", 2, MeterKind.GAS, 1),
        ("CCF", None, MeterKind.GAS, 1000),  # at most one whole m³
        ("kWh", 1, MeterKind.WATER, 0),  # not of the kind
        ("kWh", 1, MeterKind.ENERGY, 100),
    ],
)
def test_reading_step_in_litres(
    unit: str, decimals: int | None, kind: MeterKind, expected: int
) -> None:
    """A volume reading's precision is in litres (thousandths of m³)."""
    assert reading_step(unit, decimals, kind) == expected


# --- eligibility ------------------------------------------------------------------


async def test_candidates_of_every_kind(hass: HomeAssistant) -> None:
    """Water and gas sensors are offered beside energy sensors, with their kind."""
    make_sensor(hass, "cold_water", unit="m³", extra=WATER, friendly_name="A cold")
    make_sensor(hass, "hot_water", unit="L", extra=WATER, friendly_name="B hot")
    make_sensor(hass, "gas", unit="m³", extra=GAS, friendly_name="C gas")
    make_sensor(hass, "gas_energy", unit="kWh", extra=GAS, friendly_name="D gas")
    make_sensor(hass, "heat", unit="GJ", friendly_name="E heat")
    make_sensor(hass, "volume", unit="m³", friendly_name="F volume")
    make_sensor(hass, "flow", unit="m³", state_class="measurement", extra=WATER)
    make_sensor(
        hass,
        "daily_water",
        unit="L",
        state_class="total",
        extra={**WATER, "last_reset": "2026-11-26T00:00:00+00:00"},
        friendly_name="G daily",
    )

    assert [(c.entity_id, c.kind, c.eligibility) for c in async_candidates(hass)] == [
        ("sensor.cold_water", MeterKind.WATER, Eligibility.ELIGIBLE),
        ("sensor.hot_water", MeterKind.WATER, Eligibility.ELIGIBLE),
        ("sensor.gas", MeterKind.GAS, Eligibility.ELIGIBLE),
        ("sensor.gas_energy", MeterKind.ENERGY, Eligibility.ELIGIBLE),
        ("sensor.heat", MeterKind.ENERGY, Eligibility.ELIGIBLE),
        ("sensor.daily_water", MeterKind.WATER, Eligibility.RESETTING),
    ]


async def test_kind_from_registry_without_state(hass: HomeAssistant) -> None:
    """Before its first state, the registry's unit and device class decide."""
    entity = er.async_get(hass).async_get_or_create(
        "sensor",
        "test",
        "water_meter",
        unit_of_measurement="m³",
        capabilities={"state_class": "total_increasing"},
        original_device_class="water",
    )
    assert entity_kind(hass, entity) is MeterKind.WATER
    assert entity_eligibility(hass, entity) is Eligibility.ELIGIBLE
    # The user's device class wins over the integration's.
    entity = er.async_get(hass).async_update_entity(
        entity.entity_id, device_class="gas"
    )
    assert entity_kind(hass, entity) is MeterKind.GAS


# --- default names ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "unit", "extra", "register"),
    [
        ("en", "m³", WATER, "Water"),
        ("en", "m³", GAS, "Gas"),
        ("en", "kWh", GAS, "Energy"),
        ("de", "L", WATER, "Wassermenge"),  # Home Assistant's German names
        ("de", "m³", GAS, "Gasmenge"),
        ("fr", "m³", WATER, "Eau"),
        ("it", "m³", WATER, "Acqua"),
    ],
)
async def test_default_register_per_kind(
    hass: HomeAssistant,
    language: str,
    unit: str,
    extra: dict[str, Any],
    register: str,
) -> None:
    """A meter that is its device's main feature is named after its kind, in
    Home Assistant's language, as energy meters are "Energy"."""
    hass.config.language = language
    device = await make_device(hass, "Wohnung 3")
    entity = make_sensor(
        hass,
        "wohnung_3",
        unit=unit,
        extra=extra,
        device=device,
        has_entity_name=True,
        original_name=None,
    )
    assert await async_default_references(hass, entity) == ("Wohnung 3", register)


# --- the stored kind --------------------------------------------------------------


def add_account(hass: HomeAssistant, *subentries: ConfigSubentry) -> MockConfigEntry:
    """Add a zevvy entry (not set up) with meter subentries."""
    entry = MockConfigEntry(domain=DOMAIN, unique_id="account")
    entry.add_to_hass(hass)
    for subentry in subentries:
        hass.config_entries.async_add_subentry(entry, subentry)
    return entry


def meter_subentry(
    entity: er.RegistryEntry, device: str, kind: str | None
) -> ConfigSubentry:
    """A meter subentry as stored, with ``kind`` (None: stored before kinds)."""
    data = dict(meter_subentry_data(entity, device, "Register")["data"])
    if kind is not None:
        data[CONF_KIND] = kind
    return ConfigSubentry(
        data=data,  # type: ignore[arg-type]
        subentry_type=SUBENTRY_TYPE_METER,
        title=device,
        unique_id=entity.id,
    )


async def test_old_meters_are_energy_meters(hass: HomeAssistant) -> None:
    """A subentry stored without a kind loads as an energy meter; a water meter
    keeps its kind, and its unit is m³."""
    grid = make_sensor(hass, "grid", unit="kWh")
    water = make_sensor(hass, "water", unit="L", extra=WATER)
    entry = add_account(
        hass,
        meter_subentry(grid, "Grid", None),
        meter_subentry(water, "Water", "water"),
    )
    meters = {meter.entity_id: meter for meter in resolve_meters(hass, entry)}
    assert meters["sensor.grid"].kind is MeterKind.ENERGY
    assert meters["sensor.grid"].unit == "kWh"
    assert meters["sensor.water"].kind is MeterKind.WATER
    assert meters["sensor.water"].unit == "m³"
    # The precision of its readings: litres.
    assert meters["sensor.water"].step == 1


async def test_meter_whose_unit_changes_kind_is_not_usable(
    hass: HomeAssistant,
) -> None:
    """A water meter whose sensor now counts kWh (or an energy meter now in m³)
    delivers nothing and raises the repair issue; back in its unit it works."""
    water = make_sensor(hass, "water", unit="m³", extra=WATER)
    grid = make_sensor(hass, "grid", unit="kWh")
    entry = add_account(
        hass,
        meter_subentry(water, "Water", "water"),
        meter_subentry(grid, "Grid", None),
    )
    hass.states.async_set(
        "sensor.water",
        "5",
        {
            ATTR_UNIT_OF_MEASUREMENT: "kWh",
            "state_class": "total_increasing",
            **WATER,
        },
    )
    hass.states.async_set(
        "sensor.grid",
        "5",
        {ATTR_UNIT_OF_MEASUREMENT: "m³", "state_class": "total_increasing", **WATER},
    )
    assert resolve_meters(hass, entry) == []

    async_update_meter_issues(hass, entry)
    issues = [
        issue_id
        for (domain, issue_id) in ir.async_get(hass).issues
        if domain == DOMAIN and "meter_not_eligible" in issue_id
    ]
    assert len(issues) == 2

    hass.states.async_set(
        "sensor.water",
        "5",
        {ATTR_UNIT_OF_MEASUREMENT: "L", "state_class": "total_increasing", **WATER},
    )
    assert [meter.entity_id for meter in resolve_meters(hass, entry)] == [
        "sensor.water"
    ]


# --- the Energy dashboard -----------------------------------------------------------


PREFERENCES_2025_4: dict[str, Any] = {
    "energy_sources": [
        {
            "type": "grid",
            "flow_from": [
                {
                    "stat_energy_from": "sensor.grid_import",
                    "stat_cost": None,
                    "entity_energy_price": None,
                    "number_energy_price": None,
                }
            ],
            "flow_to": [],
            "cost_adjustment_day": 0,
        },
        {
            "type": "gas",
            "stat_energy_from": "sensor.gas",
            "stat_cost": None,
            "entity_energy_price": None,
            "number_energy_price": None,
        },
        {
            "type": "water",
            "stat_energy_from": "sensor.cold_water",
            "stat_cost": None,
            "entity_energy_price": None,
            "number_energy_price": None,
        },
    ],
    "device_consumption": [],
}

# Home Assistant 2026.x: the grid's meters on the source itself, wind, and
# individual water devices in their own list.
PREFERENCES_2026: dict[str, Any] = {
    "energy_sources": [
        {
            "type": "grid",
            "stat_energy_from": "sensor.grid_import",
            "stat_energy_to": None,
            "stat_cost": None,
            "entity_energy_price": None,
            "number_energy_price": None,
            "stat_compensation": None,
            "entity_energy_price_export": None,
            "number_energy_price_export": None,
            "cost_adjustment_day": 0,
        },
        {
            "type": "gas",
            "stat_energy_from": "sensor.gas",
            "stat_rate": "sensor.gas_flow",
            "stat_cost": None,
        },
        {"type": "water", "stat_energy_from": "sensor.cold_water", "stat_cost": None},
    ],
    "device_consumption": [],
    "device_consumption_water": [
        {"stat_consumption": "sensor.hot_water", "name": None},
    ],
}


def make_property(hass: HomeAssistant) -> None:
    """Sensors of every kind, some on the Energy dashboard."""
    make_sensor(hass, "grid_import", unit="kWh", friendly_name="Grid import")
    make_sensor(hass, "heat", unit="MWh", friendly_name="Heat")
    make_sensor(hass, "cold_water", unit="m³", extra=WATER, friendly_name="Cold")
    make_sensor(hass, "hot_water", unit="L", extra=WATER, friendly_name="Hot")
    make_sensor(hass, "gas", unit="m³", extra=GAS, friendly_name="Gas")


async def test_preselected_from_2025_4_preferences(hass: HomeAssistant) -> None:
    """Grid, gas and water sources of Home Assistant 2025.4 are preselected."""
    make_property(hass)
    manager = await async_get_manager(hass)
    await manager.async_update(PREFERENCES_2025_4)  # type: ignore[arg-type]
    suggested = await async_suggested_entity_ids(hass, async_candidates(hass))
    assert sorted(suggested) == [
        "sensor.cold_water",
        "sensor.gas",
        "sensor.grid_import",
    ]


async def test_preselected_from_2026_preferences(hass: HomeAssistant) -> None:
    """The 2026.x shape: grid meters on the source, water devices' own list."""
    make_property(hass)
    manager = await async_get_manager(hass)
    manager.data = PREFERENCES_2026  # type: ignore[assignment]
    suggested = await async_suggested_entity_ids(hass, async_candidates(hass))
    assert sorted(suggested) == [
        "sensor.cold_water",
        "sensor.gas",
        "sensor.grid_import",
        "sensor.hot_water",
    ]


# --- delivered ----------------------------------------------------------------------


async def test_water_and_gas_readings_delivered_in_cubic_metres(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Every quarter hour zevvy receives the water meter (in L) and the gas meter
    (in ft³) in m³, beside the electricity meter in kWh."""
    freezer.move_to(START)
    water = make_sensor(hass, "water", unit="L", state="123456", extra=WATER)
    gas = make_sensor(hass, "gas", unit="ft³", state="1000", extra=GAS)
    grid = make_sensor(hass, "grid", unit="Wh", state="1234567")
    mock_config_entry.add_to_hass(hass)
    for entity, device, kind in (
        (water, "Wohnung 1", "water"),
        (gas, "Heizung", "gas"),
        (grid, "Grid", None),
    ):
        hass.config_entries.async_add_subentry(
            mock_config_entry, meter_subentry(entity, device, kind)
        )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    freezer.move_to(START + timedelta(minutes=10))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    hass.states.async_set(
        "sensor.water",
        "123789.4",
        {ATTR_UNIT_OF_MEASUREMENT: "L", "state_class": "total_increasing", **WATER},
    )
    freezer.move_to(START + timedelta(minutes=25))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()

    def values(device: str) -> list[tuple[str, float]]:
        return [(r.read_at, r.value) for r in sandbox.readings(device, "Register")]

    assert values("Wohnung 1") == [
        ("2026-11-26T12:15:00.000Z", 123.456),
        ("2026-11-26T12:30:00.000Z", 123.789),
    ]
    assert values("Heizung") == [
        ("2026-11-26T12:15:00.000Z", 28.317),
        ("2026-11-26T12:30:00.000Z", 28.317),
    ]
    assert values("Grid") == [
        ("2026-11-26T12:15:00.000Z", 1234.567),
        ("2026-11-26T12:30:00.000Z", 1234.567),
    ]


async def test_water_drop_held_in_cubic_metres(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A water meter that goes down is held back like an electricity meter, and
    the repair speaks of m³."""
    freezer.move_to(START)
    water = make_sensor(hass, "water", unit="L", state="123456", extra=WATER)
    mock_config_entry.add_to_hass(hass)
    hass.config_entries.async_add_subentry(
        mock_config_entry, meter_subentry(water, "Wohnung 1", "water")
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    freezer.move_to(START + timedelta(minutes=10))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    hass.states.async_set(
        "sensor.water",
        "100000",
        {ATTR_UNIT_OF_MEASUREMENT: "L", "state_class": "total_increasing", **WATER},
    )
    freezer.move_to(START + timedelta(minutes=25))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()

    assert [r.value for r in sandbox.readings("Wohnung 1", "Register")] == [123.456]
    issues = [
        issue
        for (domain, issue_id), issue in ir.async_get(hass).issues.items()
        if domain == DOMAIN and issue.translation_key == "reading_held"
    ]
    assert len(issues) == 1
    placeholders = issues[0].translation_placeholders or {}
    assert (placeholders["previous"], placeholders["value"], placeholders["unit"]) == (
        "123.456",
        "100.000",
        "m³",
    )
    text = icu.lookup("en", "issues.reading_held.fix_flow.step.init.description")
    rendered = icu.render("en", text, {"running_total": "other", **placeholders})
    assert "dropped from 123.456 m³ to 100.000 m³" in rendered


async def test_add_water_meter_stores_its_kind(hass: HomeAssistant) -> None:
    """ "Add meter" offers water and gas sensors; the new meter keeps its kind
    and its register is named "Water"."""
    entry = add_account(hass)
    make_sensor(hass, "grid", unit="kWh", friendly_name="Grid")
    make_sensor(hass, "gas", unit="CCF", extra=GAS, friendly_name="Gas meter")
    water = make_sensor(hass, "water", unit="L", extra=WATER, friendly_name="Flat 2")
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_TYPE_METER), context={"source": SOURCE_USER}
    )
    assert selector_config(result, CONF_ENTITY_ID)["include_entities"] == [
        "sensor.water",
        "sensor.gas",
        "sensor.grid",
    ]
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_ENTITY_ID: "sensor.water"}
    )
    values = suggested(result)
    assert (values["device_ref"], values["register_ref"]) == ("Flat 2", "Water")
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], values
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    subentry = next(iter(entry.subentries.values()))
    assert subentry.data[CONF_KIND] == "water"
    assert [(m.entity_id, m.kind) for m in resolve_meters(hass, entry)] == [
        (water.entity_id, MeterKind.WATER)
    ]


async def test_a_water_running_total_is_asked_in_cubic_metres(
    hass: HomeAssistant,
) -> None:
    """A water meter's names step shows its value in m³, and a running total's
    start value is asked in m³ (German text: every word in German)."""
    entry = add_account(hass)
    make_sensor(hass, "water", unit="L", extra=WATER, friendly_name="Flat 2")
    hass.states.async_set(
        "sensor.water",
        "1234567",
        {
            ATTR_UNIT_OF_MEASUREMENT: "L",
            "device_class": "water",
            "state_class": "total_increasing",
        },
    )
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_TYPE_METER), context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_ENTITY_ID: "sensor.water"}
    )
    placeholders = result["description_placeholders"] or {}
    text = icu.render(
        "de",
        icu.lookup("de", "config_subentries.meter.step.references.description"),
        placeholders,
    )
    assert "jetzt 1234.567 m³." in text
    assert "kWh" not in text
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {**suggested(result), "reading_source": "running_total"},
    )
    assert result["step_id"] == "start"
    assert selector_config(result, "start_value")["unit_of_measurement"] == "m³"
