"""Actions of the zevvy integration.

Registered once in ``async_setup`` (not per config entry), as nordpool does, so
that calling an action for an entry that is not loaded gives a clear error
instead of "unknown action".

* ``zevvy.upload_now``: send what waits in the outbox now.
* ``zevvy.send_reading``: a manual meter reading (for meters without an entity,
  or from automations); queued in the outbox like every other reading, then
  sent. The meter is picked as its zevvy device (the UI offers only those) or
  given as its energy sensor's entity id.
* ``zevvy.upload_history``: backfill a period from the recorder's statistics
  (read by history.py).

Times in answers are ISO with the offset of Home Assistant's time zone (for
automations); times in error messages are local time as a person reads it.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import replace
from datetime import datetime
import math
from typing import Any, Final

from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
    valid_entity_id,
)
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import (
    config_validation as cv,
    device_registry as dr,
    entity_registry as er,
)
from homeassistant.util import dt as dt_util

from .api import Reading, is_valid_reference
from .compat import vol
from .const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_REGISTER_REF,
    DOMAIN,
    EARLIEST_READING_YEAR,
    LOGGER,
    MAX_READING_KWH,
    SUBENTRY_TYPE_METER,
)
from .entity import meter_identifier
from .helpers import (
    aware,
    validation_error,
)
from .history import MeterResult, async_read_meter, log_result
from .meters import (
    KINDS,
    Meter,
    MeterKind,
    reading_step,
    resolve_meters,
    stored_kind,
    to_reading,
    typed_decimals,
)
from .outbox import Destination
from .quarters import quarter_floor, recorder_loaded
from .runtime import (
    ZevvyConfigEntry,
    async_get_loaded_entry,
    async_get_single_entry,
    async_get_target_entries,
)
from .sender import SendError
from .status import SendResult

SERVICE_UPLOAD_NOW: Final = "upload_now"
SERVICE_SEND_READING: Final = "send_reading"
SERVICE_UPLOAD_HISTORY: Final = "upload_history"

ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_METER: Final = "meter"
ATTR_DEVICE_REF: Final = CONF_DEVICE_REF
ATTR_REGISTER_REF: Final = CONF_REGISTER_REF
ATTR_VALUE: Final = "value"
ATTR_UNIT: Final = "unit"
ATTR_TIME: Final = "time"
ATTR_START: Final = "start"
ATTR_END: Final = "end"
ATTR_METERS: Final = "meters"
# The translated error of a unit that is not of the meter's kind, per kind
# (energy keeps the error it always had).
_INVALID_UNIT: Final[dict[MeterKind, str]] = {
    MeterKind.ENERGY: "invalid_unit",
    MeterKind.WATER: "invalid_unit_water",
    MeterKind.GAS: "invalid_unit_gas",
}


def _reading_value(value: object) -> float | str:
    """Check a meter reading's number: finite, zero or more; never a boolean.

    Returned as typed (a number, or the text with its digits): its precision
    is taken from it in ``_reading_in_unit``. Like every validator below it
    raises a translated ServiceValidationError, which passes through voluptuous
    and Home Assistant's schema check unchanged, instead of voluptuous' English
    ``vol.Invalid``.
    """
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number < 0:
        raise validation_error("invalid_value", value=str(value))
    return value.strip() if isinstance(value, str) else number


def _unit_kind(unit: str) -> MeterKind | None:
    """Return the kind of a typed unit for a register that is no meter."""
    if unit in KINDS[MeterKind.ENERGY].units:
        return MeterKind.ENERGY
    if unit in KINDS[MeterKind.WATER].units:
        return MeterKind.WATER
    if unit in KINDS[MeterKind.GAS].units:
        return MeterKind.GAS
    return None


def _reading_in_unit(
    typed: float | str, unit: str | None, kind: MeterKind | None
) -> tuple[float, str, int]:
    """Return (value, unit, precision) of a typed reading in its billing unit.

    ``kind``: the meter's (None: a register that is no meter; the unit decides,
    energy without one). A unit not of the meter's kind is refused with a
    translated error naming the kind's units; so are implausible values. The
    precision typed (Wh or litres, ``reading_step``) is kept for the drop
    check: 1234.5 kWh is a reading to 0.1 kWh, whatever the sensor beside it
    gives.
    """
    if kind is None:
        kind = _unit_kind(unit) if unit else MeterKind.ENERGY
        if kind is None:
            raise validation_error("invalid_unit", unit=str(unit))
    spec = KINDS[kind]
    unit = unit or spec.billing_unit
    if unit not in spec.units:
        raise validation_error(
            _INVALID_UNIT[kind], unit=unit, units=", ".join(sorted(spec.units))
        )
    value = float(typed)
    reading = to_reading(value, unit, kind)
    if reading is None or reading > MAX_READING_KWH:
        raise validation_error(
            "value_too_large" if kind is MeterKind.ENERGY else "volume_too_large",
            value=f"{value:g}",
            unit=unit,
            max=f"{MAX_READING_KWH:.0f}",
        )
    return reading, spec.billing_unit, reading_step(unit, typed_decimals(typed), kind)


def _local_text(value: datetime) -> str:
    """Return a time for a message: local time, like the flows show it."""
    if value.tzinfo is not None:
        with suppress(OverflowError):  # year 1 in a zone east of UTC
            value = dt_util.as_local(value)
    return value.strftime("%Y-%m-%d %H:%M")


def _local_iso(value: datetime) -> str:
    """Return a time for an answer: ISO with the local zone's offset."""
    return dt_util.as_local(value).isoformat()


