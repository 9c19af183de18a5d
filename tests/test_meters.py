"""Tests for meters.py: eligibility, default references, readings, repair issues."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from homeassistant.components.energy.data import async_get_manager
from homeassistant.config_entries import ConfigSubentry, ConfigSubentryData
from homeassistant.const import ATTR_FRIENDLY_NAME, ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.util.unit_conversion import EnergyConverter
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy.const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_REGISTER_REF,
    DOMAIN,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.issues import (
    async_setup_meter_issues,
    async_update_meter_issues,
)
from custom_components.zevvy.meters import (
    ENERGY_UNITS,
    Eligibility,
    Meter,
    async_candidates,
    async_default_references,
    async_energy_dashboard_entity_ids,
    async_suggested_entity_ids,
    entity_eligibility,
    meter_subentry_data,
    resolve_meters,
    sanitize_reference,
    state_to_kwh,
)


async def make_device(
    hass: HomeAssistant, name: str | None, name_by_user: str | None = None
) -> dr.DeviceEntry:
    """Create a device of a test integration."""
    config_entry = MockConfigEntry(domain="test")
    config_entry.add_to_hass(hass)
    registry = dr.async_get(hass)
    device = registry.async_get_or_create(
        config_entry_id=config_entry.entry_id,
        identifiers={("test", name or "unnamed")},
        name=name,
    )
    if name_by_user is not None:
        updated = registry.async_update_device(device.id, name_by_user=name_by_user)
        assert updated is not None
        device = updated
    return device


def make_sensor(
    hass: HomeAssistant,
    object_id: str,
    *,
    unit: str | None = "kWh",
    state_class: str | None = "total_increasing",
    state: str | None = "1.5",
    device: dr.DeviceEntry | None = None,
    has_entity_name: bool = False,
    original_name: str | None = None,
    friendly_name: str | None = None,
    extra: dict[str, Any] | None = None,
    domain: str = "sensor",
) -> er.RegistryEntry:
    """Create a registry entry and (unless state is None) a state like HA would."""
    entity_entry = er.async_get(hass).async_get_or_create(
        domain,
        "test",
        object_id,
        suggested_object_id=object_id,
        unit_of_measurement=unit,
        capabilities={"state_class": state_class} if state_class else None,
        device_id=device.id if device else None,
        has_entity_name=has_entity_name,
        original_name=original_name,
    )
    if state is not None:
        attributes: dict[str, Any] = {}
        if unit:
            attributes[ATTR_UNIT_OF_MEASUREMENT] = unit
        if state_class:
            attributes["state_class"] = state_class
        if friendly_name:
            attributes[ATTR_FRIENDLY_NAME] = friendly_name
        attributes |= extra or {}
        hass.states.async_set(entity_entry.entity_id, state, attributes)
    return entity_entry


def energy_state(value: str, unit: str | None = "kWh") -> State:
    """Return a sensor state with a unit."""
    attributes = {ATTR_UNIT_OF_MEASUREMENT: unit} if unit else {}
    return State("sensor.meter", value, attributes)


# --- readings -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("12345", "Wh", 12.345),
        ("12.3456", "kWh", 12.346),
        ("12.3454", "kWh", 12.345),
        ("1.5", "MWh", 1500.0),
        ("0.001", "GWh", 1000.0),
        ("0.000001", "TWh", 1000.0),
        ("1000000", "mWh", 1.0),
        ("3600000", "J", 1.0),
        ("3600", "kJ", 1.0),
        ("3.6", "MJ", 1.0),
        ("1", "GJ", 277.778),
        ("860420.65", "cal", 1.0),
        ("860.42065", "kcal", 1.0),
        ("0.86042065", "Mcal", 1.0),
        ("1", "Gcal", 1162.222),
        ("0.4", "Wh", 0.0),
        ("1", "Wh", 0.001),
        ("0", "kWh", 0.0),
        ("-0.0", "kWh", 0.0),
        (" 7.25 ", "kWh", 7.25),
        ("1e3", "kWh", 1000.0),
    ],
)
def test_state_to_kwh(value: str, unit: str, expected: float) -> None:
    """Every energy unit converts to kWh, rounded to Wh."""
    assert state_to_kwh(energy_state(value, unit)) == expected


def test_every_energy_unit_is_convertible() -> None:
    """The running Home Assistant's energy units are exactly the eligible ones."""
    assert {str(unit) for unit in EnergyConverter.VALID_UNITS} == ENERGY_UNITS
    for unit in ENERGY_UNITS:
        reading = state_to_kwh(energy_state("1", unit))
        assert reading is not None
        assert reading >= 0


