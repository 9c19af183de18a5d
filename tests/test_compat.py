"""Tests for what keeps the integration working on newer Home Assistant versions."""

from __future__ import annotations

import inspect
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers.storage import Store
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy.const import DOMAIN
from custom_components.zevvy.helpers import async_on_entry_updated
from custom_components.zevvy.meters import _dashboard_stat_ids
from custom_components.zevvy.outbox import Outbox, store as outbox_store, store_kwargs


async def test_no_update_listeners(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """A loaded entry has no update listener.

    Home Assistant refuses async_update_reload_and_abort (our reauth and
    reconfigure) for an entry with update listeners in newer versions.
    """
    assert init_integration.update_listeners == []


async def test_on_entry_updated(hass: HomeAssistant) -> None:
    """The action runs for changes of its entry only."""
    entry = MockConfigEntry(domain=DOMAIN, state=ConfigEntryState.LOADED)
    other = MockConfigEntry(domain=DOMAIN, state=ConfigEntryState.LOADED)
    entry.add_to_hass(hass)
    other.add_to_hass(hass)
    calls: list[None] = []
    async_on_entry_updated(hass, entry, lambda: calls.append(None))

    hass.config_entries.async_update_entry(other, title="other")
    assert calls == []
    hass.config_entries.async_update_entry(entry, title="changed")
    assert len(calls) == 1
    # Its unload ends the subscription.
    await entry._async_process_on_unload(hass)
    hass.config_entries.async_update_entry(entry, title="changed again")
    assert len(calls) == 1


def test_dashboard_stat_ids_lenient() -> None:
    """Energy preferences of another shape give fewer ids, never an error."""
    preferences: dict[str, Any] = {
        "energy_sources": [
            {"type": "grid"},
            {"type": "grid", "flow_from": [{}], "flow_to": None},
            {"type": "grid", "flow_from": [{"stat_energy_from": "sensor.a"}]},
            {"type": "solar"},
            {"type": "battery", "stat_energy_from": "sensor.b", "stat_energy_to": 3},
        ],
        "device_consumption": [{"name": "x"}, {"stat_consumption": "sensor.c"}],
    }
    assert _dashboard_stat_ids(preferences) == {"sensor.a", "sensor.b", "sensor.c"}
    assert _dashboard_stat_ids({}) == set()
    assert _dashboard_stat_ids({"energy_sources": None}) == set()


async def test_outbox_store_serializes_off_the_loop(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where Store can serialize in the executor (newer versions), we ask for it."""
    seen: dict[str, Any] = {}

    class NewerStore(Store[dict[str, Any]]):
        def __init__(
            self, *args: Any, serialize_in_event_loop: bool = True, **kwargs: Any
        ) -> None:
            seen["serialize_in_event_loop"] = serialize_in_event_loop
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(outbox_store, "Store", NewerStore)
    Outbox(hass, "entry")
    assert seen == {"serialize_in_event_loop": False}


async def test_outbox_store_on_this_version(hass: HomeAssistant) -> None:
    """Without that option (2025.4), the store is created without it."""
    newer = "serialize_in_event_loop" in inspect.signature(Store.__init__).parameters
    assert store_kwargs() == ({"serialize_in_event_loop": False} if newer else {})
    Outbox(hass, "entry")
