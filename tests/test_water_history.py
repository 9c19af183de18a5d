"""Water meters from the recorder: live ticks, gap fill and upload_history agree.

A daily water counter in litres (state class ``total`` with a ``last_reset``
at midnight) is a running total in m³; a water meter register in litres is
delivered as it reads, in m³. The recorder runs for real (in-memory SQLite) and
compiles its 5-minute statistics from the recorded states with Home
Assistant's own code, converted to m³ by its VolumeConverter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import Recorder
from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
)

from custom_components.zevvy.const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_KIND,
    CONF_REGISTER_REF,
    DOMAIN,
    SOURCE_RUNNING_TOTAL,
    SOURCE_SENSOR,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.meters import meter_title, source_data
from custom_components.zevvy.services import SERVICE_UPLOAD_HISTORY
from zevvy_sandbox import ZevvySandbox

from .test_running_total import add_sensor, at, readings, setup_entry

FIVE = timedelta(minutes=5)
BASE = datetime(2026, 11, 26, 23, tzinfo=UTC)
START = BASE + timedelta(minutes=7)
METER_START = BASE + timedelta(minutes=15)


def daily(last_reset: str) -> dict[str, Any]:
    """Attributes of a daily water counter in litres."""
    return {
        "unit_of_measurement": "L",
        "device_class": "water",
        "state_class": "total",
        "last_reset": last_reset,
    }


DAY_1 = daily("2026-11-26T00:00:00+00:00")
DAY_2 = daily("2026-11-27T00:00:00+00:00")
REGISTER = {
    "unit_of_measurement": "L",
    "device_class": "water",
    "state_class": "total_increasing",
}

# (minutes after 23:00, daily counter, its attributes, meter register in L)
SCRIPT: list[tuple[int, str, dict[str, Any], str]] = [
    (9, "400", DAY_1, "1000400"),  # before the start (23:15): not counted
    (17, "460", DAY_1, "1000460"),  # +60 L
    (24, "520", DAY_1, "1000520"),  # +60 L
    (38, "600", DAY_1, "1000600"),  # +80 L
    (44, "unavailable", DAY_1, "1000600"),
    (52, "650", DAY_1, "1000650"),  # +50 L (integration stopped from 23:50)
    (61, "0", DAY_2, "1000650"),  # a new day: the counter restarts
    (63, "30", DAY_2, "1000680"),  # +30 L
    (72, "95", DAY_2, "1000745"),  # +65 L  (integration started again at 01:20)
    (82, "140", DAY_2, "1000790"),  # +45 L
    (97, "200", DAY_2, "1000850"),  # +60 L
]


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: Any) -> None:
    """Prepare the recorder's database before hass (recorder_mock needs it)."""


def add_water_meter(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    entity: er.RegistryEntry,
    device: str,
    source: dict[str, Any],
) -> None:
    """Add a water meter subentry for ``entity``."""
    hass.config_entries.async_add_subentry(
        entry,
        ConfigSubentry(
            data={
                CONF_ENTITY_REGISTRY_ID: entity.id,
                CONF_ENTITY_ID: entity.entity_id,
                CONF_DEVICE_REF: device,
                CONF_REGISTER_REF: "Energy",
                CONF_KIND: "water",
                **source,
            },
            subentry_type=SUBENTRY_TYPE_METER,
            title=meter_title(device, "Energy"),
            unique_id=entity.id,
        ),
    )


async def test_water_live_gap_fill_and_history_agree(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A daily water counter as a running total and a water meter register in
    litres: live ticks and, while the integration was stopped across midnight,
    gap fill deliver m³; upload_history of twins afterwards gives the same."""
    freezer.move_to(START)
    live = add_sensor(hass, "daily_water", "350", DAY_1)
    twin = add_sensor(hass, "twin_daily_water", "350", DAY_1)
    register = add_sensor(hass, "water_register", "1000350", REGISTER)
    twin_register = add_sensor(hass, "twin_water_register", "1000350", REGISTER)
    await async_wait_recording_done(hass)
    mock_config_entry.add_to_hass(hass)
    running = source_data(SOURCE_RUNNING_TOTAL, 1234.5, int(METER_START.timestamp()))
    add_water_meter(hass, mock_config_entry, live, "Live", running)
    add_water_meter(
        hass, mock_config_entry, register, "Register", source_data(SOURCE_SENSOR)
    )
    await setup_entry(hass, mock_config_entry)
    script = {offset: rest for offset, *rest in SCRIPT}

    for offset in range(8, 106):
        moment = BASE + timedelta(minutes=offset)
        await at(hass, freezer, moment)
        if offset % 5 == 0:
            do_adhoc_statistics(hass, start=moment - FIVE)
            await async_wait_recording_done(hass)
        if offset == 50:
            assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
        if offset == 80:
            await setup_entry(hass, mock_config_entry)  # gap fill: 00:00, 00:15
        if (step := script.get(offset)) is not None:
            value, attributes, litres = step
            for entity in (live, twin):
                hass.states.async_set(entity.entity_id, value, attributes)
            for entity in (register, twin_register):
                hass.states.async_set(entity.entity_id, litres, REGISTER)
            await async_wait_recording_done(hass)

    running_expected = [
        ("2026-11-26T23:15:00.000Z", 1234.5),
        ("2026-11-26T23:30:00.000Z", 1234.62),
        ("2026-11-26T23:45:00.000Z", 1234.7),
        ("2026-11-27T00:00:00.000Z", 1234.75),
        ("2026-11-27T00:15:00.000Z", 1234.845),
        ("2026-11-27T00:30:00.000Z", 1234.89),
        ("2026-11-27T00:45:00.000Z", 1234.95),
    ]
    register_expected = [
        ("2026-11-26T23:15:00.000Z", 1000.4),
        ("2026-11-26T23:30:00.000Z", 1000.52),
        ("2026-11-26T23:45:00.000Z", 1000.6),
        ("2026-11-27T00:00:00.000Z", 1000.65),
        ("2026-11-27T00:15:00.000Z", 1000.745),
        ("2026-11-27T00:30:00.000Z", 1000.79),
        ("2026-11-27T00:45:00.000Z", 1000.85),
    ]
    assert sorted(readings(sandbox, "Live")) == running_expected
    assert sorted(readings(sandbox, "Register")) == register_expected

    add_water_meter(hass, mock_config_entry, twin, "Twin", running)
    add_water_meter(
        hass,
        mock_config_entry,
        twin_register,
        "Twin register",
        source_data(SOURCE_SENSOR),
    )
    response = await hass.services.async_call(
        DOMAIN,
        SERVICE_UPLOAD_HISTORY,
        {
            "start": METER_START,
            "end": BASE + timedelta(minutes=105),
            "meters": [twin.entity_id, twin_register.entity_id],
        },
        blocking=True,
        return_response=True,
    )
    assert response is not None
    await hass.async_block_till_done()
    assert readings(sandbox, "Twin") == running_expected
    assert readings(sandbox, "Twin register") == register_expected