@pytest.mark.parametrize(
    "state",
    [
        None,
        energy_state("unknown"),
        energy_state("unavailable"),
        energy_state("abc"),
        energy_state(""),
        energy_state("nan"),
        energy_state("inf"),
        energy_state("-inf"),
        energy_state("-0.001"),
        energy_state("-5"),
        energy_state("5", unit=None),
        energy_state("5", unit="W"),
        energy_state("5", unit="m³"),
    ],
)
def test_state_to_kwh_no_reading(state: State | None) -> None:
    """Bad states give no reading, never 0."""
    assert state_to_kwh(state) is None


# --- references -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  Wallbox  ", "Wallbox"),
        ("PV/Dach", "PV_Dach"),
        ("/", "_"),
        ("  ", ""),
        ("Zähler Küche 🔌", "Zähler Küche 🔌"),
        (" . ", ""),
        ("..", ""),
        ("...", "..."),
    ],
)
def test_sanitize_reference(value: str, expected: str) -> None:
    """Slashes become underscores, outer spaces go; "." and ".." are unusable."""
    assert sanitize_reference(value) == expected


async def test_default_references_device_user_name(hass: HomeAssistant) -> None:
    """The user's device name wins over the integration's."""
    device = await make_device(hass, "go-e Charger", name_by_user="Wallbox Garage")
    entity = make_sensor(
        hass,
        "wallbox_total",
        device=device,
        has_entity_name=True,
        original_name="Total energy",
        friendly_name="Wallbox Garage Total energy",
    )
    assert await async_default_references(hass, entity) == (
        "Wallbox Garage",
        "Total energy",
    )


async def test_default_references_device_name(hass: HomeAssistant) -> None:
    """Without a user name the device's name is used; umlauts, emoji, slashes."""
    device = await make_device(hass, " Zähler/Haus 🏠 ")
    entity = make_sensor(
        hass,
        "bezug",
        device=device,
        has_entity_name=True,
        original_name="Bezug / Tarif 1",
    )
    assert await async_default_references(hass, entity) == (
        "Zähler_Haus 🏠",
        "Bezug _ Tarif 1",
    )


async def test_default_references_main_feature(hass: HomeAssistant) -> None:
    """An entity named after its device (name None) gets "Energy"."""
    device = await make_device(hass, "Smart Meter")
    entity = make_sensor(
        hass, "smart_meter", device=device, has_entity_name=True, original_name=None
    )
    assert await async_default_references(hass, entity) == ("Smart Meter", "Energy")


async def test_default_references_translated_energy(hass: HomeAssistant) -> None:
    """The fallback register is the energy device class in HA's language."""
    hass.config.language = "de"
    device = await make_device(hass, "Smart Meter")
    entity = make_sensor(
        hass, "smart_meter", device=device, has_entity_name=True, original_name=None
    )
    assert await async_default_references(hass, entity) == ("Smart Meter", "Energie")


async def test_default_references_legacy_name(hass: HomeAssistant) -> None:
    """An old-style entity name loses the device name in front."""
    device = await make_device(hass, "Shelly 3EM")
    entity = make_sensor(
        hass,
        "shelly_total",
        device=device,
        original_name="shelly 3em - Total consumption",
    )
    assert await async_default_references(hass, entity) == (
        "Shelly 3EM",
        "Total consumption",
    )
    # Without the device's name in front: kept as it is.
    own = make_sensor(hass, "shelly_own", device=device, original_name="Phase A")
    assert await async_default_references(hass, own) == ("Shelly 3EM", "Phase A")
    # Exactly the device's name: nothing of its own is left.
    only_device = make_sensor(
        hass, "shelly_only", device=device, original_name="Shelly 3EM"
    )
    assert await async_default_references(hass, only_device) == (
        "Shelly 3EM",
        "Energy",
    )


