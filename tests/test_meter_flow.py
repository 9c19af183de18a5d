"""Tests for choosing meters: after login, "Add meter", rename, delete."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    SOURCE_USER,
    ConfigEntryState,
    ConfigSubentry,
)
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult, FlowResultType, UnknownFlow
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy.config_flow import SECTION_ADVANCED
from custom_components.zevvy.const import (
    CONF_API_URL,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_ISSUER,
    CONF_READING_SOURCE,
    CONF_REGISTER_REF,
    CONF_START_VALUE,
    DOMAIN,
    SOURCE_RUNNING_TOTAL,
    SOURCE_SENSOR,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.meter_flow import CONF_ACCEPT_SUGGESTED, CONF_ENTITIES
from custom_components.zevvy.meters import (
    meter_subentry_data,
    resolve_meters,
    source_data,
)
from tests import icu
from tests.test_meters import make_device, make_sensor, set_energy_preferences
from zevvy_sandbox import ZevvySandbox

RESET = {"last_reset": "2026-11-26T00:00:00+00:00"}


def suggested(result: FlowResult) -> dict[str, Any]:
    """Return the suggested values of a form."""
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


def fields(result: FlowResult) -> list[str]:
    """Return the fields of a form."""
    return [str(key) for key in result["data_schema"].schema]


def selector_config(result: FlowResult, field: str) -> dict[str, Any]:
    """Return the selector configuration of a form field."""
    for key, value in result["data_schema"].schema.items():
        if str(key) == field:
            return dict(value.config)
    raise AssertionError(f"no field {field}")


async def login(hass: HomeAssistant, sandbox: ZevvySandbox) -> FlowResult:
    """Run the login against the sandbox; return the step after it."""
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
    await hass.async_block_till_done()
    return await hass.config_entries.flow.async_configure(result["flow_id"])


def meters_of(entry: Any) -> dict[str, tuple[str, str, str, str]]:
    """Return {unique_id: (entity_id, device_ref, register_ref, title)}."""
    return {
        subentry.unique_id: (
            subentry.data[CONF_ENTITY_ID],
            subentry.data[CONF_DEVICE_REF],
            subentry.data[CONF_REGISTER_REF],
            subentry.title,
        )
        for subentry in entry.subentries.values()
        if subentry.subentry_type == SUBENTRY_TYPE_METER
    }


def add_meter_subentry(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    entity: er.RegistryEntry,
    device_ref: str,
    register_ref: str,
    source: dict[str, Any] | None = None,
) -> ConfigSubentry:
    """Add a meter subentry directly (the sensor's value unless ``source``)."""
    data = meter_subentry_data(entity, device_ref, register_ref, source)
    subentry = ConfigSubentry(
        data=data["data"],  # type: ignore[arg-type]
        subentry_type=data["subentry_type"],
        title=data["title"],
        unique_id=data["unique_id"],
    )
    hass.config_entries.async_add_subentry(entry, subentry)
    return subentry


# --- after login ----------------------------------------------------------------


async def test_login_offers_meters_preselected_from_energy_dashboard(
    hass: HomeAssistant, sandbox: ZevvySandbox
) -> None:
    """Dashboard meters are preselected, names confirmed one by one."""
    await set_energy_preferences(hass)
    meter_device = await make_device(hass, "Smart Meter", name_by_user="Hauszähler")
    grid_import = make_sensor(
        hass,
        "grid_import",
        device=meter_device,
        has_entity_name=True,
        original_name="Bezug",
        friendly_name="Hauszähler Bezug",
    )
    grid_export = make_sensor(
        hass,
        "grid_export",
        device=meter_device,
        has_entity_name=True,
        original_name="Einspeisung",
        friendly_name="Hauszähler Einspeisung",
    )
    pv = make_sensor(hass, "pv", unit="Wh", friendly_name="PV/Dach")
    make_sensor(hass, "spare", friendly_name="Spare meter")
    make_sensor(
        hass, "wallbox", state_class="total", extra=RESET, friendly_name="Wallbox"
    )
    make_sensor(hass, "power", unit="W", friendly_name="Power")

    result = await login(hass, sandbox)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "meters"
    # Sorted by name.
    assert selector_config(result, CONF_ENTITIES)["include_entities"] == [
        "sensor.grid_import",
        "sensor.grid_export",
        "sensor.pv",
        "sensor.spare",
        "sensor.wallbox",
    ]
    assert selector_config(result, CONF_ENTITIES)["multiple"] is True
    # The resetting wallbox sensor is on the dashboard but not preselected.
    assert suggested(result) == {
        CONF_ENTITIES: ["sensor.grid_import", "sensor.grid_export", "sensor.pv"]
    }
    assert result["description_placeholders"] == {
        "resetting": "Wallbox (sensor.wallbox)",
        "resetting_count": "1",
    }

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_ENTITIES: ["sensor.grid_import", "sensor.grid_export", "sensor.pv"]},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "meter_names"
    assert result["description_placeholders"] == {
        "entity_id": "sensor.grid_import",
        "name": "Hauszähler Bezug",
        "position": "1",
        "total": "3",
        "value": "1.500",
        "unit": "kWh",
        "suggested": SOURCE_SENSOR,
    }
    assert suggested(result) == {
        CONF_DEVICE_REF: "Hauszähler",
        CONF_REGISTER_REF: "Bezug",
        CONF_READING_SOURCE: SOURCE_SENSOR,
    }
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], suggested(result)
    )

    # Second: an empty name and a pair already taken are refused. From here
    # on, with another meter to follow, the suggestions can be accepted.
    assert result["description_placeholders"]["position"] == "2"
    assert suggested(result) == {
        CONF_DEVICE_REF: "Hauszähler",
        CONF_REGISTER_REF: "Einspeisung",
        CONF_READING_SOURCE: SOURCE_SENSOR,
    }
    assert CONF_ACCEPT_SUGGESTED in fields(result)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: " / ", CONF_REGISTER_REF: "  "}
    )
    assert result["errors"] == {CONF_REGISTER_REF: "empty_reference"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "hauszähler ", CONF_REGISTER_REF: "BEZUG"}
    )
    assert result["errors"] == {"base": "duplicate_references"}
    assert suggested(result) == {
        CONF_DEVICE_REF: "hauszähler ",
        CONF_REGISTER_REF: "BEZUG",
        CONF_ACCEPT_SUGGESTED: False,
    }
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_DEVICE_REF: "Hauszähler", CONF_REGISTER_REF: "Einspeisung"},
    )

    # Third: no device, so the friendly name; edited with a slash.
    assert result["description_placeholders"]["position"] == "3"
    assert CONF_ACCEPT_SUGGESTED not in fields(result)  # the last one
    assert suggested(result) == {
        CONF_DEVICE_REF: "PV_Dach",
        CONF_REGISTER_REF: "Energy",
        CONF_READING_SOURCE: SOURCE_SENSOR,
    }
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_DEVICE_REF: " PV/Dach Süd ☀️ ", CONF_REGISTER_REF: "Produktion"},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    assert meters_of(entry) == {
        grid_import.id: (
            "sensor.grid_import",
            "Hauszähler",
            "Bezug",
            "Hauszähler \u2013 Bezug",
        ),
        grid_export.id: (
            "sensor.grid_export",
            "Hauszähler",
            "Einspeisung",
            "Hauszähler \u2013 Einspeisung",
        ),
        pv.id: (
            "sensor.pv",
            "PV_Dach Süd ☀️",
            "Produktion",
            "PV_Dach Süd ☀️ \u2013 Produktion",
        ),
    }
    for subentry in entry.subentries.values():
        assert subentry.data[CONF_ENTITY_REGISTRY_ID] == subentry.unique_id
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert [meter.entity_id for meter in resolve_meters(hass, entry)] == [
        "sensor.grid_import",
        "sensor.grid_export",
        "sensor.pv",
    ]


