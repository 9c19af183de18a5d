"""Changed meters are read as they are now, from the next quarter hour on.

The pipeline keeps its checked meters between ticks (``MeterResolver``) and
checks them again only when the entity registry, the subentries or a meter
sensor's unit, device class or state class change: each such change shows at
the very next tick, also one made in the same turn of the event loop.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy import meters as meters_module
from custom_components.zevvy.const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_KIND,
    CONF_REGISTER_REF,
    SUBENTRY_TYPE_METER,
)
from zevvy_sandbox import ZevvySandbox

from .test_delivery import Meters

Q1 = datetime(2026, 11, 26, 12, 15, tzinfo=UTC)
QUARTER = timedelta(minutes=15)
WH = {"unit_of_measurement": "Wh", "state_class": "total_increasing"}


def _delivered(sandbox: ZevvySandbox, device: str) -> list[tuple[str, float]]:
    return [(r.read_at[11:16], r.value) for r in sandbox.readings(device)]


async def _tick(meters: Meters, quarter: datetime) -> None:
    """Move the clock just past a quarter hour: its tick collects and sends."""
    await meters.advance(quarter + timedelta(seconds=1), QUARTER, grow=False)


@pytest.fixture
async def meters(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
    sandbox: ZevvySandbox,
) -> Meters:
    """An entry (not yet set up) with the clock at 12:05 UTC."""
    freezer.move_to(Q1 - timedelta(minutes=10))
    mock_config_entry.add_to_hass(hass)
    return Meters(hass, mock_config_entry, freezer, sandbox)


async def test_unit_and_device_class_changes_show_at_the_next_tick(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """A meter whose sensor is not in its kind's units (or device class) is not
    read; in them, it is read from the next tick on, in its current unit."""
    one = meters.add("one", 1_000_000.0)
    entity_id = meters.entity_ids[one]
    hass.states.async_set(entity_id, "1000", {**WH, "unit_of_measurement": "W"})
    water = _add_water_meter(hass, meters, {**_WATER, "device_class": "gas"})
    coordinator = await meters.setup()
    await _tick(meters, Q1)
    assert sandbox.readings() == []

    # Energy in Wh; a water sensor again.
    hass.states.async_set(entity_id, "1000000", WH)
    hass.states.async_set("sensor.water", "2.5", _WATER)
    await _tick(meters, Q1 + QUARTER)
    assert _delivered(sandbox, "Device one") == [("12:30", 1000.0)]
    assert _delivered(sandbox, "Water") == [("12:30", 2.5)]

    # A power unit, a gas sensor: nothing read.
    hass.states.async_set(entity_id, "1000", {**WH, "unit_of_measurement": "W"})
    hass.states.async_set("sensor.water", "2.75", {**_WATER, "device_class": "gas"})
    await _tick(meters, Q1 + 2 * QUARTER)
    assert len(sandbox.readings()) == 2

    # Back, in kWh now (a whole kWh: 1000.2 after 1000.0 is no drop).
    hass.states.async_set(entity_id, "1000.2", {**WH, "unit_of_measurement": "kWh"})
    hass.states.async_set(
        "sensor.water", "2750", {**_WATER, "unit_of_measurement": "L"}
    )
    await _tick(meters, Q1 + 3 * QUARTER)
    assert _delivered(sandbox, "Device one") == [("12:30", 1000.0), ("13:00", 1000.2)]
    assert _delivered(sandbox, "Water") == [("12:30", 2.5), ("13:00", 2.75)]
    assert coordinator.coordinator.data.meters[water].pending == 0


async def test_a_change_in_the_same_turn_as_the_tick_is_seen(
    hass: HomeAssistant, meters: Meters
) -> None:
    """No turn of the event loop between the change and the collection: the
    kept meters are not used (the listeners run as the change happens)."""
    one = meters.add("one", 1_000_000.0)
    entity_id = meters.entity_ids[one]
    hass.states.async_set(entity_id, "1000", {**WH, "unit_of_measurement": "W"})
    coordinator = await meters.setup()
    assert (await coordinator.async_collect(Q1)).queued == 0

    hass.states.async_set(entity_id, "1000000", WH)
    assert (await coordinator.async_collect(Q1 + QUARTER)).queued == 1
    # The precision of its readings follows the unit: 1 Wh, then a whole kWh.
    assert [meter.step for meter in coordinator.meters.meters()] == [1]
    kwh = {**WH, "unit_of_measurement": "kWh"}
    hass.states.async_set(entity_id, "1000.5", kwh)
    assert [meter.step for meter in coordinator.meters.meters()] == [1000]

    er.async_get(hass).async_update_entity(entity_id, new_entity_id="sensor.renamed")
    hass.states.async_set("sensor.renamed", "1000.75", kwh)
    assert (await coordinator.async_collect(Q1 + 2 * QUARTER)).queued == 1
    batch = coordinator.outbox.next_batch(one, 10)
    assert batch is not None
    assert list(batch.values) == [1000.0, 1000.75]


async def test_renamed_sensor_is_read_under_its_new_id(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """The entity id of a meter's sensor renamed: the next tick reads the new id."""
    one = meters.add("one", 1_000_000.0)
    await meters.setup()
    await _tick(meters, Q1)

    registry = er.async_get(hass)
    registry.async_update_entity(meters.entity_ids[one], new_entity_id="sensor.new_id")
    hass.states.async_remove(meters.entity_ids[one])
    hass.states.async_set("sensor.new_id", "1000500", WH)
    await _tick(meters, Q1 + QUARTER)
    assert _delivered(sandbox, "Device one") == [("12:15", 1000.0), ("12:30", 1000.5)]


