"""Actions of the zevvy integration.

Registered once in ``async_setup`` (not per config entry), as nordpool does, so
that calling an action for an entry that is not loaded gives a clear error
instead of "unknown action".

* ``zevvy.upload_now``: deliver what waits in the outbox now.
* ``zevvy.send_reading``: a manual meter reading (for meters without an entity,
  or from automations); queued in the outbox like every other reading, then
  delivered.
"""

from __future__ import annotations

from datetime import datetime
import math
from typing import Any, Final

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import UnitOfEnergy
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv, entity_registry as er
from homeassistant.util import dt as dt_util
from homeassistant.util.unit_conversion import EnergyConverter
import voluptuous as vol

from .api import is_valid_reference
from .const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_REGISTER_REF,
    DOMAIN,
    READING_DECIMALS,
    SUBENTRY_TYPE_METER,
)
from .coordinator import UploadResult, ZevvyConfigEntry, quarter_floor
from .history import (
    SERVICE_UPLOAD_HISTORY,
    UPLOAD_HISTORY_SCHEMA,
    async_handle_upload_history,
)
from .meters import ENERGY_UNITS
from .outbox import manual_key, to_epoch

SERVICE_UPLOAD_NOW: Final = "upload_now"
SERVICE_SEND_READING: Final = "send_reading"

ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_METER: Final = "meter"
ATTR_DEVICE_REF: Final = CONF_DEVICE_REF
ATTR_REGISTER_REF: Final = CONF_REGISTER_REF
ATTR_VALUE: Final = "value"
ATTR_UNIT: Final = "unit"
ATTR_TIME: Final = "time"

UPLOAD_NOW_SCHEMA: Final = vol.Schema({vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string})
# Values are checked in the handler, not here, so that a wrong value gets a
# translated message instead of voluptuous' English one.
SEND_READING_SCHEMA: Final = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Optional(ATTR_METER): cv.entity_id,
        vol.Optional(ATTR_DEVICE_REF): cv.string,
        vol.Optional(ATTR_REGISTER_REF): cv.string,
        vol.Required(ATTR_VALUE): vol.Coerce(float),
        vol.Optional(ATTR_UNIT, default=UnitOfEnergy.KILO_WATT_HOUR): cv.string,
        vol.Optional(ATTR_TIME): cv.datetime,
    }
)


def _validation_error(key: str, **placeholders: str) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders or None,
    )


@callback
def async_get_loaded_entry(hass: HomeAssistant, entry_id: str) -> ZevvyConfigEntry:
    """Return a loaded zevvy config entry or raise a translated error."""
    entry = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise _validation_error("entry_not_found", entry_id=entry_id)
    if entry.state is not ConfigEntryState.LOADED:
        raise _validation_error("entry_not_loaded", account=entry.title)
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
        raise _validation_error("no_loaded_entry")
    return entries


@callback
def async_get_single_entry(
    hass: HomeAssistant, entry_id: str | None
) -> ZevvyConfigEntry:
    """Return the entry asked for, or the only loaded one."""
    entries = async_get_target_entries(hass, entry_id)
    if len(entries) > 1:
        raise _validation_error("entry_required")
    return entries[0]


def _raise_for_upload(result: UploadResult, entry: ZevvyConfigEntry) -> None:
    """Turn an upload that stopped at a zevvy error into a translated error."""
    if result.error is None:
        return
    if result.error == "authentication":
        raise HomeAssistantError(
            translation_domain=DOMAIN, translation_key="authentication_failed"
        )
    raise HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="upload_failed",
        translation_placeholders={
            "account": entry.title,
            "waiting": str(result.waiting),
        },
    )


async def async_upload_entry(entry: ZevvyConfigEntry) -> UploadResult:
    """Deliver an entry's outbox now; raise a translated error if zevvy fails."""
    result = await entry.runtime_data.coordinator.async_upload_now()
    _raise_for_upload(result, entry)
    return result


async def _async_upload_now(call: ServiceCall) -> ServiceResponse:
    """Handle ``zevvy.upload_now``."""
    entries = async_get_target_entries(call.hass, call.data.get(ATTR_CONFIG_ENTRY_ID))
    sent = waiting = held = parked = 0
    for entry in entries:
        result = await async_upload_entry(entry)
        sent += result.sent
        waiting += result.waiting
        held += result.held
        parked += result.parked
    if not call.return_response:
        return None
    return {"sent": sent, "waiting": waiting, "held": held, "parked": parked}


def _check_reference(value: str) -> str:
    """Return a trimmed reference, or raise for one the client's rule refuses."""
    reference = value.strip()
    if not is_valid_reference(reference):
        raise _validation_error("invalid_reference", reference=value)
    return reference


