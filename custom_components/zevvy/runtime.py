"""What a loaded zevvy config entry holds, and finding the entry an action is for.

``ZevvyConfigEntry`` is the typed config entry every platform and action works
with; its ``runtime_data`` is a ``ZevvyRuntimeData``.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import HomeAssistant, callback

from .api import TokenManager
from .const import DOMAIN
from .coordinator import ZevvyCoordinator
from .helpers import validation_error
from .outbox import Outbox
from .pipeline import ReadingPipeline


@dataclass
class ZevvyRuntimeData:
    """What a loaded zevvy config entry holds while Home Assistant runs."""

    tokens: TokenManager
    outbox: Outbox
    # The path of every reading into the outbox and on to zevvy.
    pipeline: ReadingPipeline
    # Publishes the pipeline's status for the entities.
    coordinator: ZevvyCoordinator


type ZevvyConfigEntry = ConfigEntry[ZevvyRuntimeData]


@callback
def async_get_loaded_entry(hass: HomeAssistant, entry_id: str) -> ZevvyConfigEntry:
    """Return a loaded zevvy config entry or raise a translated error."""
    entry = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise validation_error("entry_not_found", entry_id=entry_id)
    if entry.state is not ConfigEntryState.LOADED:
        raise validation_error("entry_not_loaded", account=entry.title)
    zevvy_entry: ZevvyConfigEntry = entry
    return zevvy_entry


@callback
def async_get_target_entries(
    hass: HomeAssistant, entry_id: str | None
) -> list[ZevvyConfigEntry]:
    """Return the entry asked for, or every loaded zevvy entry (at least one)."""
    if entry_id:
        return [async_get_loaded_entry(hass, entry_id)]
    entries: list[ZevvyConfigEntry] = hass.config_entries.async_loaded_entries(DOMAIN)
    if not entries:
        raise validation_error("no_loaded_entry")
    return entries


@callback
def async_get_single_entry(
    hass: HomeAssistant, entry_id: str | None
) -> ZevvyConfigEntry:
    """Return the entry asked for, or the only loaded one."""
    entries = async_get_target_entries(hass, entry_id)
    if len(entries) > 1:
        raise validation_error("entry_required")
    return entries[0]