async def test_meters_added_and_removed_show_at_the_next_tick(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """A meter added between ticks is read at the next one; one removed is not."""
    one = meters.add("one", 1_000_000.0)
    # The sensor of "two" exists before: no registry change comes with its meter.
    er.async_get(hass).async_get_or_create(
        "sensor", "test", "uid_two", suggested_object_id="two"
    )
    coordinator = await meters.setup()
    await _tick(meters, Q1)

    meters.add("two", 2_000_000.0)
    await _tick(meters, Q1 + QUARTER)
    assert _delivered(sandbox, "Device two") == [("12:30", 2000.0)]

    assert hass.config_entries.async_remove_subentry(meters.entry, one)
    meters.add("three", 3_000_000.0)
    await _tick(meters, Q1 + 2 * QUARTER)
    assert _delivered(sandbox, "Device one") == [("12:15", 1000.0), ("12:30", 1000.0)]
    assert _delivered(sandbox, "Device two") == [("12:30", 2000.0), ("12:45", 2000.0)]
    assert _delivered(sandbox, "Device three") == [("12:45", 3000.0)]
    assert one not in coordinator.coordinator.data.meters


async def test_a_meter_changed_in_its_subentry_shows_at_the_next_tick(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """New references in the subentry (changed in place): the next tick sends
    under them."""
    one = meters.add("one", 1_000_000.0)
    await meters.setup()
    await _tick(meters, Q1)
    entry = meters.entry
    subentry = entry.subentries[one]
    hass.config_entries.async_update_subentry(
        entry, subentry, data={**subentry.data, CONF_DEVICE_REF: "Renamed"}
    )
    await _tick(meters, Q1 + QUARTER)
    assert _delivered(sandbox, "Renamed") == [("12:30", 1000.0)]


async def test_ticks_without_changes_check_no_meter_again(
    hass: HomeAssistant, meters: Meters
) -> None:
    """The meters are checked once, not at every quarter hour (1000 meters
    would cost every tick a walk through the registry); a change checks again."""
    meters.add("one")
    meters.add("two")
    coordinator = await meters.setup()
    await _tick(meters, Q1)
    with patch.object(
        meters_module, "check_meters", wraps=meters_module.check_meters
    ) as check:
        for quarter in range(1, 4):
            meters.grow()
            await _tick(meters, Q1 + quarter * QUARTER)
        assert check.call_count == 0
        meters.add("three")
        await _tick(meters, Q1 + 4 * QUARTER)
        assert check.call_count >= 1
    assert coordinator.coordinator.data.pending == 0


_WATER = {
    "unit_of_measurement": "m³",
    "state_class": "total_increasing",
    "device_class": "water",
}


def _add_water_meter(
    hass: HomeAssistant, meters: Meters, attributes: dict[str, str]
) -> str:
    """Add a water meter (its sensor at 2.5) with the references "Water"."""
    entity = er.async_get(hass).async_get_or_create(
        "sensor", "test", "uid_water", suggested_object_id="water"
    )
    hass.states.async_set(entity.entity_id, "2.5", attributes)
    subentry = ConfigSubentry(
        data={
            CONF_ENTITY_REGISTRY_ID: entity.id,
            CONF_ENTITY_ID: entity.entity_id,
            CONF_DEVICE_REF: "Water",
            CONF_REGISTER_REF: "Water",
            CONF_KIND: "water",
        },
        subentry_type=SUBENTRY_TYPE_METER,
        title="Water - Water",
        unique_id=entity.id,
    )
    hass.config_entries.async_add_subentry(meters.entry, subentry)
    return subentry.subentry_id


async def test_a_tick_keeps_readings_at_the_billing_resolution(
    hass: HomeAssistant, meters: Meters
) -> None:
    """A sensor's value finer than zevvy's resolution is kept as zevvy bills it:
    in Wh and litres, as it waits in the outbox (read once, rounded once)."""
    one = meters.add("one", 1_000_000.0)
    water = _add_water_meter(hass, meters, {**_WATER, "unit_of_measurement": "L"})
    coordinator = await meters.setup()
    hass.states.async_set(meters.entity_ids[one], "1234567.8", WH)
    hass.states.async_set(
        "sensor.water", "2750.4", {**_WATER, "unit_of_measurement": "L"}
    )
    assert (await coordinator.async_collect(Q1)).queued == 2
    kept = {}
    for key in (one, water):
        batch = coordinator.outbox.next_batch(key, 10)
        assert batch is not None
        kept[key] = list(batch.values)
    assert kept == {one: [1234.568], water: [2.75]}