def _plausible_time(value: datetime) -> datetime:
    """Refuse times before EARLIEST_READING_YEAR (typos, and unwritable years)."""
    if value.year < EARLIEST_READING_YEAR:
        raise validation_error(
            "time_too_old",
            time=_local_text(value),
            year=str(EARLIEST_READING_YEAR),
        )
    return value


_TIME = vol.All(cv.datetime, _plausible_time)


def _meter(value: Any) -> str:
    """Return a meter: an entity id (normalized), or a device id as given."""
    text = cv.string(value).strip()
    return cv.entity_id(text) if "." in text else text


UPLOAD_NOW_SCHEMA: Final = vol.Schema({vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string})
# The unit is checked against the meter's kind once the meter is known; without
# one it is the meter's billing unit (kWh, m³).
SEND_READING_SCHEMA: Final = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Optional(ATTR_METER): _meter,
        vol.Optional(ATTR_DEVICE_REF): cv.string,
        vol.Optional(ATTR_REGISTER_REF): cv.string,
        vol.Required(ATTR_VALUE): _reading_value,
        vol.Optional(ATTR_UNIT): cv.string,
        vol.Optional(ATTR_TIME): _TIME,
    }
)
UPLOAD_HISTORY_SCHEMA: Final = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Required(ATTR_START): _TIME,
        vol.Optional(ATTR_END): _TIME,
        vol.Optional(ATTR_METERS): vol.All(cv.ensure_list, [cv.entity_id]),
    }
)


def _raise_for_send(result: SendResult, entry: ZevvyConfigEntry) -> None:
    """Turn a send that stopped at a zevvy error into a translated error."""
    if result.error is None:
        return
    if result.error is SendError.AUTHENTICATION:
        raise HomeAssistantError(
            translation_domain=DOMAIN, translation_key="authentication_failed"
        )
    placeholders = {"account": entry.title, "waiting": str(result.pending)}
    if result.error is SendError.REFUSED:
        # Every meter refused alike (a wrong API address, a missing scope).
        answer = entry.runtime_data.pipeline.sender.refused_text
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="upload_refused",
            translation_placeholders={**placeholders, "answer": answer or "-"},
        )
    raise HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key=(
            "upload_login_refused"
            if result.error is SendError.LOGIN_REFUSED
            else "upload_failed"
        ),
        translation_placeholders=placeholders,
    )


async def async_send_now(entry: ZevvyConfigEntry) -> SendResult:
    """Send an entry's outbox now; raise a translated error if zevvy fails."""
    result = await entry.runtime_data.pipeline.async_send_now()
    _raise_for_send(result, entry)
    return result


async def _async_upload_now(call: ServiceCall) -> ServiceResponse:
    """Handle ``zevvy.upload_now``."""
    entries = async_get_target_entries(call.hass, call.data.get(ATTR_CONFIG_ENTRY_ID))
    sent = pending = held = rejected = 0
    for entry in entries:
        result = await async_send_now(entry)
        sent += result.sent
        pending += result.pending
        held += result.held
        rejected += result.rejected
    if not call.return_response:
        return None
    # "waiting" and "parked" predate the code's vocabulary; they stay for
    # automations. "rejected" says the same as "parked" in plain words.
    return {
        "sent": sent,
        "waiting": pending,
        "held": held,
        "parked": rejected,
        "rejected": rejected,
    }