async def test_default_references_user_entity_name(hass: HomeAssistant) -> None:
    """A name given by the user replaces the friendly name; the device goes."""
    device = await make_device(hass, "Wallbox")
    entity = make_sensor(
        hass, "wb", device=device, has_entity_name=True, original_name="Energy"
    )
    entity = er.async_get(hass).async_update_entity(
        entity.entity_id, name="Wallbox Ladeenergie"
    )
    assert await async_default_references(hass, entity) == ("Wallbox", "Ladeenergie")


async def test_default_references_without_device(hass: HomeAssistant) -> None:
    """Without a device: the friendly name, then "Energy"."""
    entity = make_sensor(
        hass, "pv_total", friendly_name="PV / Dach Süd ☀️", original_name="PV"
    )
    assert await async_default_references(hass, entity) == ("PV _ Dach Süd ☀️", "Energy")
    # Without a state: the registry's name, then the entity id.
    no_state = make_sensor(hass, "pv_east", state=None, original_name="PV Ost")
    assert await async_default_references(hass, no_state) == ("PV Ost", "Energy")
    bare = make_sensor(hass, "bare", state=None)
    assert await async_default_references(hass, bare) == ("sensor.bare", "Energy")


async def test_default_references_unnamed_device(hass: HomeAssistant) -> None:
    """A device without a usable name counts as no device."""
    device = await make_device(hass, "  ")
    entity = make_sensor(
        hass, "anon", device=device, has_entity_name=True, friendly_name="Anon meter"
    )
    assert await async_default_references(hass, entity) == ("Anon meter", "Energy")


# --- eligibility ------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "state_class", "extra", "expected"),
    [
        ("kWh", "total_increasing", None, Eligibility.ELIGIBLE),
        ("Wh", "total", None, Eligibility.ELIGIBLE),
        ("GJ", "total", {"last_reset": None}, Eligibility.ELIGIBLE),
        (
            "kWh",
            "total",
            {"last_reset": "2026-11-26T00:00:00+00:00"},
            Eligibility.RESETTING,
        ),
        ("kWh", "measurement", None, Eligibility.NOT_ELIGIBLE),
        ("kWh", None, None, Eligibility.NOT_ELIGIBLE),
        ("W", "total_increasing", None, Eligibility.NOT_ELIGIBLE),
        (None, "total_increasing", None, Eligibility.NOT_ELIGIBLE),
        ("m³", "total_increasing", None, Eligibility.NOT_ELIGIBLE),
    ],
)
async def test_eligibility_from_state(
    hass: HomeAssistant,
    unit: str | None,
    state_class: str | None,
    extra: dict[str, Any] | None,
    expected: Eligibility,
) -> None:
    """Energy unit and a total state class make a meter."""
    entity = make_sensor(hass, "meter", unit=unit, state_class=state_class, extra=extra)
    assert entity_eligibility(hass, entity) is expected


async def test_eligibility_state_wins_over_registry(hass: HomeAssistant) -> None:
    """The state's attributes decide when there is a state."""
    entity = make_sensor(hass, "meter")
    hass.states.async_set(entity.entity_id, "5", {ATTR_UNIT_OF_MEASUREMENT: "W"})
    assert entity_eligibility(hass, entity) is Eligibility.NOT_ELIGIBLE


async def test_eligibility_from_registry(hass: HomeAssistant) -> None:
    """Without a state, the registry's unit (or the user's) and capabilities."""
    entity = make_sensor(hass, "meter", state=None)
    assert entity_eligibility(hass, entity) is Eligibility.ELIGIBLE
    no_class = make_sensor(hass, "no_class", state=None, state_class=None)
    assert entity_eligibility(hass, no_class) is Eligibility.NOT_ELIGIBLE
    power = make_sensor(hass, "power", state=None, unit="W")
    assert entity_eligibility(hass, power) is Eligibility.NOT_ELIGIBLE
    registry = er.async_get(hass)
    registry.async_update_entity_options(
        power.entity_id, "sensor", {"unit_of_measurement": "kWh"}
    )
    power = registry.async_get(power.entity_id)
    assert power is not None
    assert entity_eligibility(hass, power) is Eligibility.ELIGIBLE


