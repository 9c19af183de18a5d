"""Repair issues of the zevvy integration: every kind, their ids, create and delete.

Every issue belongs to one config entry (an account) and, for most kinds, to one
queue of its outbox: a meter (its subentry id) or a device/register without a
meter. One id scheme for all: ``<kind>_<entry id>`` or ``<kind>_<entry id>_<key>``.
The kind is also the translation key (``issues`` in strings.json) and, with the
entry id and the key, the issue's data, from which ``repairs.py`` builds the fix
flow.

* ``reading_held``: a reading lower than the one before it, held back.
* ``batch_rejected``: zevvy refused readings (400/422); they are kept aside.
* ``register_refused``: zevvy refused a register (403, 404, ...); its readings
  wait and are retried on a backoff while the other registers keep going.
* ``registers_refused`` (the account): zevvy refused every register with the
  same answer (a wrong API address, a missing scope); the readings wait.
* ``api_login_refused`` (the account): zevvy's API refused a freshly renewed
  login for an hour of attempts (401); the login is kept, the readings wait.
* ``outbox_overflow``: the outbox was full and dropped its oldest readings.
* ``meter_missing`` / ``meter_not_eligible``: a meter's entity is gone or has no
  meter reading any more; kept current by a watcher while the entry is loaded.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

from homeassistant.components.sensor import ATTR_STATE_CLASS
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    callback,
)
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.helpers.event import async_track_state_change_event

from .const import CONF_ENTITY_REGISTRY_ID, DOMAIN, LOGGER, SUBENTRY_TYPE_METER
from .helpers import async_on_entry_updated
from .meters import Meter, check_meters
from .outbox import OutboxReport, ReportKind


class IssueKind(StrEnum):
    """The kinds of repair issues (also their translation keys)."""

    READING_HELD = "reading_held"
    BATCH_REJECTED = "batch_rejected"
    REGISTER_REFUSED = "register_refused"
    REGISTERS_REFUSED = "registers_refused"
    API_LOGIN_REFUSED = "api_login_refused"
    OUTBOX_OVERFLOW = "outbox_overflow"
    METER_MISSING = "meter_missing"
    METER_NOT_ELIGIBLE = "meter_not_eligible"


METER_KINDS: Final = (IssueKind.METER_MISSING, IssueKind.METER_NOT_ELIGIBLE)
_SEVERITY: Final = {
    IssueKind.READING_HELD: ir.IssueSeverity.WARNING,
    IssueKind.BATCH_REJECTED: ir.IssueSeverity.ERROR,
    IssueKind.REGISTER_REFUSED: ir.IssueSeverity.ERROR,
    IssueKind.REGISTERS_REFUSED: ir.IssueSeverity.ERROR,
    IssueKind.API_LOGIN_REFUSED: ir.IssueSeverity.ERROR,
    IssueKind.OUTBOX_OVERFLOW: ir.IssueSeverity.ERROR,
    IssueKind.METER_MISSING: ir.IssueSeverity.WARNING,
    IssueKind.METER_NOT_ELIGIBLE: ir.IssueSeverity.WARNING,
}


def issue_id(kind: IssueKind, entry_id: str, key: str | None = None) -> str:
    """Return the id of an entry's issue (of one of its queues if ``key``)."""
    base = f"{kind.value}_{entry_id}"
    return base if key is None else f"{base}_{key}"


@callback
def async_create_issue(
    hass: HomeAssistant,
    kind: IssueKind,
    entry_id: str,
    key: str | None,
    placeholders: dict[str, str],
) -> None:
    """Raise (or update) an issue; every kind has a fix flow (repairs.py)."""
    data: dict[str, str | int | float | None] = {"entry_id": entry_id, "kind": kind}
    if key is not None:
        data["key"] = key
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(kind, entry_id, key),
        is_fixable=True,
        is_persistent=False,
        severity=_SEVERITY[kind],
        translation_key=kind.value,
        translation_placeholders=placeholders,
        data=data,
    )


@callback
def async_delete_issue(
    hass: HomeAssistant, kind: IssueKind, entry_id: str, key: str | None = None
) -> None:
    """Delete an issue if it exists."""
    ir.async_delete_issue(hass, DOMAIN, issue_id(kind, entry_id, key))


# What a report of the outbox is about, as an issue.
_REPORTED: Final = {
    ReportKind.HELD: IssueKind.READING_HELD,
    ReportKind.REJECTED: IssueKind.BATCH_REJECTED,
    ReportKind.OVERFLOW: IssueKind.OUTBOX_OVERFLOW,
}
# A queue removed with its meter: its issues go with it.
_QUEUE_KINDS: Final = (
    IssueKind.READING_HELD,
    IssueKind.BATCH_REJECTED,
    IssueKind.REGISTER_REFUSED,
)


@callback
def async_apply_outbox_report(
    hass: HomeAssistant, entry_id: str, report: OutboxReport
) -> None:
    """Raise, update or delete the issue an outbox report is about."""
    if report.kind is ReportKind.REMOVED:
        for kind in _QUEUE_KINDS:
            async_delete_issue(hass, kind, entry_id, report.key)
    elif report.placeholders is None:
        async_delete_issue(hass, _REPORTED[report.kind], entry_id, report.key)
    else:
        async_create_issue(
            hass, _REPORTED[report.kind], entry_id, report.key, report.placeholders
        )