def _check_reference(value: str) -> str:
    """Return a trimmed reference, or raise for one the client's rule refuses."""
    reference = value.strip()
    if not is_valid_reference(reference):
        raise validation_error("invalid_reference", reference=value)
    return reference


def _find_meter(
    hass: HomeAssistant, entity_id: str, entry_id: str | None
) -> tuple[ZevvyConfigEntry, Destination]:
    """Return the entry and the destination of a meter (entity or device id)."""
    entity_entry = (
        er.async_get(hass).async_get(entity_id) if valid_entity_id(entity_id) else None
    )
    registry_id = entity_entry.id if entity_entry else None
    device = (
        None if valid_entity_id(entity_id) else dr.async_get(hass).async_get(entity_id)
    )
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
            if (
                data[CONF_ENTITY_REGISTRY_ID] == registry_id
                or (registry_id is None and data[CONF_ENTITY_ID] == entity_id)
                or (
                    device is not None
                    and meter_identifier(entry, subentry.subentry_id)
                    in device.identifiers
                )
            ):
                return (
                    # The meter's account must be loaded.
                    async_get_loaded_entry(hass, entry.entry_id),
                    Destination(
                        subentry.subentry_id,
                        data[CONF_DEVICE_REF],
                        data[CONF_REGISTER_REF],
                    ),
                )
    raise validation_error("unknown_meter", entity_id=entity_id)


def _destination_for_references(
    entry: ZevvyConfigEntry, device_ref: str, register_ref: str
) -> Destination:
    """Return the destination: a meter's queue if a meter has these references.

    A manual reading for a configured meter shares its queue, so the drop check
    and the last delivered reading apply to both.
    """
    for subentry in entry.subentries.values():
        if (
            subentry.subentry_type == SUBENTRY_TYPE_METER
            and subentry.data[CONF_DEVICE_REF] == device_ref
            and subentry.data[CONF_REGISTER_REF] == register_ref
        ):
            return Destination(subentry.subentry_id, device_ref, register_ref)
    return Destination.manual(device_ref, register_ref)


def _read_at(value: datetime | None) -> datetime:
    """Return the quarter hour of a reading: the given time's, or now's."""
    now = dt_util.utcnow()
    if value is None:
        return quarter_floor(now)
    value = aware(value)
    if value > now:
        raise validation_error("time_in_future", time=_local_text(value))
    return quarter_floor(value)


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
        raise validation_error("meter_or_references")

    read_at = _read_at(data.get(ATTR_TIME))

    if device_ref is not None and register_ref is not None:
        device_ref = _check_reference(device_ref)
        register_ref = _check_reference(register_ref)
        entry = async_get_single_entry(hass, entry_id)
        destination = _destination_for_references(entry, device_ref, register_ref)
    else:
        entry, destination = _find_meter(hass, str(meter), entry_id)
    subentry = entry.subentries.get(destination.key)
    value, unit, step = _reading_in_unit(
        data[ATTR_VALUE],
        data.get(ATTR_UNIT),
        stored_kind(subentry.data) if subentry is not None else None,
    )
    # Made here, with the precision typed (the drop check compares it).
    destination = replace(destination, step=step)

    pipeline = entry.runtime_data.pipeline
    # Sent right below, whatever a retry timer says.
    added = await pipeline.async_accept(
        [(destination, [Reading(read_at, value)])], send=False
    )
    # The reading is stored: a zevvy error now only delays it (the outbox keeps
    # it and the sender retries), so it is reported, not raised.
    result = await pipeline.async_send_now()
    if not call.return_response:
        return None
    status = "queued" if added.queued else ("held" if added.held else "duplicate")
    delivered = status == "queued" and not pipeline.outbox.is_waiting(
        destination.key, read_at
    )
    response: dict[str, Any] = {
        "device_ref": destination.device_ref,
        "register_ref": destination.register_ref,
        "read_at": _local_iso(read_at),
        "value": value,
        "unit": unit,
        "status": status,
        "delivered": delivered,
        "waiting": result.pending,
    }
    if unit == KINDS[MeterKind.ENERGY].billing_unit:
        # The name of the answer before water and gas meters; kept for automations.
        response["value_kwh"] = value
    return response