async def test_eligibility_other_domain(hass: HomeAssistant) -> None:
    """Only sensors are meters."""
    entity = make_sensor(hass, "counter", domain="number")
    assert entity_eligibility(hass, entity) is Eligibility.NOT_ELIGIBLE


async def test_candidates(hass: HomeAssistant) -> None:
    """Eligible and resetting sensors with a registry entry, sorted by name."""
    make_sensor(hass, "b_meter", friendly_name="b Meter")
    make_sensor(hass, "a_meter", friendly_name="A meter")
    make_sensor(
        hass,
        "session",
        state_class="total",
        friendly_name="Session",
        extra={"last_reset": "2026-11-26T00:00:00+00:00"},
    )
    make_sensor(hass, "power", unit="W", friendly_name="Power")
    disabled = make_sensor(hass, "disabled", friendly_name="Disabled")
    er.async_get(hass).async_update_entity(
        disabled.entity_id, disabled_by=er.RegistryEntryDisabler.USER
    )
    # A YAML sensor without unique id: a state, no registry entry.
    hass.states.async_set(
        "sensor.yaml_meter",
        "3",
        {ATTR_UNIT_OF_MEASUREMENT: "kWh", "state_class": "total_increasing"},
    )
    candidates = async_candidates(hass)
    assert [(c.entity_id, c.eligibility) for c in candidates] == [
        ("sensor.a_meter", Eligibility.ELIGIBLE),
        ("sensor.b_meter", Eligibility.ELIGIBLE),
        ("sensor.session", Eligibility.RESETTING),
    ]
    assert candidates[0].name == "A meter"


# --- Energy dashboard ---------------------------------------------------------


async def set_energy_preferences(hass: HomeAssistant) -> None:
    """Configure an Energy dashboard with every kind of source."""
    manager = await async_get_manager(hass)
    await manager.async_update(
        {
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
                    "flow_to": [
                        {
                            "stat_energy_to": "sensor.grid_export",
                            "stat_compensation": None,
                            "entity_energy_price": None,
                            "number_energy_price": None,
                        }
                    ],
                    "cost_adjustment_day": 0,
                },
                {
                    "type": "solar",
                    "stat_energy_from": "sensor.pv",
                    "config_entry_solar_forecast": None,
                },
                {
                    "type": "battery",
                    "stat_energy_from": "sensor.battery_out",
                    "stat_energy_to": "sensor.battery_in",
                },
                {
                    "type": "gas",
                    "stat_energy_from": "sensor.gas",
                    "stat_cost": None,
                    "entity_energy_price": None,
                    "number_energy_price": None,
                },
            ],
            "device_consumption": [
                {"stat_consumption": "sensor.wallbox", "name": None},
                {"stat_consumption": "external:statistic", "name": "External"},
            ],
        }
    )


async def test_energy_dashboard_entity_ids(hass: HomeAssistant) -> None:
    """Grid, solar, battery, gas and devices."""
    assert await async_energy_dashboard_entity_ids(hass) == set()
    await set_energy_preferences(hass)
    assert await async_energy_dashboard_entity_ids(hass) == {
        "sensor.grid_import",
        "sensor.grid_export",
        "sensor.pv",
        "sensor.battery_out",
        "sensor.battery_in",
        "sensor.wallbox",
        "sensor.gas",
        "external:statistic",
    }