def _belongs_to(issue_id_: str, entry_id: str, kinds: tuple[IssueKind, ...]) -> bool:
    for kind in kinds:
        base = issue_id(kind, entry_id)
        if issue_id_ == base or issue_id_.startswith(f"{base}_"):
            return True
    return False


@callback
def entry_issues(
    hass: HomeAssistant, entry_id: str, kinds: tuple[IssueKind, ...] = tuple(IssueKind)
) -> dict[str, ir.IssueEntry]:
    """Return the open issues of an entry by id (only ``kinds``)."""
    return {
        issue_id_: issue
        for (domain, issue_id_), issue in ir.async_get(hass).issues.items()
        if domain == DOMAIN and issue.active and _belongs_to(issue_id_, entry_id, kinds)
    }


@callback
def async_delete_entry_issues(hass: HomeAssistant, entry_id: str) -> None:
    """Delete every issue of an entry (it is being removed)."""
    for domain, issue_id_ in list(ir.async_get(hass).issues):
        if domain == DOMAIN and _belongs_to(issue_id_, entry_id, tuple(IssueKind)):
            ir.async_delete_issue(hass, DOMAIN, issue_id_)


# --- meters --------------------------------------------------------------------


@callback
def async_update_meter_issues(
    hass: HomeAssistant, entry: ConfigEntry[Any]
) -> list[Meter]:
    """Raise or clear the issues of an entry's meters; return the usable meters.

    A meter whose entity left the entity registry gets ``meter_missing``, one
    that no longer has a unit of the meter's kind (energy, water, gas) and a
    meter state class ``meter_not_eligible``; the issue goes as soon as the meter is usable again
    or deleted.
    """
    meters: list[Meter] = []
    wanted: set[str] = set()
    for check in check_meters(hass, entry):
        if check.meter is not None:
            meters.append(check.meter)
            continue
        kind = (
            IssueKind.METER_MISSING
            if check.entity_missing
            else IssueKind.METER_NOT_ELIGIBLE
        )
        wanted.add(issue_id(kind, entry.entry_id, check.subentry_id))
        async_create_issue(
            hass,
            kind,
            entry.entry_id,
            check.subentry_id,
            {"meter": check.title, "entity_id": check.entity_id},
        )
    # Issues of meters that are usable again, changed kind or were deleted.
    for issue_id_ in entry_issues(hass, entry.entry_id, METER_KINDS):
        if issue_id_ not in wanted:
            ir.async_delete_issue(hass, DOMAIN, issue_id_)
    return meters


@callback
def async_delete_meter_issues(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
    """Delete the repair issues of an entry's meters (on unload)."""
    for issue_id_ in entry_issues(hass, entry.entry_id, METER_KINDS):
        ir.async_delete_issue(hass, DOMAIN, issue_id_)


class _MeterWatcher:
    """Re-check an entry's meters when something that affects them changes.

    Entity registry updates (removed, renamed, re-added entities), changes of the
    entry's subentries, and state changes that alter a meter's unit or state class.
    """

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
        self._hass = hass
        self._entry = entry
        self._tracked: frozenset[str] = frozenset()
        self._unsub_state: CALLBACK_TYPE | None = None

    @callback
    def async_check(self) -> None:
        """Raise or clear the meters' issues and track their states."""
        registry = er.async_get(self._hass)
        tracked = frozenset(
            entity_entry.entity_id
            for subentry in self._entry.subentries.values()
            if subentry.subentry_type == SUBENTRY_TYPE_METER
            and (
                entity_entry := registry.entities.get_entry(
                    subentry.data[CONF_ENTITY_REGISTRY_ID]
                )
            )
        )
        async_update_meter_issues(self._hass, self._entry)
        if tracked == self._tracked:
            return
        self._async_untrack()
        self._tracked = tracked
        if tracked:
            self._unsub_state = async_track_state_change_event(
                self._hass, tracked, self._async_state_changed
            )

    @callback
    def _async_untrack(self) -> None:
        if self._unsub_state is not None:
            self._unsub_state()
            self._unsub_state = None

    @callback
    def _async_state_changed(self, event: Event[EventStateChangedData]) -> None:
        old, new = event.data["old_state"], event.data["new_state"]
        if old is not None and new is not None:
            for attribute in (ATTR_UNIT_OF_MEASUREMENT, ATTR_STATE_CLASS):
                if old.attributes.get(attribute) != new.attributes.get(attribute):
                    break
            else:
                return
        self.async_check()

    @callback
    def _async_registry_updated(
        self, event: Event[er.EventEntityRegistryUpdatedData]
    ) -> None:
        LOGGER.debug("Entity registry changed (%s): checking meters", event.data)
        self.async_check()

    @callback
    def async_start(self) -> None:
        """Check now and subscribe."""
        entry = self._entry
        entry.async_on_unload(
            self._hass.bus.async_listen(
                er.EVENT_ENTITY_REGISTRY_UPDATED, self._async_registry_updated
            )
        )
        async_on_entry_updated(self._hass, entry, self.async_check)
        entry.async_on_unload(self._async_stop)
        self.async_check()

    @callback
    def _async_stop(self) -> None:
        self._async_untrack()
        async_delete_meter_issues(self._hass, self._entry)


@callback
def async_setup_meter_issues(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
    """Check the entry's meters now and keep their repair issues current.

    Call from async_setup_entry; everything is undone when the entry unloads.
    """
    _MeterWatcher(hass, entry).async_start()
