"""Repairs of meters: an entity gone or not a meter (delete the meter), and
what the drop repair offers and says (in every language)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.zevvy.const import DOMAIN

from . import icu
from .conftest import METER_ENTITY_ID, METER_SUBENTRY_ID

METER_TIME = "sensor.grid_import_last_reading_time"


async def _start(hass: HomeAssistant, issue_id: str) -> dict[str, Any]:
    assert await async_setup_component(hass, "repairs", {})
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result: dict[str, Any] = await manager.async_init(
        DOMAIN, data={"issue_id": issue_id}
    )
    return result


@pytest.fixture
async def entry(
    hass: HomeAssistant, meter_config_entry: MockConfigEntry
) -> MockConfigEntry:
    """The entry with one meter, set up."""
    meter_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(meter_config_entry.entry_id)
    await hass.async_block_till_done()
    return meter_config_entry


def _break_meter(hass: HomeAssistant, kind: str) -> None:
    if kind == "meter_missing":
        er.async_get(hass).async_remove(METER_ENTITY_ID)
    else:
        hass.states.async_set(
            METER_ENTITY_ID, "1", {"unit_of_measurement": "W", "state_class": "total"}
        )


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
@pytest.mark.parametrize("kind", ["meter_missing", "meter_not_eligible"])
async def test_delete_meter_from_repairs(
    hass: HomeAssistant, entry: MockConfigEntry, kind: str
) -> None:
    """Confirming deletes the meter, its entities and the issue."""
    assert hass.states.get(METER_TIME) is not None
    _break_meter(hass, kind)
    await hass.async_block_till_done()
    issue_id = f"{kind}_{entry.entry_id}_{METER_SUBENTRY_ID}"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.is_fixable

    result = await _start(hass, issue_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "confirm"
    assert result["description_placeholders"] == {
        "meter": "Grid \u2013 Import",
        "entity_id": METER_ENTITY_ID,
    }

    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert METER_SUBENTRY_ID not in entry.subentries
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    assert hass.states.get(METER_TIME) is None


async def test_meter_already_deleted(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """The meter went meanwhile: the flow aborts."""
    _break_meter(hass, "meter_missing")
    await hass.async_block_till_done()
    issue_id = f"meter_missing_{entry.entry_id}_{METER_SUBENTRY_ID}"
    result = await _start(hass, issue_id)
    hass.config_entries.async_remove_subentry(entry, METER_SUBENTRY_ID)
    await hass.async_block_till_done()

    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "meter_gone"


# --- the drop repair -------------------------------------------------------------

HELD_TEXT = "issues.reading_held.fix_flow.step.init.description"
KWH = {"unit_of_measurement": "kWh", "state_class": "total_increasing"}


async def _tick(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, moment: datetime
) -> None:
    freezer.move_to(moment)
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


@pytest.fixture
async def zurich_entry(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> MockConfigEntry:
    """The meter set up at 12:05 UTC in Zurich; 1234.5 kWh delivered for 12:15."""
    await hass.config.async_set_time_zone("Europe/Zurich")
    freezer.move_to(datetime(2026, 11, 26, 12, 5, tzinfo=UTC))
    meter_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(meter_config_entry.entry_id)
    await hass.async_block_till_done()
    await _tick(hass, freezer, datetime(2026, 11, 26, 12, 16, tzinfo=UTC))
    return meter_config_entry


def _rendered(result: dict[str, Any]) -> dict[str, str]:
    """Return the step's text as the frontend shows it, per language."""
    return {
        language: icu.render(
            language,
            icu.lookup(language, HELD_TEXT),
            result["description_placeholders"],
        )
        for language in icu.LANGUAGES
    }


async def test_drop_typed_by_hand_offers_no_running_total(
    hass: HomeAssistant,
    zurich_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A lower value sent by hand while the sensor reads on is a typo, not a
    sensor that restarts: switching to a running total would continue from it.
    The text names one reading, in local time, and leaves the switch out."""
    freezer.move_to(datetime(2026, 11, 26, 12, 31, tzinfo=UTC))
    await hass.services.async_call(
        DOMAIN, "send_reading", {"meter": METER_ENTITY_ID, "value": 123.45}, True
    )
    issue_id = f"reading_held_{zurich_entry.entry_id}_{METER_SUBENTRY_ID}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None

    result = await _start(hass, issue_id)
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["replaced", "discard"]
    texts = _rendered(result)
    assert "this reading (of 2026-11-26 13:30) is held back" in texts["en"]
    assert "wird dieser Zählerstand (von 2026-11-26 13:30)" in texts["de"]
    assert "ce relevé (de 2026-11-26 13:30) est donc retenu" in texts["fr"]
    assert "questa lettura (del 2026-11-26 13:30) è trattenuta" in texts["it"]
    for language, text in texts.items():
        assert "+00:00" not in text
        assert "1234.500" in text  # the reading before the drop
        assert "running total" not in text.casefold(), language
        assert "laufende Summe" not in text
        assert "total cumulé" not in text
        assert "totale progressivo" not in text


async def test_drop_of_the_sensor_offers_running_total(
    hass: HomeAssistant,
    zurich_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The sensor itself restarted from zero: the switch is offered and
    explained; two held readings are named in the plural of each language."""
    hass.states.async_set(METER_ENTITY_ID, "0.5", KWH)
    await _tick(hass, freezer, datetime(2026, 11, 26, 12, 31, tzinfo=UTC))
    hass.states.async_set(METER_ENTITY_ID, "0.75", KWH)
    await _tick(hass, freezer, datetime(2026, 11, 26, 12, 46, tzinfo=UTC))
    issue_id = f"reading_held_{zurich_entry.entry_id}_{METER_SUBENTRY_ID}"

    result = await _start(hass, issue_id)
    assert result["menu_options"] == ["replaced", "discard", "running_total"]
    texts = _rendered(result)
    assert "these 2 readings (since 2026-11-26 13:30) are held back" in texts["en"]
    assert "switch it to a running total" in texts["en"]
    assert "werden diese 2 Zählerstände (seit 2026-11-26 13:30)" in texts["de"]
    assert "laufende Summe" in texts["de"]
    assert "ces 2 relevés (depuis 2026-11-26 13:30) sont donc retenus" in texts["fr"]
    assert "queste 2 letture (dal 2026-11-26 13:30) sono trattenute" in texts["it"]
    for language in ("de", "fr", "it"):
        assert not icu.leaked_english(language, texts[language], ["Grid", "Import"])
