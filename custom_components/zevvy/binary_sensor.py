"""Diagnostic binary sensor: whether zevvy accepts the deliveries."""

from __future__ import annotations

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .compat import BinarySensorDeviceClass
from .entity import ZevvyEntity
from .runtime import ZevvyConfigEntry
from .sender import SendError

PARALLEL_UPDATES = 0

CONNECTION = BinarySensorEntityDescription(
    key="connection",
    translation_key="connection",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
    entity_category=EntityCategory.DIAGNOSTIC,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ZevvyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the connection sensor of an account."""
    async_add_entities([ZevvyConnectionEntity(entry, CONNECTION)])


class ZevvyConnectionEntity(ZevvyEntity, BinarySensorEntity):
    """On while zevvy takes readings; off while it is unreachable or the login
    is no longer accepted.

    It stays available when zevvy is unreachable: being off is its answer.
    """

    @property
    def is_on(self) -> bool:
        """Return whether the last delivery attempt reached zevvy."""
        status = self.coordinator.data
        return status.connected and status.last_error is not SendError.AUTHENTICATION
