"""Files written before the reading pipeline load: the outbox and the meters.

The outbox below (pending readings of a meter's sensor and of a running total,
a held drop, the running total's state, the series) and the meters' subentry
data are exactly what main wrote before the pipeline (commit b0b4c6b: two
meters, zevvy unreachable from 12:15 on, the grid meter's sensor dropping at
12:45). The token file of older versions: ``test_init``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigSubentryDataWithId
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.zevvy.const import DOMAIN, SUBENTRY_TYPE_METER
from zevvy_sandbox import ZevvySandbox

CHARGER_KEY = "01M94VAN5C47RS9QX7WZWQVTGE"
GRID_KEY = "01M94VAN5C9QDVDQMKPQM9GB3N"
KWH = {"unit_of_measurement": "kWh", "state_class": "total_increasing"}

OUTBOX: dict[str, Any] = {
    "queues": {
        GRID_KEY: {
            "device": "Grid",
            "register": "Energy",
            "last": [1795695300, 100.0],
            "last_step": 1000,
            "series": "sensor",
            "pending": {"t": [1795696200], "v": [101.0], "p": [1000]},
            "held": {"t": [1795697100], "v": [90.0], "p": [1000]},
            "parked": None,
            "parked_message": None,
        },
        CHARGER_KEY: {
            "device": "Charger",
            "register": "Energy",
            "last": [1795695300, 0.0],
            "last_step": 1000,
            "series": "running_total@1795695300",
            "pending": {
                "t": [1795696200, 1795697100],
                "v": [0.5, 1.5],
                "p": [1000, 1000],
            },
            "held": None,
            "parked": None,
            "parked_message": None,
        },
    },
    "overflow_dropped": 0,
    "meter_states": {
        CHARGER_KEY: {
            "value": 2.5,
            "last_reset": None,
            "counted": 1.5,
            "seen": 1795696200.0,
            "known_from": 1795694820.0,
            "marks": [[1795695300, 0.0], [1795696200, 0.5]],
            "start_at": 1795695300,
            "start_counted": 0.0,
            "anchor": False,
        }
    },
}


def _meter(
    entity: er.RegistryEntry, key: str, device: str, source: dict[str, Any]
) -> ConfigSubentryDataWithId:
    """A meter's subentry as main stored it."""
    return ConfigSubentryDataWithId(
        data={
            "entity_registry_id": entity.id,
            "entity_id": entity.entity_id,
            "device_ref": device,
            "register_ref": "Energy",
            **source,
        },
        subentry_id=key,
        subentry_type=SUBENTRY_TYPE_METER,
        title=f"{device} \u2013 Energy",
        unique_id=entity.id,
    )


def _sensor(hass: HomeAssistant, name: str, value: str) -> er.RegistryEntry:
    entity = er.async_get(hass).async_get_or_create(
        "sensor", "test", name, suggested_object_id=name
    )
    hass.states.async_set(entity.entity_id, value, KWH)
    return entity


async def _at(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, moment: datetime
) -> None:
    await hass.async_block_till_done()
    freezer.move_to(moment)
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


async def test_outbox_and_meters_written_before_the_pipeline_load(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Pending readings go out, the held drop stays held, the running total
    goes on from its stored state."""
    freezer.move_to(datetime(2026, 11, 26, 12, 50, tzinfo=UTC))
    charger = _sensor(hass, "session_energy", "2.5")
    grid = _sensor(hass, "grid", "90.0")
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=mock_config_entry.title,
        unique_id=mock_config_entry.unique_id,
        data=mock_config_entry.data,
        subentries_data=[
            _meter(
                charger,
                CHARGER_KEY,
                "Charger",
                {
                    "reading_source": "running_total",
                    "start_value": 0.0,
                    "start_at": 1795695300,
                    "start_seed": None,
                },
            ),
            _meter(
                grid,
                GRID_KEY,
                "Grid",
                {
                    "reading_source": "sensor",
                    "start_value": None,
                    "start_at": None,
                    "start_seed": None,
                },
            ),
        ],
    )
    entry.add_to_hass(hass)
    key = f"{DOMAIN}.{entry.entry_id}.outbox"
    hass_storage[key] = {"version": 1, "minor_version": 1, "key": key, "data": OUTBOX}
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    hass.states.async_set(charger.entity_id, "3.0", KWH)
    await _at(hass, freezer, datetime(2026, 11, 26, 13, 0, tzinfo=UTC))

    assert [(r.read_at, r.value) for r in sandbox.readings("Charger", "Energy")] == [
        ("2026-11-26T12:30:00.000Z", 0.5),
        ("2026-11-26T12:45:00.000Z", 1.5),
        ("2026-11-26T13:00:00.000Z", 2.0),
    ]
    assert [(r.read_at, r.value) for r in sandbox.readings("Grid", "Energy")] == [
        ("2026-11-26T12:30:00.000Z", 101.0),
    ]
    assert ir.async_get(hass).async_get_issue(
        DOMAIN, f"reading_held_{entry.entry_id}_{GRID_KEY}"
    )
    await hass.config_entries.async_unload(entry.entry_id)
    stored = hass_storage[key]["data"]
    assert stored["queues"][GRID_KEY]["held"]["v"] == [90.0, 90.0]
    assert stored["meter_states"][CHARGER_KEY]["value"] == 3.0
