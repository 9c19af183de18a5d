"""Base entities of the zevvy integration.

Every account (config entry) is one service device "zevvy"; every meter (meter
subentry) is a service device of its own, connected through the account's
device, so that its entities belong to the meter's subentry.
"""

from __future__ import annotations

from homeassistant.config_entries import ConfigSubentry
from homeassistant.helpers.device_registry import (
    DeviceEntry,
    DeviceEntryType,
    DeviceInfo,
)
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .compat import async_get_device, via_device
from .const import DOMAIN
from .coordinator import ZevvyCoordinator
from .outbox import QueueView
from .runtime import ZevvyConfigEntry

MANUFACTURER = "zevvy"


def account_identifier(entry: ZevvyConfigEntry) -> tuple[str, str]:
    """Return the device identifier of an account."""
    return DOMAIN, str(entry.unique_id)


def account_device_info(entry: ZevvyConfigEntry) -> DeviceInfo:
    """Return the service device of an account."""
    return DeviceInfo(
        identifiers={account_identifier(entry)},
        entry_type=DeviceEntryType.SERVICE,
        manufacturer=MANUFACTURER,
        model="Meter-reading gateway",
        name="zevvy",
    )


def meter_identifier(entry: ZevvyConfigEntry, subentry_id: str) -> tuple[str, str]:
    """Return the device identifier of a meter."""
    return DOMAIN, f"{entry.unique_id}_{subentry_id}"


def meter_device_info(
    entry: ZevvyConfigEntry, subentry: ConfigSubentry, account: DeviceEntry | None
) -> DeviceInfo:
    """Return the service device of a meter (named like its subentry).

    It is linked to the account's device, which the sensor platform creates
    before any meter entity.
    """
    info = DeviceInfo(
        identifiers={meter_identifier(entry, subentry.subentry_id)},
        entry_type=DeviceEntryType.SERVICE,
        manufacturer=MANUFACTURER,
        model="Meter",
        name=subentry.title,
    )
    if account is not None:
        info.update(via_device(account))
    return info


class ZevvyEntity(CoordinatorEntity[ZevvyCoordinator]):
    """An entity of a zevvy account."""

    _attr_has_entity_name = True

    def __init__(self, entry: ZevvyConfigEntry, description: EntityDescription) -> None:
        """Initialize from the entry and the entity description."""
        super().__init__(entry.runtime_data.coordinator)
        self.entry = entry
        self.entity_description = description
        self._attr_unique_id = f"{entry.unique_id}_{description.key}"
        self._attr_device_info = account_device_info(entry)


class ZevvyMeterEntity(ZevvyEntity):
    """An entity of one meter of a zevvy account."""

    def __init__(
        self,
        entry: ZevvyConfigEntry,
        subentry: ConfigSubentry,
        description: EntityDescription,
    ) -> None:
        """Initialize from the entry, the meter's subentry and the description."""
        super().__init__(entry, description)
        self.subentry_id = subentry.subentry_id
        self._attr_unique_id = (
            f"{entry.unique_id}_{subentry.subentry_id}_{description.key}"
        )
        account = async_get_device(
            self.coordinator.hass, account_identifier(entry), entry.entry_id
        )
        self._attr_device_info = meter_device_info(entry, subentry, account)

    @property
    def meter_status(self) -> QueueView | None:
        """Return the meter's delivery state (None before its first reading)."""
        return self.coordinator.data.meters.get(self.subentry_id)
