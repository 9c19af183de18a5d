"""Diagnostic button: send the pending readings now."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import ZevvyEntity
from .runtime import ZevvyConfigEntry
from .services import async_send_now

PARALLEL_UPDATES = 1

UPLOAD_NOW = ButtonEntityDescription(
    key="upload_now",
    translation_key="upload_now",
    entity_category=EntityCategory.DIAGNOSTIC,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ZevvyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the upload button of an account."""
    async_add_entities([ZevvyUploadButton(entry, UPLOAD_NOW)])


class ZevvyUploadButton(ZevvyEntity, ButtonEntity):
    """Send what waits in the outbox now (like the upload_now action)."""

    async def async_press(self) -> None:
        """Upload now; a zevvy error becomes a translated error message."""
        await async_send_now(self.entry)
