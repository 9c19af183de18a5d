"""The coordinator: publishes a ``ZevvyStatus`` for the entities, nothing else.

Like the coordinators of peblar or homewizard, minus the fetching: the reading
pipeline (``pipeline.py``) does the work on the wall clock's quarter hours and
hands the status over whenever it changes; the entities only read it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator

from .const import DOMAIN, LOGGER
from .status import ZevvyStatus


class ZevvyCoordinator(DataUpdateCoordinator[ZevvyStatus]):
    """Publish the delivery's status (no polling: it is pushed)."""

    def __init__(
        self,
        hass: HomeAssistant,
        config_entry: ConfigEntry[Any],
        status: Callable[[], ZevvyStatus],
    ) -> None:
        """Initialize with the function that returns the current status."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=config_entry,
            name=DOMAIN,
            update_interval=None,
        )
        self._status = status

    async def _async_update_data(self) -> ZevvyStatus:
        """Return the current status (no I/O: the pipeline pushes changes)."""
        return self._status()
