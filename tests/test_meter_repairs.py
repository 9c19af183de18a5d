"""Repairs of meters whose entity is gone or not a meter: delete the meter."""

from __future__ import annotations

from typing import Any

from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy.const import DOMAIN

from .conftest import METER_ENTITY_ID, METER_SUBENTRY_ID

METER_TIME = "sensor.grid_import_time_of_last_delivered_reading"


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
