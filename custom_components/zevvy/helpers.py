"""Small Home Assistant helpers shared by the modules of the integration.

Entry updates, and what every action needs: translated validation errors and
local times from the UI (finding the config entry an action is for:
``runtime.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.util import dt as dt_util

from .const import DOMAIN


@callback
def async_on_entry_updated(
    hass: HomeAssistant, entry: ConfigEntry[Any], action: Callable[[], None]
) -> None:
    """Call ``action`` whenever ``entry`` changes (data, subentries, state).

    Deliberately not an update listener (``entry.add_update_listener``): Home
    Assistant refuses ``async_update_reload_and_abort`` for an entry with update
    listeners (subentry flows in 2026.x; config flows are announced to follow),
    and our reauthentication and reconfigure flows use it. The subscription ends
    when the entry unloads.
    """

    @callback
    def _async_changed(change: ConfigEntryChange, changed: ConfigEntry[Any]) -> None:
        if change is ConfigEntryChange.UPDATED and changed.entry_id == entry.entry_id:
            action()

    entry.async_on_unload(
        async_dispatcher_connect(hass, SIGNAL_CONFIG_ENTRY_CHANGED, _async_changed)
    )


# --- actions --------------------------------------------------------------------


def validation_error(key: str, **placeholders: str) -> ServiceValidationError:
    """Return a translated error about what an action was given."""
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders or None,
    )


def aware(value: datetime) -> datetime:
    """Return an aware time; the UI's picker gives local time without a zone."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt_util.get_default_time_zone())
    return value
