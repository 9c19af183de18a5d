"""``zevvy.send_reading`` for meters of every kind: each unit against each kind.

An energy meter takes energy units (zevvy receives kWh), a water or gas meter
volume units (zevvy receives m³); a unit of another kind is refused with a
translated error that names the units the meter takes.
"""

from __future__ import annotations

from datetime import UTC, datetime
import json
from pathlib import Path
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy.const import DOMAIN
from zevvy_sandbox import ZevvySandbox

from .conftest import METER_ENTITY_ID
from .test_meter_kinds import GAS, WATER, meter_subentry
from .test_meters import make_sensor

START = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)
TRANSLATIONS = Path(__file__).parents[1] / "custom_components/zevvy/translations"


@pytest.fixture
async def entry(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> MockConfigEntry:
    """The entry with an energy meter (Grid / Import, stored before kinds), a
    water meter (Wohnung 1 / Register) and a gas meter (Heizung / Register)."""
    freezer.move_to(START)
    meter_config_entry.add_to_hass(hass)
    water = make_sensor(hass, "water", unit="L", state="1000", extra=WATER)
    gas = make_sensor(hass, "gas", unit="m³", state="10", extra=GAS)
    for entity, device, kind in (
        (water, "Wohnung 1", "water"),
        (gas, "Heizung", "gas"),
    ):
        hass.config_entries.async_add_subentry(
            meter_config_entry, meter_subentry(entity, device, kind)
        )
    assert await hass.config_entries.async_setup(meter_config_entry.entry_id)
    await hass.async_block_till_done()
    return meter_config_entry


async def _send(hass: HomeAssistant, data: dict[str, Any]) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN, "send_reading", data, blocking=True, return_response=True
    )
    assert response is not None
    return dict(response)


@pytest.mark.parametrize(
    ("meter", "device", "value", "unit", "expected", "billing"),
    [
        (METER_ENTITY_ID, "Grid", 1_234_600, "Wh", 1234.6, "kWh"),
        (METER_ENTITY_ID, "Grid", 1234.6, "kWh", 1234.6, "kWh"),
        (METER_ENTITY_ID, "Grid", 1.2346, "MWh", 1234.6, "kWh"),
        (METER_ENTITY_ID, "Grid", 3.6, "GJ", 1000.0, "kWh"),
        (METER_ENTITY_ID, "Grid", 1234.6, None, 1234.6, "kWh"),
        ("sensor.water", "Wohnung 1", 12.345, "m³", 12.345, "m³"),
        ("sensor.water", "Wohnung 1", 12345, "L", 12.345, "m³"),
        ("sensor.water", "Wohnung 1", 1000, "gal", 3.785, "m³"),
        ("sensor.water", "Wohnung 1", 100, "ft³", 2.832, "m³"),
        ("sensor.water", "Wohnung 1", 1, "CCF", 2.832, "m³"),
        ("sensor.water", "Wohnung 1", 12.345, None, 12.345, "m³"),
        ("sensor.gas", "Heizung", 4321.5, "m³", 4321.5, "m³"),
        ("sensor.gas", "Heizung", 1000, "ft³", 28.317, "m³"),
        ("sensor.gas", "Heizung", 10, "CCF", 28.317, "m³"),
        ("sensor.gas", "Heizung", 4321.5, None, 4321.5, "m³"),
    ],
)
async def test_send_reading_in_each_unit_of_each_kind(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    meter: str,
    device: str,
    value: float,
    unit: str | None,
    expected: float,
    billing: str,
) -> None:
    """A reading in a unit of the meter's kind arrives in its billing unit;
    without a unit it is in the billing unit already."""
    data: dict[str, Any] = {"meter": meter, "value": value}
    if unit is not None:
        data["unit"] = unit
    response = await _send(hass, data)
    assert response["value"] == expected
    assert response["unit"] == billing
    assert response["status"] == "queued"
    assert ("value_kwh" in response) == (billing == "kWh")
    register = "Import" if device == "Grid" else "Register"
    assert [(r.read_at, r.value) for r in sandbox.readings(device, register)] == [
        ("2026-11-26T12:00:00.000Z", expected)
    ]