async def test_login_running_total_and_accept_the_rest(
    hass: HomeAssistant, sandbox: ZevvySandbox
) -> None:
    """A running total asks its start value in a step of its own; from the
    second meter on, the suggestions can be accepted for the others: only a
    meter whose suggested names are taken is shown again."""
    make_sensor(
        hass, "wallbox", friendly_name="Wallbox", state_class="total", extra=RESET
    )
    make_sensor(hass, "solar", friendly_name="Solar")
    make_sensor(hass, "heat", friendly_name="Heat")
    make_sensor(hass, "heat_2", friendly_name="Heat")
    result = await login(hass, sandbox)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_ENTITIES: [
                "sensor.wallbox",
                "sensor.solar",
                "sensor.heat",
                "sensor.heat_2",
            ]
        },
    )
    assert result["step_id"] == "meter_names"
    assert fields(result) == [CONF_DEVICE_REF, CONF_REGISTER_REF, CONF_READING_SOURCE]
    assert suggested(result)[CONF_READING_SOURCE] == SOURCE_RUNNING_TOTAL
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], suggested(result)
    )
    assert result["step_id"] == "meter_start"
    assert result["description_placeholders"]["device_ref"] == "Wallbox"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_START_VALUE: 100.0}
    )

    assert result["step_id"] == "meter_names"
    assert result["description_placeholders"]["position"] == "2"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**suggested(result), CONF_ACCEPT_SUGGESTED: True}
    )
    # The first Heat took the suggested names; the second is asked, with why.
    assert result["step_id"] == "meter_names"
    assert result["description_placeholders"]["position"] == "4"
    assert result["description_placeholders"]["entity_id"] == "sensor.heat_2"
    assert result["errors"] == {"base": "duplicate_references"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "Heat", CONF_REGISTER_REF: "Floor"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    assert sorted(title for *_, title in meters_of(entry).values()) == [
        "Heat \u2013 Energy",
        "Heat \u2013 Floor",
        "Solar \u2013 Energy",
        "Wallbox \u2013 Energy",
    ]
    sources = {
        subentry.data[CONF_ENTITY_ID]: (
            subentry.data[CONF_READING_SOURCE],
            subentry.data[CONF_START_VALUE],
        )
        for subentry in entry.subentries.values()
    }
    assert sources == {
        "sensor.wallbox": (SOURCE_RUNNING_TOTAL, 100.0),
        "sensor.solar": (SOURCE_SENSOR, None),
        "sensor.heat": (SOURCE_SENSOR, None),
        "sensor.heat_2": (SOURCE_SENSOR, None),
    }


async def test_login_with_no_meter_chosen(
    hass: HomeAssistant, sandbox: ZevvySandbox
) -> None:
    """Choosing none creates the account without meters."""
    make_sensor(hass, "pv")
    result = await login(hass, sandbox)
    assert result["step_id"] == "meters"
    assert suggested(result) == {CONF_ENTITIES: []}
    assert result["description_placeholders"] == {
        "resetting": "",
        "resetting_count": "0",
    }
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].subentries == {}


