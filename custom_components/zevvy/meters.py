"""Meters: which Home Assistant entities zevvy reads, under which names.

A meter is one energy sensor mapped to a zevvy device reference and register
reference. Meters are config subentries of the account's config entry, keyed by the
entity registry id so that renaming the entity id keeps them working.

This module owns:
- eligibility: a sensor with an energy unit and state class ``total_increasing`` or
  ``total``; a ``total`` sensor with a ``last_reset`` attribute restarts from zero
  (per day, per charging session) and is not a meter reading: it is offered, with a
  warning, but never preselected;
- the default references shown to the user before a meter is saved;
- the conversion of a state to a reading in kWh;
- ``resolve_meters``, which the delivery code calls at every tick, and the repair
  issues raised for meters whose entity vanished or stopped being eligible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
import math
from typing import Any, Final

from homeassistant.components.sensor import (
    ATTR_LAST_RESET,
    ATTR_STATE_CLASS,
    DOMAIN as SENSOR_DOMAIN,
    SensorStateClass,
)
from homeassistant.config_entries import ConfigEntry, ConfigSubentryData
from homeassistant.const import (
    ATTR_FRIENDLY_NAME,
    ATTR_UNIT_OF_MEASUREMENT,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
    UnitOfEnergy,
)
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.helpers.translation import async_get_translations
from homeassistant.util.unit_conversion import EnergyConverter

from .api import is_valid_reference
from .const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_REGISTER_REF,
    DOMAIN,
    LOGGER,
    READING_DECIMALS,
    SUBENTRY_TYPE_METER,
)
from .helpers import async_on_entry_updated

# Units Home Assistant can convert to kWh (Wh, kWh, MWh, GJ, ... in the running HA).
ENERGY_UNITS: Final[frozenset[str]] = frozenset(
    str(unit) for unit in EnergyConverter.VALID_UNITS if unit is not None
)
METER_STATE_CLASSES: Final = frozenset(
    {SensorStateClass.TOTAL, SensorStateClass.TOTAL_INCREASING}
)
# Register reference when nothing better is known (and the name of the energy
# device class when Home Assistant's translation is missing).
FALLBACK_REGISTER_REF: Final = "Energy"
# Separates the two references in a meter's title.
TITLE_SEPARATOR: Final = " \u2013 "  # en dash

ISSUE_METER_MISSING: Final = "meter_missing"
ISSUE_METER_NOT_ELIGIBLE: Final = "meter_not_eligible"
_ISSUE_KEYS: Final = (ISSUE_METER_MISSING, ISSUE_METER_NOT_ELIGIBLE)

# Energy dashboard preference keys that name electricity meters.
_ENERGY_SOURCE_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "solar": ("stat_energy_from",),
    "battery": ("stat_energy_from", "stat_energy_to"),
}


class Eligibility(StrEnum):
    """Whether an entity can be a meter."""

    ELIGIBLE = "eligible"
    # state class total with a last_reset: restarts from zero, offered with a warning
    RESETTING = "resetting"
    NOT_ELIGIBLE = "not_eligible"


@dataclass(frozen=True, slots=True)
class Meter:
    """A usable meter: an entity to read and where its readings go."""

    subentry_id: str
    entity_registry_id: str
    entity_id: str  # current entity id, resolved from the registry
    device_ref: str
    register_ref: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """An entity that may become a meter."""

    entity_registry_id: str
    entity_id: str
    name: str
    eligibility: Eligibility


def sanitize_reference(value: str) -> str:
    """Return a reference as zevvy gets it: no slashes, no outer spaces.

    An empty result means the reference is not usable (blank, or refused by the
    client's rule, e.g. "." or "..").
    """
    reference = value.replace("/", "_").strip()
    return reference if is_valid_reference(reference) else ""


def meter_title(device_ref: str, register_ref: str) -> str:
    """Return the title of a meter subentry."""
    return f"{device_ref}{TITLE_SEPARATOR}{register_ref}"


def meter_subentry_data(
    entity_entry: er.RegistryEntry, device_ref: str, register_ref: str
) -> ConfigSubentryData:
    """Return the subentry that maps an entity to a zevvy register."""
    return ConfigSubentryData(
        data={
            CONF_ENTITY_REGISTRY_ID: entity_entry.id,
            CONF_ENTITY_ID: entity_entry.entity_id,
            CONF_DEVICE_REF: device_ref,
            CONF_REGISTER_REF: register_ref,
        },
        subentry_type=SUBENTRY_TYPE_METER,
        title=meter_title(device_ref, register_ref),
        unique_id=entity_entry.id,
    )


def _registry_unit(entity_entry: er.RegistryEntry) -> str | None:
    """Return the unit of an entity that has no state (yet)."""
    sensor_options: Mapping[str, Any] = entity_entry.options.get(SENSOR_DOMAIN, {})
    if unit := sensor_options.get(ATTR_UNIT_OF_MEASUREMENT):
        return str(unit)
    return entity_entry.unit_of_measurement


@callback
def entity_eligibility(
    hass: HomeAssistant, entity_entry: er.RegistryEntry
) -> Eligibility:
    """Return whether an entity can be a meter.

    The state's attributes decide when there is a state; the entity registry
    (capabilities and unit) when the entity has not been added yet.
    """
    if entity_entry.domain != SENSOR_DOMAIN:
        return Eligibility.NOT_ELIGIBLE
    last_reset: Any = None
    if (state := hass.states.get(entity_entry.entity_id)) is not None:
        unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
        state_class = state.attributes.get(ATTR_STATE_CLASS)
        last_reset = state.attributes.get(ATTR_LAST_RESET)
    else:
        unit = _registry_unit(entity_entry)
        state_class = (entity_entry.capabilities or {}).get(ATTR_STATE_CLASS)
    if unit not in ENERGY_UNITS or state_class not in METER_STATE_CLASSES:
        return Eligibility.NOT_ELIGIBLE
    if state_class == SensorStateClass.TOTAL and last_reset is not None:
        return Eligibility.RESETTING
    return Eligibility.ELIGIBLE


def friendly_name(hass: HomeAssistant, entity_entry: er.RegistryEntry) -> str:
    """Return the name Home Assistant shows for an entity."""
    state = hass.states.get(entity_entry.entity_id)
    if state is not None and (name := state.attributes.get(ATTR_FRIENDLY_NAME)):
        return str(name)
    return entity_entry.name or entity_entry.original_name or entity_entry.entity_id


@callback
def async_candidates(hass: HomeAssistant) -> list[Candidate]:
    """Return the entities that may become meters, sorted by name.

    Only entities with an entity registry entry (a unique id) qualify: a meter is
    keyed by the registry id. Disabled entities are left out.
    """
    registry = er.async_get(hass)
    candidates = [
        Candidate(
            entity_registry_id=entity_entry.id,
            entity_id=entity_entry.entity_id,
            name=friendly_name(hass, entity_entry),
            eligibility=eligibility,
        )
        for entity_entry in registry.entities.values()
        if entity_entry.domain == SENSOR_DOMAIN
        and entity_entry.disabled_by is None
        and (eligibility := entity_eligibility(hass, entity_entry))
        is not Eligibility.NOT_ELIGIBLE
    ]
    candidates.sort(
        key=lambda candidate: (candidate.name.casefold(), candidate.entity_id)
    )
    return candidates


def _dashboard_stat_ids(preferences: Mapping[str, Any]) -> set[str]:
    """Return the statistic ids of the Energy dashboard's electricity meters.

    Grid import and export, solar production, battery in and out, and individual
    devices; gas and water are not electricity meters.
    The preferences are the energy integration's stored data, whose shape changes
    between Home Assistant versions: read them leniently (a missing key only means
    fewer preselected meters, never a broken config flow).
    """
    found: list[object] = []
    for source in preferences.get("energy_sources") or []:
        source_type = source.get("type")
        if source_type == "grid":
            found.extend(
                flow.get("stat_energy_from") for flow in source.get("flow_from") or []
            )
            found.extend(
                flow.get("stat_energy_to") for flow in source.get("flow_to") or []
            )
        found.extend(
            source.get(key) for key in _ENERGY_SOURCE_KEYS.get(source_type, ())
        )
    found.extend(
        device.get("stat_consumption")
        for device in preferences.get("device_consumption") or []
    )
    return {stat_id for stat_id in found if isinstance(stat_id, str) and stat_id}


async def async_energy_dashboard_entity_ids(hass: HomeAssistant) -> set[str]:
    """Return the entity ids the Energy dashboard uses for electricity.

    Statistic ids of entities are their entity ids; external statistics (with a
    colon) never match an entity.
    """
    # Imported here: the energy integration is optional, its stored preferences
    # are read through its own manager (which also holds unsaved changes).
    from homeassistant.components.energy.data import (
        async_get_manager,
    )

    manager = await async_get_manager(hass)
    if manager.data is None:
        return set()
    return _dashboard_stat_ids(manager.data)


async def async_suggested_entity_ids(
    hass: HomeAssistant, candidates: Iterable[Candidate]
) -> list[str]:
    """Return the candidates to preselect: eligible ones on the Energy dashboard."""
    dashboard = await async_energy_dashboard_entity_ids(hass)
    return [
        candidate.entity_id
        for candidate in candidates
        if candidate.eligibility is Eligibility.ELIGIBLE
        and candidate.entity_id in dashboard
    ]


async def _async_energy_name(hass: HomeAssistant) -> str:
    """Return the name of the energy device class in Home Assistant's language."""
    translations = await async_get_translations(
        hass, hass.config.language, "entity_component", [SENSOR_DOMAIN]
    )
    key = f"component.{SENSOR_DOMAIN}.entity_component.energy.name"
    return sanitize_reference(translations.get(key, "")) or FALLBACK_REGISTER_REF


def _strip_prefix(name: str, prefix: str) -> str:
    """Return ``name`` without a leading ``prefix`` (the device name)."""
    if name.casefold().startswith(prefix.casefold()):
        return name[len(prefix) :].lstrip(" -_:\u00b7\u2013")
    return name


async def async_default_references(
    hass: HomeAssistant, entity_entry: er.RegistryEntry
) -> tuple[str, str]:
    """Return the suggested (device_ref, register_ref) of an entity.

    Device: the device's name (the user's name first). Register: the entity's own
    name without the device name; an entity that is its device's main feature has
    no own name and gets the energy device class name ("Energy"). An entity without
    a (named) device: its friendly name and "Energy".
    """
    energy_name = await _async_energy_name(hass)
    device = (
        dr.async_get(hass).async_get(entity_entry.device_id)
        if entity_entry.device_id
        else None
    )
    device_name = (
        sanitize_reference(device.name_by_user or device.name or "") if device else ""
    )
    if not device_name:
        friendly = sanitize_reference(friendly_name(hass, entity_entry))
        return friendly, energy_name

    if entity_entry.name:
        # Set by the user: replaces the whole friendly name, often with the device.
        own = _strip_prefix(entity_entry.name, device_name)
    elif entity_entry.has_entity_name:
        own = entity_entry.original_name or ""
    else:
        own = _strip_prefix(entity_entry.original_name or "", device_name)
    return device_name, sanitize_reference(own) or energy_name


def state_to_kwh(state: State | None) -> float | None:
    """Return a state's meter reading in kWh, or None if it has none.

    Unknown, unavailable, non-numeric, infinite, NaN and negative values and states
    without an energy unit give None: a reading is never invented.
    """
    if state is None or state.state in (STATE_UNKNOWN, STATE_UNAVAILABLE):
        return None
    unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
    if unit not in ENERGY_UNITS:
        return None
    try:
        value = float(state.state)
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    kwh = EnergyConverter.convert(value, unit, UnitOfEnergy.KILO_WATT_HOUR)
    # "+ 0.0" turns -0.0 into 0.0
    return round(kwh, READING_DECIMALS) + 0.0


def _issue_id(key: str, subentry_id: str) -> str:
    return f"{key}_{subentry_id}"


@callback
def _async_set_issue(
    hass: HomeAssistant, key: str | None, subentry_id: str, placeholders: dict[str, str]
) -> None:
    """Raise the meter's issue ``key`` (None: none) and clear the other ones."""
    for issue_key in _ISSUE_KEYS:
        issue_id = _issue_id(issue_key, subentry_id)
        if issue_key == key:
            ir.async_create_issue(
                hass,
                DOMAIN,
                issue_id,
                # The fix flow offers to delete the meter (repairs.py).
                is_fixable=True,
                severity=ir.IssueSeverity.WARNING,
                translation_key=issue_key,
                translation_placeholders=placeholders,
                data={"kind": issue_key, "subentry_id": subentry_id},
            )
        else:
            ir.async_delete_issue(hass, DOMAIN, issue_id)


@callback
def _async_delete_orphaned_issues(hass: HomeAssistant) -> None:
    """Delete meter issues whose subentry no longer exists."""
    subentry_ids = {
        subentry_id
        for entry in hass.config_entries.async_entries(DOMAIN)
        for subentry_id in entry.subentries
    }
    for domain, issue_id in list(ir.async_get(hass).issues):
        if domain != DOMAIN:
            continue
        for key in _ISSUE_KEYS:
            prefix = f"{key}_"
            if issue_id.startswith(prefix) and (
                issue_id.removeprefix(prefix) not in subentry_ids
            ):
                ir.async_delete_issue(hass, DOMAIN, issue_id)


@callback
def resolve_meters(hass: HomeAssistant, entry: ConfigEntry[Any]) -> list[Meter]:
    """Return the entry's usable meters, with their current entity ids.

    A meter whose entity left the entity registry, or no longer has an energy unit
    and a meter state class, is skipped and gets a repair issue; the issue goes as
    soon as the meter is usable again (or deleted). Called at every tick.
    """
    registry = er.async_get(hass)
    meters: list[Meter] = []
    for subentry in entry.subentries.values():
        if subentry.subentry_type != SUBENTRY_TYPE_METER:
            continue
        data = subentry.data
        entity_entry = registry.entities.get_entry(data[CONF_ENTITY_REGISTRY_ID])
        entity_id = entity_entry.entity_id if entity_entry else data[CONF_ENTITY_ID]
        placeholders = {"meter": subentry.title, "entity_id": entity_id}
        if entity_entry is None:
            _async_set_issue(
                hass, ISSUE_METER_MISSING, subentry.subentry_id, placeholders
            )
            continue
        if entity_eligibility(hass, entity_entry) is Eligibility.NOT_ELIGIBLE:
            _async_set_issue(
                hass, ISSUE_METER_NOT_ELIGIBLE, subentry.subentry_id, placeholders
            )
            continue
        _async_set_issue(hass, None, subentry.subentry_id, placeholders)
        meters.append(
            Meter(
                subentry_id=subentry.subentry_id,
                entity_registry_id=entity_entry.id,
                entity_id=entity_entry.entity_id,
                device_ref=data[CONF_DEVICE_REF],
                register_ref=data[CONF_REGISTER_REF],
            )
        )
    _async_delete_orphaned_issues(hass)
    return meters


@callback
def async_delete_meter_issues(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
    """Delete the repair issues of an entry's meters (on unload)."""
    for subentry_id in entry.subentries:
        _async_set_issue(hass, None, subentry_id, {})


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
        """Resolve the meters (raising or clearing issues) and track their states."""
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
        resolve_meters(self._hass, self._entry)
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
def async_setup_meters(hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
    """Check the entry's meters now and keep their repair issues current.

    Call from async_setup_entry; everything is undone when the entry unloads.
    """
    _MeterWatcher(hass, entry).async_start()