async def test_suggested_entity_ids(hass: HomeAssistant) -> None:
    """Only eligible candidates on the dashboard are preselected."""
    await set_energy_preferences(hass)
    make_sensor(hass, "grid_import")
    make_sensor(hass, "pv")
    make_sensor(hass, "other")
    make_sensor(hass, "gas", unit="kWh")
    make_sensor(
        hass,
        "wallbox",
        state_class="total",
        extra={"last_reset": "2026-11-26T00:00:00+00:00"},
    )
    suggested = await async_suggested_entity_ids(hass, async_candidates(hass))
    # The gas sensor in kWh is an energy meter, preselected like a gas meter in m³.
    assert sorted(suggested) == ["sensor.gas", "sensor.grid_import", "sensor.pv"]


# --- meters and repair issues -------------------------------------------------


def add_account(
    hass: HomeAssistant, subentries: list[ConfigSubentryData]
) -> MockConfigEntry:
    """Add a zevvy entry (not set up) with meter subentries."""
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id="account", subentries_data=subentries
    )
    entry.add_to_hass(hass)
    return entry


def subentry_id_of(entry: MockConfigEntry, entity_entry: er.RegistryEntry) -> str:
    """Return the id of the meter subentry of an entity."""
    return next(
        subentry.subentry_id
        for subentry in entry.subentries.values()
        if subentry.unique_id == entity_entry.id
    )


def meter_issue(
    hass: HomeAssistant, key: str, subentry_id: str
) -> ir.IssueEntry | None:
    """Return the meter's issue ``key`` if it is active."""
    for (domain, issue_id), issue in ir.async_get(hass).issues.items():
        if (
            domain == DOMAIN
            and issue_id.startswith(f"{key}_")
            and issue_id.endswith(f"_{subentry_id}")
            and issue.active
        ):
            return issue
    return None


async def test_meter_subentry_data(hass: HomeAssistant) -> None:
    """A meter subentry: registry id as unique id, readable title."""
    entity = make_sensor(hass, "pv")
    assert meter_subentry_data(entity, "PV", "Produktion") == {
        "data": {
            CONF_ENTITY_REGISTRY_ID: entity.id,
            CONF_ENTITY_ID: "sensor.pv",
            CONF_DEVICE_REF: "PV",
            CONF_REGISTER_REF: "Produktion",
            # The sensor's value (no running total).
            "reading_source": "sensor",
            "start_value": None,
            "start_at": None,
            "start_seed": None,
        },
        "subentry_type": SUBENTRY_TYPE_METER,
        "title": "PV \u2013 Produktion",
        "unique_id": entity.id,
    }


async def test_resolve_meters_follows_renames(hass: HomeAssistant) -> None:
    """A renamed entity id keeps the meter; other subentry types are ignored."""
    entity = make_sensor(hass, "pv")
    entry = add_account(
        hass,
        [
            meter_subentry_data(entity, "PV", "Energy"),
            ConfigSubentryData(
                data={}, subentry_type="other", title="Other", unique_id=None
            ),
        ],
    )
    er.async_get(hass).async_update_entity(
        entity.entity_id, new_entity_id="sensor.pv_roof"
    )
    hass.states.async_set(
        "sensor.pv_roof",
        "3",
        {ATTR_UNIT_OF_MEASUREMENT: "kWh", "state_class": "total_increasing"},
    )
    assert resolve_meters(hass, entry) == [
        Meter(
            subentry_id=subentry_id_of(entry, entity),
            entity_registry_id=entity.id,
            entity_id="sensor.pv_roof",
            device_ref="PV",
            register_ref="Energy",
        )
    ]


async def test_resolve_meters_resetting_sensor_is_usable(hass: HomeAssistant) -> None:
    """A sensor the user chose on purpose despite resets still delivers."""
    entity = make_sensor(
        hass,
        "session",
        state_class="total",
        extra={"last_reset": "2026-11-26T00:00:00+00:00"},
    )
    entry = add_account(hass, [meter_subentry_data(entity, "Wallbox", "Session")])
    assert [meter.entity_id for meter in resolve_meters(hass, entry)] == [
        "sensor.session"
    ]