def _find_meter(
    hass: HomeAssistant, entity_id: str, entry_id: str | None
) -> tuple[ZevvyConfigEntry, str, str, str]:
    """Return (entry, subentry id, device_ref, register_ref) of a meter's entity."""
    entity_entry = er.async_get(hass).async_get(entity_id)
    registry_id = entity_entry.id if entity_entry else None
    entries = (
        [async_get_loaded_entry(hass, entry_id)]
        if entry_id
        else hass.config_entries.async_entries(DOMAIN)
    )
    for entry in entries:
        for subentry in entry.subentries.values():
            if subentry.subentry_type != SUBENTRY_TYPE_METER:
                continue
            data = subentry.data
            if data[CONF_ENTITY_REGISTRY_ID] == registry_id or (
                registry_id is None and data[CONF_ENTITY_ID] == entity_id
            ):
                return (
                    # The meter's account must be loaded.
                    async_get_loaded_entry(hass, entry.entry_id),
                    subentry.subentry_id,
                    data[CONF_DEVICE_REF],
                    data[CONF_REGISTER_REF],
                )
    raise _validation_error("unknown_meter", entity_id=entity_id)


def _key_for_references(
    entry: ZevvyConfigEntry, device_ref: str, register_ref: str
) -> str:
    """Return the queue key: a meter's subentry id if a meter has these references.

    A manual reading for a configured meter shares its queue, so the drop check
    and the last delivered reading apply to both.
    """
    for subentry in entry.subentries.values():
        if (
            subentry.subentry_type == SUBENTRY_TYPE_METER
            and subentry.data[CONF_DEVICE_REF] == device_ref
            and subentry.data[CONF_REGISTER_REF] == register_ref
        ):
            return subentry.subentry_id
    return manual_key(device_ref, register_ref)


def _read_at(value: datetime | None) -> datetime:
    """Return the quarter hour of a reading: the given time's, or now's."""
    now = dt_util.utcnow()
    if value is None:
        return quarter_floor(now)
    if value.tzinfo is None:
        # The UI's date-time picker gives local time without a zone.
        value = value.replace(tzinfo=dt_util.get_default_time_zone())
    if value > now:
        raise _validation_error("time_in_future", time=value.isoformat())
    return quarter_floor(value)


def _to_kwh(value: float, unit: str) -> float:
    if unit not in ENERGY_UNITS:
        raise _validation_error("invalid_unit", unit=unit)
    if not math.isfinite(value) or value < 0:
        raise _validation_error("invalid_value", value=str(value))
    kwh = EnergyConverter.convert(value, unit, UnitOfEnergy.KILO_WATT_HOUR)
    return round(kwh, READING_DECIMALS) + 0.0


async def _async_send_reading(call: ServiceCall) -> ServiceResponse:
    """Handle ``zevvy.send_reading``."""
    hass = call.hass
    data = call.data
    entry_id: str | None = data.get(ATTR_CONFIG_ENTRY_ID)
    meter: str | None = data.get(ATTR_METER)
    device_ref: str | None = data.get(ATTR_DEVICE_REF)
    register_ref: str | None = data.get(ATTR_REGISTER_REF)
    has_refs = device_ref is not None or register_ref is not None
    if (meter is None) == (not has_refs) or (
        has_refs and (device_ref is None or register_ref is None)
    ):
        raise _validation_error("meter_or_references")

    value = _to_kwh(data[ATTR_VALUE], data[ATTR_UNIT])
    read_at = _read_at(data.get(ATTR_TIME))

    if device_ref is not None and register_ref is not None:
        device_ref = _check_reference(device_ref)
        register_ref = _check_reference(register_ref)
        entry = async_get_single_entry(hass, entry_id)
        key = _key_for_references(entry, device_ref, register_ref)
    else:
        entry, key, device_ref, register_ref = _find_meter(hass, str(meter), entry_id)

    runtime = entry.runtime_data
    added = await runtime.outbox.async_add(
        key, device_ref, register_ref, ((read_at, value),)
    )
    # The reading is stored: a zevvy error now only delays it (the outbox keeps
    # it and the sender retries), so it is reported, not raised.
    result = await runtime.coordinator.async_upload_now()
    if not call.return_response:
        return None
    status = "queued" if added.queued else ("held" if added.held else "duplicate")
    queue = runtime.outbox.queue(key)
    when = to_epoch(read_at)
    delivered = (
        queue is not None
        and status == "queued"
        and queue.pending.index(when) < 0
        and queue.parked.index(when) < 0
    )
    response: dict[str, Any] = {
        "device_ref": device_ref,
        "register_ref": register_ref,
        "read_at": read_at.isoformat(),
        "value_kwh": value,
        "status": status,
        "delivered": delivered,
        "waiting": result.waiting,
    }
    return response


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the zevvy actions (once, from ``async_setup``)."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_UPLOAD_NOW,
        _async_upload_now,
        schema=UPLOAD_NOW_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_SEND_READING,
        _async_send_reading,
        schema=SEND_READING_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_UPLOAD_HISTORY,
        async_handle_upload_history,
        schema=UPLOAD_HISTORY_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