async def test_login_account_added_meanwhile(
    hass: HomeAssistant, sandbox: ZevvySandbox
) -> None:
    """Two logins of one account: the one still choosing meters ends."""
    make_sensor(hass, "pv")
    first = await login(hass, sandbox)
    second = await login(hass, sandbox)
    assert first["step_id"] == second["step_id"] == "meters"
    first = await hass.config_entries.flow.async_configure(first["flow_id"], {})
    assert first["type"] is FlowResultType.CREATE_ENTRY
    # Home Assistant ends the other flows of the account.
    with pytest.raises(UnknownFlow):
        await hass.config_entries.flow.async_configure(
            second["flow_id"], {CONF_ENTITIES: ["sensor.pv"]}
        )
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1


async def test_login_without_eligible_entities(
    hass: HomeAssistant, sandbox: ZevvySandbox
) -> None:
    """Without any energy sensor, the account is created at once."""
    make_sensor(hass, "power", unit="W")
    result = await login(hass, sandbox)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].subentries == {}


async def test_login_chosen_entity_removed_meanwhile(
    hass: HomeAssistant, sandbox: ZevvySandbox
) -> None:
    """Entities that vanish while the user names meters are dropped."""
    make_sensor(hass, "a")
    b = make_sensor(hass, "b")
    c = make_sensor(hass, "c")
    result = await login(hass, sandbox)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_ENTITIES: ["sensor.a", "sensor.b", "sensor.c"]}
    )
    assert result["description_placeholders"]["entity_id"] == "sensor.a"
    registry = er.async_get(hass)
    registry.async_remove("sensor.a")
    registry.async_remove("sensor.c")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "A", CONF_REGISTER_REF: "Energy"}
    )
    # The named entity is gone too: the next one is shown.
    assert result["step_id"] == "meter_names"
    assert result["description_placeholders"]["entity_id"] == "sensor.b"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "B", CONF_REGISTER_REF: "Energy"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert set(meters_of(result["result"])) == {b.id}
    assert c.id not in meters_of(result["result"])