async def test_repair_removed_entity(hass: HomeAssistant) -> None:
    """A removed entity raises meter_missing; it goes when the entity is back."""
    entity = make_sensor(hass, "grid", friendly_name="Grid")
    kept = make_sensor(hass, "pv")
    entry = add_account(
        hass,
        [
            meter_subentry_data(entity, "Hauszähler", "Bezug"),
            meter_subentry_data(kept, "PV", "Energy"),
        ],
    )
    subentry_id = subentry_id_of(entry, entity)
    assert len(async_update_meter_issues(hass, entry)) == 2
    assert meter_issue(hass, "meter_missing", subentry_id) is None

    registry = er.async_get(hass)
    registry.async_remove(entity.entity_id)
    meters = async_update_meter_issues(hass, entry)
    assert [meter.entity_id for meter in meters] == ["sensor.pv"]
    issue = meter_issue(hass, "meter_missing", subentry_id)
    assert issue is not None
    assert issue.translation_key == "meter_missing"
    assert issue.translation_placeholders == {
        "meter": "Hauszähler \u2013 Bezug",
        "entity_id": "sensor.grid",
    }
    assert issue.severity is ir.IssueSeverity.WARNING
    # Fixable: the fix flow offers to delete the meter (test_meter_repairs.py).
    assert issue.is_fixable

    # Re-adding the same entity restores its registry id.
    restored = make_sensor(hass, "grid")
    assert restored.id == entity.id
    assert len(async_update_meter_issues(hass, entry)) == 2
    assert meter_issue(hass, "meter_missing", subentry_id) is None


async def test_repair_unit_change(hass: HomeAssistant) -> None:
    """A meter whose unit is no energy unit raises meter_not_eligible."""
    entity = make_sensor(hass, "wallbox")
    entry = add_account(hass, [meter_subentry_data(entity, "Wallbox", "Energy")])
    subentry_id = subentry_id_of(entry, entity)
    hass.states.async_set(
        entity.entity_id,
        "1500",
        {ATTR_UNIT_OF_MEASUREMENT: "W", "state_class": "total_increasing"},
    )
    assert async_update_meter_issues(hass, entry) == []
    issue = meter_issue(hass, "meter_not_eligible", subentry_id)
    assert issue is not None
    assert issue.translation_placeholders == {
        "meter": "Wallbox \u2013 Energy",
        "entity_id": "sensor.wallbox",
    }
    assert meter_issue(hass, "meter_missing", subentry_id) is None

    # Removed while not eligible: one issue replaces the other.
    er.async_get(hass).async_remove(entity.entity_id)
    hass.states.async_remove(entity.entity_id)
    assert async_update_meter_issues(hass, entry) == []
    assert meter_issue(hass, "meter_not_eligible", subentry_id) is None
    assert meter_issue(hass, "meter_missing", subentry_id) is not None


async def test_orphaned_issues_are_deleted(hass: HomeAssistant) -> None:
    """Deleting a meter deletes its issue; other entries' issues stay."""
    gone = make_sensor(hass, "gone")
    other_gone = make_sensor(hass, "other_gone")
    entry = add_account(hass, [meter_subentry_data(gone, "Gone", "Energy")])
    other = MockConfigEntry(
        domain=DOMAIN,
        unique_id="other",
        subentries_data=[meter_subentry_data(other_gone, "Other", "Energy")],
    )
    other.add_to_hass(hass)
    registry = er.async_get(hass)
    registry.async_remove(gone.entity_id)
    registry.async_remove(other_gone.entity_id)
    async_update_meter_issues(hass, entry)
    async_update_meter_issues(hass, other)
    subentry_id = subentry_id_of(entry, gone)
    other_id = subentry_id_of(other, other_gone)
    # An issue of another integration is left alone.
    ir.async_create_issue(
        hass,
        "test",
        f"meter_missing_{subentry_id}",
        is_fixable=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key="x",
    )

    hass.config_entries.async_remove_subentry(entry, subentry_id)
    assert async_update_meter_issues(hass, entry) == []
    assert meter_issue(hass, "meter_missing", subentry_id) is None
    assert meter_issue(hass, "meter_missing", other_id) is not None
    assert ir.async_get(hass).async_get_issue("test", f"meter_missing_{subentry_id}")


