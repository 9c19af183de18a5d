"""Tests for what keeps the integration working on newer Home Assistant versions."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any, cast

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.storage import Store
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy import compat
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
            # 2026.x: import and export on the grid source itself.
            {
                "type": "grid",
                "stat_energy_from": "sensor.d",
                "stat_energy_to": "sensor.e",
            },
            {"type": "solar"},
            {"type": "battery", "stat_energy_from": "sensor.b", "stat_energy_to": 3},
        ],
        "device_consumption": [{"name": "x"}, {"stat_consumption": "sensor.c"}],
    }
    assert _dashboard_stat_ids(preferences) == {
        "sensor.a",
        "sensor.b",
        "sensor.c",
        "sensor.d",
        "sensor.e",
    }
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


async def test_device_lookup_on_this_version(
    hass: HomeAssistant, device_registry: dr.DeviceRegistry
) -> None:
    """A device is found by its identifier; a child links to it."""
    entry = MockConfigEntry(domain=DOMAIN)
    other = MockConfigEntry(domain=DOMAIN)
    entry.add_to_hass(hass)
    other.add_to_hass(hass)
    device = device_registry.async_get_or_create(
        config_entry_id=entry.entry_id, identifiers={(DOMAIN, "a")}
    )
    assert compat.async_get_device(hass, (DOMAIN, "a"), entry.entry_id) == device
    assert compat.async_get_device(hass, (DOMAIN, "b"), entry.entry_id) is None
    child = device_registry.async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, "child")},
        **compat.via_device(device),
    )
    assert child.via_device_id == device.id


class FakeRegistry:
    """The two device lookups, recording how they were called."""

    def __init__(self) -> None:
        """Record nothing yet."""
        self.calls: list[tuple[str, Any]] = []

    def async_get_device_by_identifier(
        self, identifier: tuple[str, str], config_entry_id: str
    ) -> None:
        """Record a lookup of the newer versions."""
        self.calls.append(("by_identifier", (identifier, config_entry_id)))

    def async_get_device(self, identifiers: set[tuple[str, str]]) -> None:
        """Record a lookup of the older versions."""
        self.calls.append(("identifiers", identifiers))


@pytest.mark.parametrize(
    ("newer", "expected"),
    [
        (True, ("by_identifier", ((DOMAIN, "a"), "entry"))),
        (False, ("identifiers", {(DOMAIN, "a")})),
    ],
)
async def test_device_lookup_by_feature(
    hass: HomeAssistant,
    monkeypatch: pytest.MonkeyPatch,
    newer: bool,
    expected: tuple[str, Any],
) -> None:
    """The lookup of the entry's own device where it exists, else the old one."""
    registry = FakeRegistry()
    monkeypatch.setattr(compat.dr, "async_get", lambda hass: registry)
    monkeypatch.setattr(compat, "_HAS_DEVICE_BY_IDENTIFIER", newer)
    assert compat.async_get_device(hass, (DOMAIN, "a"), "entry") is None
    assert registry.calls == [expected]


@pytest.mark.parametrize(
    ("newer", "expected"),
    [
        (True, {"via_device_id": "parent-id"}),
        (False, {"via_device": (DOMAIN, "parent")}),
    ],
)
def test_via_device_by_feature(
    monkeypatch: pytest.MonkeyPatch, newer: bool, expected: dict[str, Any]
) -> None:
    """The parent by device id where DeviceInfo has via_device_id, else by identifier."""
    monkeypatch.setattr(compat, "_HAS_VIA_DEVICE_ID", newer)
    # DeviceEntry's required fields differ between the versions: a stand-in.
    parent = SimpleNamespace(id="parent-id", identifiers={(DOMAIN, "parent")})
    assert compat.via_device(cast(dr.DeviceEntry, parent)) == expected