async def test_login_refuses_dot_names(
    hass: HomeAssistant, sandbox: ZevvySandbox
) -> None:
    """Naming meters after login: "." and ".." are refused like in "Add meter"."""
    pv = make_sensor(hass, "pv")
    result = await login(hass, sandbox)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_ENTITIES: ["sensor.pv"]}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "..", CONF_REGISTER_REF: "."}
    )
    assert result["step_id"] == "meter_names"
    assert result["errors"] == {
        CONF_DEVICE_REF: "invalid_reference",
        CONF_REGISTER_REF: "invalid_reference",
    }
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "PV", CONF_REGISTER_REF: "Energy"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert meters_of(result["result"])[pv.id][1:3] == ("PV", "Energy")


# --- Add meter ------------------------------------------------------------------


def add_account(hass: HomeAssistant) -> MockConfigEntry:
    """Add a zevvy entry (not set up) for subentry flows."""
    entry = MockConfigEntry(domain=DOMAIN, unique_id="account", title="demo")
    entry.add_to_hass(hass)
    return entry


async def start_add(hass: HomeAssistant, entry: MockConfigEntry) -> FlowResult:
    """Start the "Add meter" flow."""
    return await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_TYPE_METER), context={"source": SOURCE_USER}
    )


async def test_add_meter(hass: HomeAssistant) -> None:
    """Pick an entity that is not a meter yet, confirm the names."""
    entry = add_account(hass)
    device = await make_device(hass, "go-e Charger", name_by_user="Wallbox")
    mapped = make_sensor(hass, "grid")
    add_meter_subentry(hass, entry, mapped, "Grid", "Energy")
    wallbox = make_sensor(
        hass,
        "wallbox_total",
        device=device,
        has_entity_name=True,
        original_name="Total energy",
        friendly_name="Wallbox Total energy",
    )
    make_sensor(
        hass, "session", state_class="total", extra=RESET, friendly_name="Session"
    )

    result = await start_add(hass, entry)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert selector_config(result, CONF_ENTITY_ID)["include_entities"] == [
        "sensor.session",
        "sensor.wallbox_total",
    ]
    assert result["description_placeholders"] == {
        "resetting": "Session (sensor.session)",
        "resetting_count": "1",
    }
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_ENTITY_ID: "sensor.wallbox_total"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "references"
    assert result["description_placeholders"] == {
        "entity_id": "sensor.wallbox_total",
        "name": "Wallbox Total energy",
        "value": "1.500",
        "unit": "kWh",
        "suggested": SOURCE_SENSOR,
    }
    assert suggested(result) == {
        CONF_DEVICE_REF: "Wallbox",
        CONF_REGISTER_REF: "Total energy",
        CONF_READING_SOURCE: SOURCE_SENSOR,
    }
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "", CONF_REGISTER_REF: "x"}
    )
    assert result["errors"] == {CONF_DEVICE_REF: "empty_reference"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "grid", CONF_REGISTER_REF: "energy"}
    )
    assert result["errors"] == {"base": "duplicate_references"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {CONF_DEVICE_REF: "Wallbox Garage", CONF_REGISTER_REF: "Total energy"},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Wallbox Garage \u2013 Total energy"
    assert meters_of(entry)[wallbox.id] == (
        "sensor.wallbox_total",
        "Wallbox Garage",
        "Total energy",
        "Wallbox Garage \u2013 Total energy",
    )
    assert result["unique_id"] == wallbox.id


@pytest.mark.parametrize(
    ("device_ref", "register_ref", "errors"),
    [
        (".", "Energy", {CONF_DEVICE_REF: "invalid_reference"}),
        ("PV", "..", {CONF_REGISTER_REF: "invalid_reference"}),
        (
            " .. ",
            " . ",
            {
                CONF_DEVICE_REF: "invalid_reference",
                CONF_REGISTER_REF: "invalid_reference",
            },
        ),
        (
            "  ",
            ".",
            {
                CONF_DEVICE_REF: "empty_reference",
                CONF_REGISTER_REF: "invalid_reference",
            },
        ),
    ],
)
async def test_add_meter_refuses_unusable_names(
    hass: HomeAssistant,
    device_ref: str,
    register_ref: str,
    errors: dict[str, str],
) -> None:
    """Blank, "." and ".." are refused by the client's rule, in the form."""
    entry = add_account(hass)
    pv = make_sensor(hass, "pv")
    result = await start_add(hass, entry)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_ENTITY_ID: "sensor.pv"}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {CONF_DEVICE_REF: device_ref, CONF_REGISTER_REF: register_ref},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "...", CONF_REGISTER_REF: "Energy"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert meters_of(entry)[pv.id][1:3] == ("...", "Energy")


