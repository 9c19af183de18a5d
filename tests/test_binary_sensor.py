"""Connection binary sensor: off while zevvy is unreachable, on again after."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.const import STATE_OFF, STATE_ON, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    snapshot_platform,
)
from syrupy.assertion import SnapshotAssertion

from zevvy_sandbox import ZevvySandbox

START = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)
CONNECTION = "binary_sensor.zevvy_connection"
LAST_UPLOAD = "sensor.zevvy_last_upload"
WAITING = "sensor.zevvy_readings_waiting"


async def _setup(
    hass: HomeAssistant, entry: MockConfigEntry, platforms: list[Platform]
) -> None:
    entry.add_to_hass(hass)
    with patch("custom_components.zevvy.PLATFORMS", platforms):
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()


async def _move(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, moment: datetime
) -> None:
    freezer.move_to(moment)
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


async def test_binary_sensor(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """The connection sensor of the account."""
    await _setup(hass, meter_config_entry, [Platform.BINARY_SENSOR])
    await snapshot_platform(
        hass, entity_registry, snapshot, meter_config_entry.entry_id
    )


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_connection_follows_zevvy(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Unreachable: off (still available), readings wait; back: on, delivered."""
    freezer.move_to(START)
    await _setup(hass, meter_config_entry, [Platform.BINARY_SENSOR, Platform.SENSOR])
    assert hass.states.get(CONNECTION).state == STATE_ON  # type: ignore[union-attr]

    sandbox.inject_fault(status=503, count=1)
    await _move(hass, freezer, START + timedelta(minutes=10))
    assert hass.states.get(CONNECTION).state == STATE_OFF  # type: ignore[union-attr]
    # Everything stays available: being off is the answer.
    assert hass.states.get(WAITING).state == "1"  # type: ignore[union-attr]
    assert hass.states.get(LAST_UPLOAD).state == "unknown"  # type: ignore[union-attr]
    assert sandbox.readings() == []

    # The retry 30 s later reaches zevvy.
    await _move(hass, freezer, START + timedelta(minutes=10, seconds=30))
    assert hass.states.get(CONNECTION).state == STATE_ON  # type: ignore[union-attr]
    assert hass.states.get(WAITING).state == "0"  # type: ignore[union-attr]
    assert hass.states.get(LAST_UPLOAD).state == "2026-11-26T12:15:30+00:00"  # type: ignore[union-attr]
    assert [r.read_at for r in sandbox.readings()] == ["2026-11-26T12:15:00.000Z"]


async def test_connection_off_when_login_rejected(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A login zevvy no longer accepts: off, and reauthentication starts."""
    freezer.move_to(START)
    await _setup(hass, meter_config_entry, [Platform.BINARY_SENSOR])
    sandbox.revoke_refresh_tokens()
    sandbox.expire_access_tokens()

    await _move(hass, freezer, START + timedelta(minutes=10))

    assert hass.states.get(CONNECTION).state == STATE_OFF  # type: ignore[union-attr]
    flows = hass.config_entries.flow.async_progress_by_handler("zevvy")
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]
