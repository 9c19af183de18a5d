"""Upload button: delivers what waits now; zevvy errors become translated errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.button import DOMAIN as BUTTON_DOMAIN, SERVICE_PRESS
from homeassistant.const import ATTR_ENTITY_ID, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    snapshot_platform,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.zevvy.api import Reading
from custom_components.zevvy.const import DOMAIN
from custom_components.zevvy.outbox import Destination
from zevvy_sandbox import ZevvySandbox

START = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)
BUTTON = "button.zevvy_upload_now"


async def _setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    with patch("custom_components.zevvy.PLATFORMS", [Platform.BUTTON]):
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()


async def _press(hass: HomeAssistant) -> None:
    await hass.services.async_call(
        BUTTON_DOMAIN, SERVICE_PRESS, {ATTR_ENTITY_ID: BUTTON}, blocking=True
    )


async def test_button(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The upload button of the account."""
    freezer.move_to(START)
    await _setup(hass, meter_config_entry)
    await snapshot_platform(
        hass, entity_registry, snapshot, meter_config_entry.entry_id
    )


async def test_press_delivers_waiting_readings(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A reading kept back by an outage goes out on press, before the retry."""
    freezer.move_to(START)
    await _setup(hass, meter_config_entry)
    sandbox.inject_fault(status=503, count=1)
    freezer.move_to(START + timedelta(minutes=10))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    pipeline = meter_config_entry.runtime_data.pipeline
    assert pipeline.coordinator.data.pending == 1
    assert sandbox.readings() == []

    await _press(hass)

    assert [(r.read_at, r.value) for r in sandbox.readings("Grid", "Import")] == [
        ("2026-11-26T12:15:00.000Z", 1234.5)
    ]
    assert pipeline.coordinator.data.pending == 0
    assert pipeline.coordinator.data.connected
    # The retry timer was cancelled: nothing is sent twice.
    requests = len(sandbox.requests)
    freezer.move_to(START + timedelta(minutes=12))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert len(sandbox.requests) == requests


@pytest.mark.parametrize(
    "fault",
    [{"status": 503, "count": 5}, {"status": None, "drop": True}],
    ids=["503", "dropped_connection"],
)
async def test_press_while_unreachable(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
    fault: dict[str, object],
) -> None:
    """zevvy unreachable: a translated error says the readings are kept."""
    freezer.move_to(START)
    await _setup(hass, meter_config_entry)
    sandbox.inject_fault(status=503, count=1)
    freezer.move_to(START + timedelta(minutes=10))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    sandbox.inject_fault(**fault)  # type: ignore[arg-type]

    with pytest.raises(HomeAssistantError) as err:
        await _press(hass)

    assert err.value.translation_domain == DOMAIN
    assert err.value.translation_key == "upload_failed"
    assert err.value.translation_placeholders == {
        "account": meter_config_entry.title,
        "waiting": "1",
    }
    assert meter_config_entry.runtime_data.pipeline.coordinator.data.pending == 1


async def test_press_when_login_rejected(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
) -> None:
    """A rejected login: a translated error asking to log in again."""
    await _setup(hass, meter_config_entry)
    meter_config_entry.runtime_data.outbox.add(
        Destination("ref:a/b", "a", "b"),
        [Reading(datetime(2026, 11, 26, 12, tzinfo=UTC), 1.0)],
    )
    sandbox.revoke_refresh_tokens()
    sandbox.expire_access_tokens()

    with pytest.raises(HomeAssistantError) as err:
        await _press(hass)

    assert err.value.translation_key == "authentication_failed"
