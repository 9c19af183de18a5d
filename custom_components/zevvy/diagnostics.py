"""Diagnostics download of a zevvy account: settings, meters, outbox, errors.

Each meter shows its reading source; a running total also its start and what
it counted (``running``): the reading zevvy gets is the start value plus what
the sensor counted since the start, which explains a reading far from what
the sensor shows. Secrets (client secret, tokens) and what identifies the
person (client id, account id, user name, e-mail, the entry's title) are
redacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util

from .const import (
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_DEVICE_REF,
    CONF_ENTITY_REGISTRY_ID,
    CONF_READING_SOURCE,
    CONF_REFRESH_TOKEN,
    CONF_REGISTER_REF,
    CONF_START_AT,
    CONF_START_SEED,
    CONF_START_VALUE,
    OUTBOX_MAX_READINGS,
    SOURCE_RUNNING_TOTAL,
    SOURCE_SENSOR,
    SUBENTRY_TYPE_METER,
)
from .issues import entry_issues
from .meters import KINDS, entity_eligibility, round_kwh, stored_kind
from .running_total import RunningState
from .runtime import ZevvyConfigEntry

TO_REDACT = {
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_REFRESH_TOKEN,
    "access_token",
    "email",
    "sub",
    "title",
    "unique_id",
    "username",
}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _epoch_iso(epoch: float | None) -> str | None:
    return None if epoch is None else dt_util.utc_from_timestamp(epoch).isoformat()


def _running(
    entry: ZevvyConfigEntry, key: str, start_value: float
) -> dict[str, Any] | None:
    """Return what a running total counted (kWh), None before its first state."""
    stored = entry.runtime_data.outbox.meter_states.all().get(key)
    if stored is None:
        return None
    running = RunningState.from_json(stored)
    since_start = (
        None
        if running.start_counted is None
        else round_kwh(running.counted - running.start_counted)
    )
    return {
        "sensor_value": running.value,
        "last_reset": running.last_reset,
        "last_state_at": _epoch_iso(running.seen),
        "counted": round_kwh(running.counted),
        "counted_at_start": running.start_counted,
        "counted_since_start": since_start,
        # What zevvy would receive for the last state: start value + counted.
        "reading": None
        if since_start is None
        else round_kwh(start_value + since_start),
    }


def _source(
    entry: ZevvyConfigEntry, key: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    """Return a meter's reading source (a running total: its start and count)."""
    source = data.get(CONF_READING_SOURCE, SOURCE_SENSOR)
    if source != SOURCE_RUNNING_TOTAL:
        return {"reading_source": source}
    start_value = float(data.get(CONF_START_VALUE) or 0.0)
    return {
        "reading_source": source,
        "start_value": start_value,
        "start_at": _epoch_iso(data.get(CONF_START_AT)),
        "start_seed": data.get(CONF_START_SEED),
        "running": _running(entry, key, start_value),
    }


def _meters(hass: HomeAssistant, entry: ZevvyConfigEntry) -> dict[str, Any]:
    """Return each meter's settings and the current state of its entity."""
    registry = er.async_get(hass)
    meters: dict[str, Any] = {}
    for subentry_id, subentry in entry.subentries.items():
        if subentry.subentry_type != SUBENTRY_TYPE_METER:
            continue
        entity_entry = registry.async_get(subentry.data[CONF_ENTITY_REGISTRY_ID])
        kind = stored_kind(subentry.data)
        state = hass.states.get(entity_entry.entity_id) if entity_entry else None
        meters[subentry_id] = {
            "device_ref": subentry.data[CONF_DEVICE_REF],
            "register_ref": subentry.data[CONF_REGISTER_REF],
            "entity_id": entity_entry.entity_id if entity_entry else None,
            "eligibility": entity_eligibility(hass, entity_entry)
            if entity_entry
            else "missing",
            "state": state.state if state else None,
            "unit": state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) if state else None,
            # The meter's kind and the unit zevvy receives its readings in.
            "kind": str(kind),
            "reading_unit": KINDS[kind].billing_unit,
            **_source(entry, subentry_id, subentry.data),
        }
    return meters


def _outbox(entry: ZevvyConfigEntry) -> dict[str, Any]:
    """Return counts and, per queue, its delivery state."""
    outbox = entry.runtime_data.outbox
    views = outbox.views()
    # "parked" is the rejected readings' name in diagnostics (and in storage).
    queues = {
        key: {
            "device_ref": view.device_ref,
            "register_ref": view.register_ref,
            "pending": view.pending,
            "oldest_pending": _iso(view.oldest_pending),
            "held": view.held,
            "parked": view.rejected,
            "parked_message": view.rejected_message,
            "last_delivered_at": _iso(view.last_delivered_at),
            "last_delivered_value": view.last_delivered_value,
        }
        for key, view in sorted(views.items())
    }
    return {
        "pending": outbox.pending_count,
        "held": outbox.held_count,
        "parked": outbox.rejected_count,
        "limit": OUTBOX_MAX_READINGS,
        "queues": queues,
    }


def _issues(hass: HomeAssistant, entry: ZevvyConfigEntry) -> list[dict[str, Any]]:
    """Return the open repair issues of this entry (by kind, without ids)."""
    issues = [
        {
            "translation_key": issue.translation_key,
            "severity": issue.severity,
            "placeholders": issue.translation_placeholders,
        }
        for issue in entry_issues(hass, entry.entry_id).values()
    ]
    return sorted(issues, key=lambda item: str(item["translation_key"]))


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: ZevvyConfigEntry
) -> dict[str, Any]:
    """Return diagnostics for a config entry."""
    runtime = entry.runtime_data
    coordinator = runtime.coordinator
    status = coordinator.data
    detail = runtime.pipeline.last_error_detail
    account = runtime.tokens.account
    return async_redact_data(
        {
            "entry": {
                "title": entry.title,
                "unique_id": entry.unique_id,
                "data": dict(entry.data),
            },
            "account": {
                "sub": account.sub if account else None,
                "username": account.username if account else None,
                "email": account.email if account else None,
            },
            "status": {
                "connected": status.connected,
                "last_success": _iso(status.last_success),
                "last_collect": _iso(status.last_collect),
                "last_error": status.last_error,
                "last_error_detail": {"at": _iso(detail[0]), "error": detail[1]}
                if detail
                else None,
                "next_retry": _iso(status.next_retry),
            },
            "meters": _meters(hass, entry),
            "outbox": _outbox(entry),
            "issues": _issues(hass, entry),
        },
        TO_REDACT,
    )