async def test_watcher_raises_and_clears_issues_promptly(hass: HomeAssistant) -> None:
    """Registry changes, unit changes and subentry changes are noticed at once."""
    entity = make_sensor(hass, "grid")
    other = make_sensor(hass, "pv")
    entry = add_account(hass, [meter_subentry_data(entity, "Grid", "Energy")])
    subentry_id = subentry_id_of(entry, entity)
    async_setup_meter_issues(hass, entry)

    # Unit change: noticed through the state change.
    hass.states.async_set(
        entity.entity_id, "5", {ATTR_UNIT_OF_MEASUREMENT: "W", "state_class": "total"}
    )
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_not_eligible", subentry_id) is not None
    hass.states.async_set(
        entity.entity_id, "5", {ATTR_UNIT_OF_MEASUREMENT: "kWh", "state_class": "total"}
    )
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_not_eligible", subentry_id) is None
    # A plain new value changes nothing.
    hass.states.async_set(
        entity.entity_id, "6", {ATTR_UNIT_OF_MEASUREMENT: "kWh", "state_class": "total"}
    )
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_not_eligible", subentry_id) is None

    # Removal: noticed through the registry.
    er.async_get(hass).async_remove(entity.entity_id)
    hass.states.async_remove(entity.entity_id)
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_missing", subentry_id) is not None
    assert make_sensor(hass, "grid").entity_id == entity.entity_id
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_missing", subentry_id) is None

    # Renamed entity id: its new state changes are followed.
    er.async_get(hass).async_update_entity(
        entity.entity_id, new_entity_id="sensor.grid_main"
    )
    await hass.async_block_till_done()
    hass.states.async_set("sensor.grid_main", "7", {ATTR_UNIT_OF_MEASUREMENT: "W"})
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_not_eligible", subentry_id) is not None

    # A new meter is watched as soon as it is added, and deleting removes issues.
    pv_data = meter_subentry_data(other, "PV", "Energy")
    hass.config_entries.async_add_subentry(
        entry,
        ConfigSubentry(
            data=MappingProxyType(pv_data["data"]),
            subentry_type=pv_data["subentry_type"],
            title=pv_data["title"],
            unique_id=pv_data["unique_id"],
        ),
    )
    await hass.async_block_till_done()
    pv_id = subentry_id_of(entry, other)
    hass.states.async_set("sensor.pv", "7", {ATTR_UNIT_OF_MEASUREMENT: "W"})
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_not_eligible", pv_id) is not None
    hass.config_entries.async_remove_subentry(entry, pv_id)
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_not_eligible", pv_id) is None

    # Unloading stops watching and removes the entry's issues.
    assert meter_issue(hass, "meter_not_eligible", subentry_id) is not None
    await entry._async_process_on_unload(hass)
    assert meter_issue(hass, "meter_not_eligible", subentry_id) is None
    hass.states.async_set("sensor.grid_main", "8", {ATTR_UNIT_OF_MEASUREMENT: "J"})
    er.async_get(hass).async_remove("sensor.grid_main")
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_missing", subentry_id) is None


async def test_setup_entry_checks_meters(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """Setting up the account checks its meters and keeps watching until unload."""
    entity = make_sensor(hass, "grid")
    mock_config_entry.add_to_hass(hass)
    data = meter_subentry_data(entity, "Grid", "Energy")
    hass.config_entries.async_add_subentry(
        mock_config_entry,
        ConfigSubentry(
            data=MappingProxyType(data["data"]),
            subentry_type=data["subentry_type"],
            title=data["title"],
            unique_id=data["unique_id"],
        ),
    )
    subentry_id = subentry_id_of(mock_config_entry, entity)
    er.async_get(hass).async_remove(entity.entity_id)
    hass.states.async_remove(entity.entity_id)

    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_missing", subentry_id) is not None

    make_sensor(hass, "grid")
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_missing", subentry_id) is None

    hass.states.async_set(entity.entity_id, "5", {ATTR_UNIT_OF_MEASUREMENT: "W"})
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_not_eligible", subentry_id) is not None

    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert meter_issue(hass, "meter_not_eligible", subentry_id) is None
