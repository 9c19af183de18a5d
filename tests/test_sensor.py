"""Diagnostic sensors: last upload, readings waiting, per-meter delivery state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigSubentry
from homeassistant.const import STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    mock_restore_cache_with_extra_data,
    snapshot_platform,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.zevvy.compat import async_get_device
from custom_components.zevvy.const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_REGISTER_REF,
    DOMAIN,
    SOURCE_RUNNING_TOTAL,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.meters import source_data
from zevvy_sandbox import ZevvySandbox

from .conftest import METER_SUBENTRY_ID

START = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)
LAST_UPLOAD = "sensor.zevvy_last_upload"
WAITING = "sensor.zevvy_readings_waiting"
METER_TIME = "sensor.grid_import_last_reading_time"
METER_VALUE = "sensor.grid_import_last_reading"
SOURCE = "sensor.grid_import_reading_source"


async def _setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    with patch("custom_components.zevvy.PLATFORMS", [Platform.SENSOR]):
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()


async def _tick(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, moment: datetime
) -> None:
    freezer.move_to(moment)
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_sensors(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Every sensor after the first quarter-hour delivery."""
    freezer.move_to(START)
    await _setup(hass, meter_config_entry)
    await _tick(hass, freezer, START + timedelta(minutes=10))

    await snapshot_platform(
        hass, entity_registry, snapshot, meter_config_entry.entry_id
    )


async def test_reading_source_shows_running_totals(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The meter's device shows whether it is a running total, with its start
    value and start; a switched source shows at once."""
    freezer.move_to(START)
    await _setup(hass, meter_config_entry)
    assert hass.states.get(SOURCE).state == "sensor"  # type: ignore[union-attr]

    subentry = meter_config_entry.subentries[METER_SUBENTRY_ID]
    start_at = int((START + timedelta(minutes=10)).timestamp())
    hass.config_entries.async_update_subentry(
        meter_config_entry,
        subentry,
        data={**subentry.data, **source_data(SOURCE_RUNNING_TOTAL, 1230.0, start_at)},
    )
    await hass.async_block_till_done()
    state = hass.states.get(SOURCE)
    assert state is not None
    assert state.state == "running_total"
    assert state.attributes["start_value"] == 1230.0
    assert state.attributes["start"] == "2026-11-26T12:15:00+00:00"


async def test_disabled_by_default(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """The last reading repeats the meter's own sensor; the two times change
    every quarter hour and would fill the logbook (as Home Assistant's own
    "last updated" sensors, they are disabled by default). Readings waiting
    has a state class: the logbook leaves it out, it stays enabled."""
    await _setup(hass, meter_config_entry)
    for entity_id in (METER_VALUE, METER_TIME, LAST_UPLOAD):
        entity_entry = entity_registry.async_get(entity_id)
        assert entity_entry is not None
        assert entity_entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION
        assert hass.states.get(entity_id) is None
    assert hass.states.get(WAITING) is not None
    assert "state_class" in hass.states.get(WAITING).attributes  # type: ignore[union-attr]


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_meters_added_renamed_removed(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
    sandbox: ZevvySandbox,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """Meters come and go with their subentries, without a reload."""
    freezer.move_to(START)
    entry = meter_config_entry
    await _setup(hass, entry)
    value_entry = entity_registry.async_get(METER_VALUE)
    assert value_entry is not None
    assert value_entry.config_subentry_id == METER_SUBENTRY_ID
    assert hass.states.get(METER_TIME).state == STATE_UNKNOWN  # type: ignore[union-attr]

    source = entity_registry.async_get_or_create(
        "sensor", "test", "solar", suggested_object_id="solar"
    )
    hass.states.async_set(
        source.entity_id,
        "10.0",
        {"unit_of_measurement": "kWh", "state_class": "total_increasing"},
    )
    subentry = ConfigSubentry(
        data={
            CONF_ENTITY_REGISTRY_ID: source.id,
            CONF_ENTITY_ID: source.entity_id,
            CONF_DEVICE_REF: "Roof",
            CONF_REGISTER_REF: "Solar",
        },
        subentry_type=SUBENTRY_TYPE_METER,
        title="Roof \u2013 Solar",
        unique_id=source.id,
    )
    # A subentry of another kind is not a meter.
    other = ConfigSubentry(data={}, subentry_type="other", title="x", unique_id="x")
    hass.config_entries.async_add_subentry(entry, other)
    hass.config_entries.async_add_subentry(entry, subentry)
    await hass.async_block_till_done()

    roof_time = "sensor.roof_solar_last_reading_time"
    time_entry = entity_registry.async_get(roof_time)
    assert time_entry is not None
    assert time_entry.config_subentry_id == subentry.subentry_id
    device = device_registry.async_get(time_entry.device_id)  # type: ignore[arg-type]
    assert device is not None
    assert device.name == "Roof \u2013 Solar"
    account = async_get_device(hass, (DOMAIN, str(entry.unique_id)), entry.entry_id)
    assert account is not None
    assert device.via_device_id == account.id

    await _tick(hass, freezer, START + timedelta(minutes=10))
    assert hass.states.get(roof_time).state == "2026-11-26T12:15:00+00:00"  # type: ignore[union-attr]
    assert hass.states.get(METER_TIME).state == "2026-11-26T12:15:00+00:00"  # type: ignore[union-attr]

    # Renamed: the device follows the title.
    hass.config_entries.async_update_subentry(entry, subentry, title="Roof \u2013 PV")
    await hass.async_block_till_done()
    device = device_registry.async_get(device.id)
    assert device is not None
    assert device.name == "Roof \u2013 PV"

    # Removed: its entities and device go.
    hass.config_entries.async_remove_subentry(entry, subentry.subentry_id)
    await hass.async_block_till_done()
    assert entity_registry.async_get(roof_time) is None
    assert hass.states.get(roof_time) is None
    assert device_registry.async_get(device.id) is None
    assert entity_registry.async_get(METER_TIME) is not None


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_last_upload_survives_a_restart(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
    sandbox: ZevvySandbox,
) -> None:
    """The last upload before a restart shows until the next one."""
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State(LAST_UPLOAD, "2026-11-26T11:45:00+00:00"),
                {
                    "native_value": {
                        "__type": "<class 'datetime.datetime'>",
                        "isoformat": "2026-11-26T11:45:00+00:00",
                    },
                    "native_unit_of_measurement": None,
                },
            ),
            (
                State(WAITING, "7"),
                {"native_value": 7, "native_unit_of_measurement": None},
            ),
        ],
    )
    freezer.move_to(START)
    await _setup(hass, meter_config_entry)
    assert hass.states.get(LAST_UPLOAD).state == "2026-11-26T11:45:00+00:00"  # type: ignore[union-attr]
    # Readings waiting is the outbox's count, never an old value.
    assert hass.states.get(WAITING).state == "0"  # type: ignore[union-attr]

    await _tick(hass, freezer, START + timedelta(minutes=10))
    assert hass.states.get(LAST_UPLOAD).state == "2026-11-26T12:15:00+00:00"  # type: ignore[union-attr]