async def test_add_meter_twice_refused(hass: HomeAssistant) -> None:
    """Two "Add meter" flows for the same entity: the second one aborts."""
    entry = add_account(hass)
    make_sensor(hass, "pv")
    first = await start_add(hass, entry)
    second = await start_add(hass, entry)
    third = await start_add(hass, entry)
    first = await hass.config_entries.subentries.async_configure(
        first["flow_id"], {CONF_ENTITY_ID: "sensor.pv"}
    )
    third = await hass.config_entries.subentries.async_configure(
        third["flow_id"], {CONF_ENTITY_ID: "sensor.pv"}
    )
    assert third["step_id"] == "references"
    first = await hass.config_entries.subentries.async_configure(
        first["flow_id"], suggested(first)
    )
    assert first["type"] is FlowResultType.CREATE_ENTRY

    second = await hass.config_entries.subentries.async_configure(
        second["flow_id"], {CONF_ENTITY_ID: "sensor.pv"}
    )
    assert second["type"] is FlowResultType.ABORT
    assert second["reason"] == "already_configured"
    third = await hass.config_entries.subentries.async_configure(
        third["flow_id"], {CONF_DEVICE_REF: "PV 2", CONF_REGISTER_REF: "Energy"}
    )
    assert third["type"] is FlowResultType.ABORT
    assert third["reason"] == "already_configured"
    assert len(entry.subentries) == 1

    # Nothing left to add.
    result = await start_add(hass, entry)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_eligible_entities"


async def test_add_meter_entity_changes_meanwhile(hass: HomeAssistant) -> None:
    """An entity that stops being eligible or vanishes during the flow."""
    entry = add_account(hass)
    make_sensor(hass, "pv")
    make_sensor(hass, "grid")
    result = await start_add(hass, entry)
    hass.states.async_set("sensor.pv", "5", {ATTR_UNIT_OF_MEASUREMENT: "W"})
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_ENTITY_ID: "sensor.pv"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_ENTITY_ID: "not_eligible"}
    assert selector_config(result, CONF_ENTITY_ID)["include_entities"] == [
        "sensor.grid"
    ]

    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_ENTITY_ID: "sensor.grid"}
    )
    assert result["step_id"] == "references"
    er.async_get(hass).async_remove("sensor.grid")
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "Grid", CONF_REGISTER_REF: "Energy"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "entity_not_found"

    # Removed before the entity was picked.
    make_sensor(hass, "other")
    make_sensor(hass, "spare")
    result = await start_add(hass, entry)
    er.async_get(hass).async_remove("sensor.other")
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_ENTITY_ID: "sensor.other"}
    )
    assert result["errors"] == {CONF_ENTITY_ID: "not_eligible"}
    assert selector_config(result, CONF_ENTITY_ID)["include_entities"] == [
        "sensor.spare"
    ]