def _select_meters(
    hass: HomeAssistant, entry: ZevvyConfigEntry, entity_ids: list[str] | None
) -> list[Meter]:
    meters = resolve_meters(hass, entry)
    if entity_ids is None:
        return meters
    by_entity = {meter.entity_id: meter for meter in meters}
    selected: list[Meter] = []
    for entity_id in entity_ids:
        if entity_id not in by_entity:
            raise validation_error("history_unknown_meter", entity_id=entity_id)
        if by_entity[entity_id] not in selected:
            selected.append(by_entity[entity_id])
    return selected


async def async_upload_history(call: ServiceCall) -> ServiceResponse:
    """Handle ``zevvy.upload_history``: backfill a period from statistics."""
    hass = call.hass
    entry = async_get_single_entry(hass, call.data.get(ATTR_CONFIG_ENTRY_ID))
    if not recorder_loaded(hass):
        raise validation_error("history_no_recorder")
    now = dt_util.utcnow()
    start = dt_util.as_utc(aware(call.data[ATTR_START]))
    end = (
        min(dt_util.as_utc(aware(call.data[ATTR_END])), now)
        if ATTR_END in call.data
        else now
    )
    if start >= end:
        raise validation_error(
            "history_invalid_period", start=_local_text(start), end=_local_text(end)
        )
    meters = _select_meters(hass, entry, call.data.get(ATTR_METERS))
    # Running totals that start after the period (just added): nothing to
    # upload yet; the answer says when they start instead of "no statistics".
    later = {
        meter.entity_id: _local_iso(dt_util.utc_from_timestamp(meter.start_at))
        for meter in meters
        if meter.running_total
        and meter.start_at is not None
        and meter.start_at >= end.timestamp()
    }
    meters = [meter for meter in meters if meter.entity_id not in later]
    LOGGER.info(
        "Uploading history of %s meters from %s to %s",
        len(meters),
        start.isoformat(),
        end.isoformat(),
    )
    results: list[MeterResult] = []
    outbox = entry.runtime_data.outbox
    for number, meter in enumerate(meters, 1):
        results.append(
            await async_read_meter(hass, entry, meter, start, end, hourly=True)
        )
        LOGGER.debug(
            "History of %s (%s/%s): %s readings",
            meter.entity_id,
            number,
            len(meters),
            len(results[-1].readings),
        )
    # Per queue: the quarter hours this action adds that the outbox does not
    # keep yet (the bound may drop them again, within the action).
    added: dict[str, list[datetime]] = {
        result.meter.subentry_id: [
            reading.read_at
            for reading in result.readings
            if not outbox.contains(result.meter.subentry_id, reading.read_at)
        ]
        for result in results
    }
    with outbox.watch_bound() as bound:
        accepted = await entry.runtime_data.pipeline.async_accept(
            [result.item() for result in results], per_queue=True
        )
    for result in results:
        result.count(accepted.of(result.meter.subentry_id))
    # Queued or held, then dropped by the outbox bound: not counted as queued.
    dropped: dict[str, int] = {}
    for result in results:
        key = result.meter.subentry_id
        lost_pending, lost_held = bound.lost(key, added.get(key, ()))
        result.queued -= lost_pending
        result.held -= lost_held
        dropped[key] = lost_pending + lost_held
    log_result("Upload history", results)
    if any(dropped.values()):
        LOGGER.warning(
            "Upload history: the outbox is full; %s of the readings found were "
            "dropped again (the oldest first)",
            sum(dropped.values()),
        )
    if not call.return_response:
        return None
    response: dict[str, Any] = {
        "start": _local_iso(start),
        "end": _local_iso(end),
        "queued": sum(result.queued for result in results),
        "dropped": sum(dropped.values()),
        "meters": {
            result.meter.entity_id: {
                **result.as_dict(),
                "dropped": dropped[result.meter.subentry_id],
            }
            for result in results
            if result.found
        },
        "no_statistics": [r.meter.entity_id for r in results if not r.found],
        "starts_later": later,
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
        async_upload_history,
        schema=UPLOAD_HISTORY_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
