"""What differs between the Home Assistant versions the integration supports.

The tests run on 2025.4 (the minimum in hacs.json, Python 3.13) and on the newest
release (requirements_test_newest.txt, Python 3.14). At runtime the new API is
used where it exists, picked by feature rather than by version; the old one only
where it does not.

For mypy, the names whose types differ come from the version being checked:
mypy cannot ask what is installed, but it knows the Python version, and the two
versions the tests pin run on different ones (3.13 and 3.14).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, cast

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceEntry, DeviceInfo

if TYPE_CHECKING:
    if sys.version_info >= (3, 14):
        # Home Assistant 2026.x validates with probatio, voluptuous's drop-in
        # successor, and types flows and services with its schemas.
        from homeassistant.components.binary_sensor.const import (
            BinarySensorDeviceClass,
        )
        from homeassistant.components.repairs import RepairsFlowResult
        import probatio as vol
    else:
        from homeassistant.components.binary_sensor import BinarySensorDeviceClass
        from homeassistant.data_entry_flow import FlowResult as RepairsFlowResult
        import voluptuous as vol
else:
    from homeassistant.components.binary_sensor import BinarySensorDeviceClass
    from homeassistant.data_entry_flow import FlowResult as RepairsFlowResult

    try:
        import probatio as vol
    except ImportError:  # before Home Assistant 2026.x
        import voluptuous as vol

__all__ = [
    "BinarySensorDeviceClass",
    "RepairsFlowResult",
    "async_get_device",
    "via_device",
    "vol",
]

# Since 2026.8 a device belongs to one config entry: it is looked up by
# identifier within its entry, and DeviceInfo names its parent by device id.
_HAS_DEVICE_BY_IDENTIFIER = hasattr(dr.DeviceRegistry, "async_get_device_by_identifier")
_HAS_VIA_DEVICE_ID = "via_device_id" in DeviceInfo.__optional_keys__


@callback
def async_get_device(
    hass: HomeAssistant, identifier: tuple[str, str], config_entry_id: str
) -> DeviceEntry | None:
    """Return the config entry's device with this identifier."""
    registry = dr.async_get(hass)
    if _HAS_DEVICE_BY_IDENTIFIER:
        device: DeviceEntry | None = registry.async_get_device_by_identifier(  # type: ignore[attr-defined,unused-ignore]
            identifier, config_entry_id
        )
        return device
    return registry.async_get_device(identifiers={identifier})


def via_device(parent: DeviceEntry) -> DeviceInfo:
    """Return the DeviceInfo fields that link a device to its parent device."""
    if _HAS_VIA_DEVICE_ID:
        return cast(DeviceInfo, {"via_device_id": parent.id})
    return cast(DeviceInfo, {"via_device": next(iter(parent.identifiers))})