async def test_add_meter_by_registry_id(hass: HomeAssistant) -> None:
    """The selector may also hand over an entity registry id."""
    entry = add_account(hass)
    pv = make_sensor(hass, "pv")
    result = await start_add(hass, entry)
    # Registry ids pass the selector's validation like entity ids.
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_ENTITY_ID: pv.id}
    )
    assert result["step_id"] == "references"
    assert result["description_placeholders"]["entity_id"] == "sensor.pv"


# --- rename and delete ------------------------------------------------------------


async def test_rename_meter(hass: HomeAssistant) -> None:
    """Reconfigure renames the references and the title."""
    entry = add_account(hass)
    pv = make_sensor(hass, "pv")
    grid = make_sensor(hass, "grid")
    subentry = add_meter_subentry(hass, entry, pv, "PV", "Energy")
    add_meter_subentry(hass, entry, grid, "Grid", "Energy")
    er.async_get(hass).async_update_entity("sensor.pv", new_entity_id="sensor.pv_roof")

    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_TYPE_METER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry.subentry_id},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    assert result["description_placeholders"] == {
        "entity_id": "sensor.pv_roof",
        "device_ref": "PV",
        "register_ref": "Energy",
        "source": SOURCE_SENSOR,
        "start_value": "\u2013",
        "start_at": "\u2013",
        "unit": "kWh",
    }
    assert suggested(result) == {
        CONF_DEVICE_REF: "PV",
        CONF_REGISTER_REF: "Energy",
        CONF_READING_SOURCE: SOURCE_SENSOR,
    }
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "Grid", CONF_REGISTER_REF: "Energy"}
    )
    assert result["errors"] == {"base": "duplicate_references"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "PV", CONF_REGISTER_REF: "  "}
    )
    assert result["errors"] == {CONF_REGISTER_REF: "empty_reference"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "PV Dach", CONF_REGISTER_REF: "Prod/Total"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert meters_of(entry)[pv.id] == (
        "sensor.pv",
        "PV Dach",
        "Prod_Total",
        "PV Dach \u2013 Prod_Total",
    )

    # Keeping its own names is fine; a vanished entity shows the stored id.
    er.async_get(hass).async_remove("sensor.pv_roof")
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_TYPE_METER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry.subentry_id},
    )
    assert result["description_placeholders"]["entity_id"] == "sensor.pv"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_DEVICE_REF: "PV Dach", CONF_REGISTER_REF: "Prod_Total"}
    )
    assert result["reason"] == "reconfigure_successful"