@pytest.mark.parametrize(
    ("meter", "unit", "key"),
    [
        # An energy meter keeps today's error for volumes.
        (METER_ENTITY_ID, "m³", "invalid_unit"),
        (METER_ENTITY_ID, "L", "invalid_unit"),
        ("sensor.water", "kWh", "invalid_unit_water"),
        ("sensor.water", "Wh", "invalid_unit_water"),
        ("sensor.water", "mL", "invalid_unit_water"),
        ("sensor.gas", "kWh", "invalid_unit_gas"),
        ("sensor.gas", "mL", "invalid_unit_gas"),
        ("sensor.gas", "W", "invalid_unit_gas"),
    ],
)
async def test_send_reading_unit_of_another_kind_refused(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    meter: str,
    unit: str,
    key: str,
) -> None:
    """A unit that is not of the meter's kind is refused, nothing is sent; the
    error is translated in every language and names the meter's units."""
    with pytest.raises(ServiceValidationError) as err:
        await _send(hass, {"meter": meter, "value": 12, "unit": unit})
    assert err.value.translation_domain == DOMAIN
    assert err.value.translation_key == key
    placeholders = err.value.translation_placeholders or {}
    assert placeholders["unit"] == unit
    for language in ("en", "de", "fr", "it"):
        messages = json.loads((TRANSLATIONS / f"{language}.json").read_text())
        message = messages["exceptions"][key]["message"].format(**placeholders)
        assert unit in message
        if key != "invalid_unit":
            assert "m³" in message
            assert "L" in message if key.endswith("water") else "CCF" in message
    assert sandbox.readings() == []


async def test_send_reading_water_too_large(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """More than 1,000,000,000 m³ is refused, saying m³."""
    with pytest.raises(ServiceValidationError) as err:
        await _send(hass, {"meter": "sensor.water", "value": 1e10, "unit": "m³"})
    assert err.value.translation_key == "volume_too_large"
    messages = json.loads((TRANSLATIONS / "en.json").read_text())["exceptions"]
    assert messages["volume_too_large"]["message"].format(
        **(err.value.translation_placeholders or {})
    ) == (
        "The meter reading 1e+10 m³ is larger than any meter shows (at most "
        "1000000000 m³). Check the value and the unit."
    )
    assert sandbox.readings() == []


async def test_send_reading_to_references_by_unit(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """A register that is no meter takes the unit's kind: litres arrive as m³;
    the references of a water meter take its units only."""
    response = await _send(
        hass,
        {"device_ref": "Keller", "register_ref": "Wasser", "value": 2500, "unit": "L"},
    )
    assert (response["value"], response["unit"]) == (2.5, "m³")
    assert [r.value for r in sandbox.readings("Keller", "Wasser")] == [2.5]

    with pytest.raises(ServiceValidationError) as err:
        await _send(
            hass,
            {
                "device_ref": "Wohnung 1",
                "register_ref": "Register",
                "value": 1,
                "unit": "kWh",
            },
        )
    assert err.value.translation_key == "invalid_unit_water"
    with pytest.raises(ServiceValidationError) as err:
        await _send(
            hass, {"device_ref": "a", "register_ref": "b", "value": 1, "unit": "W"}
        )
    assert err.value.translation_key == "invalid_unit"


async def test_send_reading_water_meter_by_registry(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """The meter is found by its registry entry after a rename of its entity id."""
    er.async_get(hass).async_update_entity(
        "sensor.water", new_entity_id="sensor.kaltwasser"
    )
    await hass.async_block_till_done()
    response = await _send(
        hass, {"meter": "sensor.kaltwasser", "value": 3, "unit": "m³"}
    )
    assert (response["device_ref"], response["value"]) == ("Wohnung 1", 3.0)