async def test_delete_meter_while_loaded(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """Deleting a meter subentry of a running account stops its use."""
    entry = init_integration
    pv = make_sensor(hass, "pv")
    grid = make_sensor(hass, "grid")
    subentry = add_meter_subentry(hass, entry, pv, "PV", "Energy")
    add_meter_subentry(hass, entry, grid, "Grid", "Energy")
    await hass.async_block_till_done()
    assert len(resolve_meters(hass, entry)) == 2

    assert hass.config_entries.async_remove_subentry(entry, subentry.subentry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert [meter.entity_id for meter in resolve_meters(hass, entry)] == ["sensor.grid"]


# --- what a person reads, in every language --------------------------------------


def rendered(result: FlowResult, path: str) -> dict[str, str]:
    """Return a step's text per language, as the frontend formats it."""
    return {
        language: icu.render(
            language, icu.lookup(language, path), result["description_placeholders"]
        )
        for language in icu.LANGUAGES
    }


@pytest.mark.parametrize(
    ("session", "suggested_name"),
    [
        (False, {"de": "Wert des Sensors", "fr": "La valeur", "it": "Il valore"}),
        (True, {"de": "Laufende Summe", "fr": "Total cumulé", "it": "Totale"}),
    ],
    ids=["meter_register", "session_sensor"],
)
async def test_add_meter_speaks_the_users_language(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    session: bool,
    suggested_name: dict[str, str],
) -> None:
    """Every word of the steps is in the language of the person looking (not
    Home Assistant's, here English), times are local, and the sentence naming
    sensors that restart from zero is left out when there is none."""
    await hass.config.async_set_time_zone("Europe/Zurich")
    freezer.move_to("2026-11-26T12:05:00+00:00")
    entry = add_account(hass)
    make_sensor(
        hass,
        "wallbox",
        friendly_name="Wallbox",
        state_class="total" if session else "total_increasing",
        extra=RESET if session else None,
    )

    result = await start_add(hass, entry)
    texts = rendered(result, "config_subentries.meter.step.user.description")
    for language, restarting in {
        "en": "restart from zero",
        "de": "beginnen bei null neu",
        "fr": "repartent de zéro",
        "it": "ripartono da zero",
    }.items():
        assert (restarting in texts[language]) is session, language
        assert texts[language].rstrip() == texts[language]
        assert "\u2013" not in texts[language]

    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_ENTITY_ID: "sensor.wallbox"}
    )
    texts = rendered(result, "config_subentries.meter.step.references.description")
    for language in ("de", "fr", "it"):
        text = texts[language]
        assert not icu.leaked_english(language, text, ["Wallbox", "sensor.wallbox"]), (
            language
        )
        assert suggested_name[language] in text

    # A running total: its start, in local time, in a step of its own.
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            CONF_DEVICE_REF: "Wallbox",
            CONF_REGISTER_REF: "Energy",
            CONF_READING_SOURCE: SOURCE_RUNNING_TOTAL,
        },
    )
    assert result["step_id"] == "start"
    texts = rendered(result, "config_subentries.meter.step.start.description")
    for language in ("de", "fr", "it"):
        text = texts[language]
        assert not icu.leaked_english(
            language, text, ["Wallbox", "sensor.wallbox", "Energy"]
        ), language
        assert "2026-11-26 13:15" in text  # the next quarter hour, local time
        assert "+00:00" not in text


async def test_change_meter_shows_its_running_total(hass: HomeAssistant) -> None:
    """*Change meter* says the meter is a running total, with its start value
    and start in local time, in every language."""
    await hass.config.async_set_time_zone("Europe/Zurich")
    entry = add_account(hass)
    charger = make_sensor(hass, "charger_session", friendly_name="Charger")
    start_at = int(datetime(2026, 11, 26, 12, 15, tzinfo=UTC).timestamp())
    subentry = add_meter_subentry(
        hass,
        entry,
        charger,
        "Charger",
        "Energy",
        source_data(SOURCE_RUNNING_TOTAL, 1230.0, start_at),
    )
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_TYPE_METER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry.subentry_id},
    )
    assert suggested(result)[CONF_READING_SOURCE] == SOURCE_RUNNING_TOTAL
    texts = rendered(result, "config_subentries.meter.step.reconfigure.description")
    assert "a running total: 1230.000 kWh at 2026-11-26 13:15" in texts["en"]
    assert "laufende Summe: 1230.000 kWh um 2026-11-26 13:15" in texts["de"]
    assert "total cumulé : 1230.000 kWh à 2026-11-26 13:15" in texts["fr"]
    assert "totale progressivo: 1230.000 kWh il 2026-11-26 13:15" in texts["it"]


async def test_switch_to_running_total_without_a_reading_on_zevvy(
    hass: HomeAssistant,
) -> None:
    """zevvy has no reading of the meter yet: the start step says so instead
    of a dash for the last reading and its time."""
    entry = add_account(hass)
    subentry = add_meter_subentry(hass, entry, make_sensor(hass, "pv"), "PV", "E")
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_TYPE_METER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry.subentry_id},
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            CONF_DEVICE_REF: "PV",
            CONF_REGISTER_REF: "E",
            CONF_READING_SOURCE: SOURCE_RUNNING_TOTAL,
        },
    )
    assert result["step_id"] == "reconfigure_start"
    texts = rendered(
        result, "config_subentries.meter.step.reconfigure_start.description"
    )
    assert texts["en"].startswith("zevvy has no reading of **PV \u2013 E** yet")
    for language, text in texts.items():
        assert "\u2013 kWh" not in text, language
        assert "(\u2013)" not in text, language
