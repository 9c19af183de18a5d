"""Meters: which Home Assistant entities zevvy reads, under which names.

A meter is one sensor mapped to a zevvy device reference and register
reference. Meters are config subentries of the account's config entry, keyed by the
entity registry id so that renaming the entity id keeps them working.

Meters are of a kind (``MeterKind``, stored in the subentry; a subentry without
one is an energy meter): energy (electricity and heat: any energy unit, billed
in kWh), water (device class ``water`` in a volume unit, billed in m³) and gas
(device class ``gas`` in a volume unit, billed in m³; a gas sensor in an energy
unit is an energy meter). Each kind has its Home Assistant unit converter, its
billing unit and its rounding (``KindSpec``, one place per kind).

This module owns:
- eligibility: a sensor of a kind's units and state class ``total_increasing`` or
  ``total``; a ``total`` sensor with a ``last_reset`` attribute restarts from zero
  (per day, per charging session): it is offered but never preselected;
- the default references shown to the user before a meter is saved;
- the conversion of a state (or any value) to a reading in the kind's billing
  unit (``to_reading``; ``to_kwh`` for energy), and the precision of such a
  reading (``reading_step``, in thousandths of the billing unit: Wh or litres;
  of the sensor's unit and suggested display precision, or of the digits a
  person typed), recorded with the reading for the outbox's drop check;
- ``check_meters`` and ``resolve_meters``: which meters are usable now (pure
  lookups; ``issues.py`` raises the repair issues of the others);
  ``MeterResolver`` keeps their answer for the quarter-hour ticks and checks
  again only when something they depend on changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
import math
from typing import Any, Final

from homeassistant.components.sensor import (
    ATTR_LAST_RESET,
    ATTR_STATE_CLASS,
    DOMAIN as SENSOR_DOMAIN,
    SensorDeviceClass,
    SensorStateClass,
)
from homeassistant.components.sensor.const import DEVICE_CLASS_UNITS
from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigSubentryData,
)
from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    ATTR_FRIENDLY_NAME,
    ATTR_UNIT_OF_MEASUREMENT,
    EVENT_STATE_CHANGED,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
    UnitOfEnergy,
    UnitOfVolume,
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
)
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.translation import async_get_translations
from homeassistant.util.unit_conversion import (
    BaseUnitConverter,
    EnergyConverter,
    VolumeConverter,
)

from .api import is_valid_reference
from .const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_KIND,
    CONF_READING_SOURCE,
    CONF_REGISTER_REF,
    CONF_START_AT,
    CONF_START_SEED,
    CONF_START_VALUE,
    READING_DECIMALS,
    SOURCE_RUNNING_TOTAL,
    SOURCE_SENSOR,
    SUBENTRY_TYPE_METER,
)

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


class MeterKind(StrEnum):
    """What a meter measures (stored in its subentry as ``kind``)."""

    ENERGY = "energy"  # electricity and heat
    WATER = "water"
    GAS = "gas"


@dataclass(frozen=True, slots=True)
class KindSpec:
    """How readings of a kind are converted and billed.

    ``units``: the sensor units of the kind (those Home Assistant's converter
    and the kind's device class accept, in the running Home Assistant);
    ``device_class``: the sensor device class the kind needs (None: any);
    ``decimals``: the billing unit's resolution (kWh: Wh; m³: litres).
    """

    converter: type[BaseUnitConverter]
    billing_unit: str
    units: frozenset[str]
    device_class: SensorDeviceClass | None
    decimals: int
    register_ref: str  # English register name when the translation is missing

    def round(self, value: float) -> float:
        """Return a value in the billing unit at zevvy's resolution, never -0.0."""
        # "+ 0.0" turns -0.0 into 0.0
        return round(value, self.decimals) + 0.0


def _volume_units(device_class: SensorDeviceClass) -> frozenset[str]:
    """Return the volume units Home Assistant allows for a device class."""
    return frozenset(
        str(unit)
        for unit in DEVICE_CLASS_UNITS.get(device_class, set())
        if unit in VolumeConverter.VALID_UNITS
    )


KINDS: Final[Mapping[MeterKind, KindSpec]] = {
    MeterKind.ENERGY: KindSpec(
        EnergyConverter,
        str(UnitOfEnergy.KILO_WATT_HOUR),
        ENERGY_UNITS,
        None,
        READING_DECIMALS,
        FALLBACK_REGISTER_REF,
    ),
    MeterKind.WATER: KindSpec(
        VolumeConverter,
        str(UnitOfVolume.CUBIC_METERS),
        _volume_units(SensorDeviceClass.WATER),
        SensorDeviceClass.WATER,
        READING_DECIMALS,
        "Water",
    ),
    MeterKind.GAS: KindSpec(
        VolumeConverter,
        str(UnitOfVolume.CUBIC_METERS),
        _volume_units(SensorDeviceClass.GAS),
        SensorDeviceClass.GAS,
        READING_DECIMALS,
        "Gas",
    ),
}


def stored_kind(data: Mapping[str, Any]) -> MeterKind:
    """Return the kind stored in a meter's subentry data (none stored: energy)."""
    try:
        return MeterKind(data.get(CONF_KIND) or MeterKind.ENERGY)
    except ValueError:
        return MeterKind.ENERGY


def unit_kind(unit: object, device_class: object) -> MeterKind | None:
    """Return the kind of a sensor's unit and device class, None if none fits.

    An energy unit is an energy meter whatever the device class (a gas sensor
    in kWh, a heat meter); a volume unit needs the water or gas device class.
    """
    if not isinstance(unit, str):
        return None
    for kind, spec in KINDS.items():
        if unit in spec.units and spec.device_class in (None, device_class):
            return kind
    return None


# Separates the two references in a meter's title.
TITLE_SEPARATOR: Final = " \u2013 "  # en dash

# Energy dashboard preference keys that name meters.
_ENERGY_SOURCE_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    # 2026.x keeps the grid's import and export on the source itself; 2025.4 in
    # its flow_from and flow_to lists (read in _dashboard_stat_ids).
    "grid": ("stat_energy_from", "stat_energy_to"),
    "solar": ("stat_energy_from",),
    "wind": ("stat_energy_from",),  # 2026.x
    "battery": ("stat_energy_from", "stat_energy_to"),
    # Gas (in m³ or an energy unit) and water, in both shapes.
    "gas": ("stat_energy_from",),
    "water": ("stat_energy_from",),
}


class Eligibility(StrEnum):
    """Whether an entity can be a meter."""

    ELIGIBLE = "eligible"
    # state class total with a last_reset: restarts from zero (a running total)
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
    reading_source: str = SOURCE_SENSOR
    start_value: float = 0.0  # running total: the reading at ``start_at``
    start_at: int | None = None  # running total: its start (epoch, a quarter hour)
    start_seed: float | None = None  # the sensor's value at start_at, if known
    # The precision of its readings (Wh or litres, ``reading_step``; 0: unknown).
    # Not part of what the meter is: its unit may change, the meter stays the same.
    step: int = field(default=0, compare=False)
    kind: MeterKind = MeterKind.ENERGY

    @property
    def running_total(self) -> bool:
        """Return whether the reading is a running total (not the sensor's value)."""
        return self.reading_source == SOURCE_RUNNING_TOTAL

    @property
    def unit(self) -> str:
        """Return the unit of its readings (the kind's billing unit)."""
        return KINDS[self.kind].billing_unit


@dataclass(frozen=True, slots=True)
class Candidate:
    """An entity that may become a meter."""

    entity_registry_id: str
    entity_id: str
    name: str
    eligibility: Eligibility
    kind: MeterKind = MeterKind.ENERGY


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


def source_data(
    reading_source: str,
    start_value: float = 0.0,
    start_at: int | None = None,
    start_seed: float | None = None,
) -> dict[str, Any]:
    """Return a meter's reading source as subentry data (all keys, for updates)."""
    running = reading_source == SOURCE_RUNNING_TOTAL
    return {
        CONF_READING_SOURCE: reading_source,
        # Rounded to thousandths: Wh of kWh, litres of m³ (the same for every kind).
        CONF_START_VALUE: round_kwh(start_value) if running else None,
        CONF_START_AT: start_at if running else None,
        CONF_START_SEED: start_seed if running else None,
    }


def meter_subentry_data(
    entity_entry: er.RegistryEntry,
    device_ref: str,
    register_ref: str,
    source: Mapping[str, Any] | None = None,
) -> ConfigSubentryData:
    """Return the subentry that maps an entity to a zevvy register.

    ``source``: ``source_data(...)``; by default the sensor's value.
    """
    return ConfigSubentryData(
        data={
            CONF_ENTITY_REGISTRY_ID: entity_entry.id,
            CONF_ENTITY_ID: entity_entry.entity_id,
            CONF_DEVICE_REF: device_ref,
            CONF_REGISTER_REF: register_ref,
            **(source or source_data(SOURCE_SENSOR)),
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


def _entity_attributes(
    hass: HomeAssistant, entity_entry: er.RegistryEntry
) -> tuple[Any, Any, Any, Any]:
    """Return (unit, device class, state class, last_reset) of an entity.

    The state's attributes when there is a state; the entity registry
    (capabilities, unit and device class) when the entity has not been added yet.
    """
    if (state := hass.states.get(entity_entry.entity_id)) is not None:
        return (
            state.attributes.get(ATTR_UNIT_OF_MEASUREMENT),
            state.attributes.get(ATTR_DEVICE_CLASS),
            state.attributes.get(ATTR_STATE_CLASS),
            state.attributes.get(ATTR_LAST_RESET),
        )
    return (
        _registry_unit(entity_entry),
        entity_entry.device_class or entity_entry.original_device_class,
        (entity_entry.capabilities or {}).get(ATTR_STATE_CLASS),
        None,
    )


@callback
def entity_kind(
    hass: HomeAssistant, entity_entry: er.RegistryEntry
) -> MeterKind | None:
    """Return the kind of meter an entity can be, None if it can be none."""
    if entity_entry.domain != SENSOR_DOMAIN:
        return None
    unit, device_class, state_class, _ = _entity_attributes(hass, entity_entry)
    if state_class not in METER_STATE_CLASSES:
        return None
    return unit_kind(unit, device_class)


@callback
def entity_eligibility(
    hass: HomeAssistant, entity_entry: er.RegistryEntry
) -> Eligibility:
    """Return whether an entity can be a meter (of any kind).

    The state's attributes decide when there is a state; the entity registry
    (capabilities and unit) when the entity has not been added yet.
    """
    if entity_kind(hass, entity_entry) is None:
        return Eligibility.NOT_ELIGIBLE
    _, _, state_class, last_reset = _entity_attributes(hass, entity_entry)
    if state_class == SensorStateClass.TOTAL and last_reset is not None:
        return Eligibility.RESETTING
    return Eligibility.ELIGIBLE


def with_kind(hass: HomeAssistant, data: Mapping[str, Any]) -> dict[str, Any]:
    """Return a new meter's subentry data with its kind (that of its entity now).

    Data that has a kind keeps it; an entity gone or of no kind: energy.
    """
    if data.get(CONF_KIND):
        return dict(data)
    entity_entry = er.async_get(hass).entities.get_entry(
        data.get(CONF_ENTITY_REGISTRY_ID, "")
    )
    kind = entity_kind(hass, entity_entry) if entity_entry else None
    return {**data, CONF_KIND: str(kind or MeterKind.ENERGY)}


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
            kind=entity_kind(hass, entity_entry) or MeterKind.ENERGY,
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
    """Return the statistic ids of the Energy dashboard's meters.

    Electricity: grid import and export, solar and wind production, battery in
    and out, and individual devices; gas and water sources, and (2026.x) the
    individual water devices.
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
    for devices in ("device_consumption", "device_consumption_water"):
        found.extend(
            device.get("stat_consumption") for device in preferences.get(devices) or []
        )
    return {stat_id for stat_id in found if isinstance(stat_id, str) and stat_id}


async def async_energy_dashboard_entity_ids(hass: HomeAssistant) -> set[str]:
    """Return the entity ids the Energy dashboard uses (electricity, gas, water).

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


async def _async_kind_name(hass: HomeAssistant, kind: MeterKind) -> str:
    """Return the name of a kind's device class in Home Assistant's language.

    "Energy", "Water", "Gas" in English, as Home Assistant names the sensor
    device classes energy, water and gas.
    """
    translations = await async_get_translations(
        hass, hass.config.language, "entity_component", [SENSOR_DOMAIN]
    )
    key = f"component.{SENSOR_DOMAIN}.entity_component.{kind.value}.name"
    return sanitize_reference(translations.get(key, "")) or KINDS[kind].register_ref


async def _async_energy_name(hass: HomeAssistant) -> str:
    """Return the name of the energy device class in Home Assistant's language."""
    return await _async_kind_name(hass, MeterKind.ENERGY)


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
    no own name and gets the name of its kind's device class ("Energy", "Water",
    "Gas"). An entity without a (named) device: its friendly name and that name.
    """
    energy_name = await _async_kind_name(
        hass, entity_kind(hass, entity_entry) or MeterKind.ENERGY
    )
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


# The coarsest precision a reading is given: a whole kWh or m³ (a sensor in MWh
# or GJ without a display precision is not tolerated a whole unit).
MAX_STEP_WH: Final = 1000
# Where the entity registry keeps a sensor's suggested display precision.
_SUGGESTED_PRECISION: Final = "suggested_display_precision"


def reading_step(
    unit: str | None, decimals: int | None, kind: MeterKind = MeterKind.ENERGY
) -> int:
    """Return the precision of a reading given in ``unit`` with ``decimals``.

    In thousandths of the kind's billing unit: Wh of kWh, litres of m³.
    ``decimals`` None: not known, one whole unit. At least 1 (zevvy's
    resolution), at most MAX_STEP_WH; 0 for a unit that is not of the kind.
    The outbox's drop check tolerates one step of the coarser precision between
    readings of different precision, none between readings of the same one.
    """
    spec = KINDS[kind]
    if unit not in spec.units:
        return 0
    one = 10.0 ** -max(0, decimals or 0)
    billed = spec.converter.convert(one, unit, spec.billing_unit)
    return max(1, min(MAX_STEP_WH, round(billed * 10.0**spec.decimals)))


def typed_decimals(value: object) -> int | None:
    """Return the decimals of a number a person typed, None if unknown.

    Text keeps its digits ("1234.50": 2); a number arrives without trailing
    zeros (1234.5: 1, 1235.0 and 1235: 0).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    text = value.strip() if isinstance(value, str) else repr(value)
    if isinstance(value, float) and value.is_integer():
        text = text.removesuffix(".0")
    mantissa, _, exponent = text.lower().partition("e")
    fraction = mantissa.partition(".")[2]
    try:
        return max(0, len(fraction) - int(exponent or 0))
    except ValueError:
        return None


@callback
def sensor_step(
    hass: HomeAssistant,
    entity_entry: er.RegistryEntry,
    kind: MeterKind = MeterKind.ENERGY,
) -> int:
    """Return the precision (Wh or litres) of a sensor's readings: its unit and
    its suggested display precision (one whole unit without one)."""
    state = hass.states.get(entity_entry.entity_id)
    unit = (
        state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
        if state is not None
        else _registry_unit(entity_entry)
    )
    options: Mapping[str, Any] = entity_entry.options.get(SENSOR_DOMAIN, {})
    decimals = options.get(_SUGGESTED_PRECISION)
    return reading_step(unit, decimals if isinstance(decimals, int) else None, kind)


def round_kwh(value: float) -> float:
    """Return a reading in kWh at zevvy's resolution (Wh), never -0.0."""
    # KINDS[MeterKind.ENERGY].round, without its look-ups: every reading
    # entering the outbox passes here.
    return round(value, READING_DECIMALS) + 0.0


# Per kind, its units' converters to the billing unit with the billing
# unit's decimals (``_converter``), filled as units are met.
_CONVERTERS: Final[
    dict[MeterKind, dict[str | None, tuple[Callable[[float], float], int]]]
] = {kind: {} for kind in MeterKind}


def _converter(
    kind: MeterKind, unit: str | None
) -> tuple[Callable[[float], float], int] | None:
    """Return the converter of a unit of the kind to its billing unit and the
    billing unit's decimals, None for a unit not of the kind."""
    spec = KINDS[kind]
    if unit not in spec.units:
        return None
    found = _CONVERTERS[kind][unit] = (
        spec.converter.converter_factory(unit, spec.billing_unit),
        spec.decimals,
    )
    return found


def to_reading(value: float, unit: str | None, kind: MeterKind) -> float | None:
    """Return a value as a reading in the kind's billing unit, None if none.

    Units of another kind (or none Home Assistant converts), infinite, NaN and
    negative values give None: a reading is never invented.
    """
    # KINDS[kind].round(its converter's convert(...)) with the converter kept
    # by unit: every reading of every meter passes here each quarter hour.
    found = _CONVERTERS[kind].get(unit) or _converter(kind, unit)
    if found is None or not math.isfinite(value) or value < 0:
        return None
    convert, decimals = found
    return round(convert(value), decimals) + 0.0


def to_kwh(value: float, unit: str | None) -> float | None:
    """Return an energy value as a reading in kWh, or None if it is no reading."""
    return to_reading(value, unit, MeterKind.ENERGY)


def state_reading(
    state: State | None, kind: MeterKind = MeterKind.ENERGY
) -> float | None:
    """Return a state's meter reading in the kind's billing unit, None if none.

    Unknown, unavailable and non-numeric states give None, and so does what
    ``to_reading`` refuses.
    """
    value = state_value(state, kind)
    return None if value is None else KINDS[kind].round(value)


def state_value(state: State | None, kind: MeterKind) -> float | None:
    """Return ``state_reading`` not yet rounded to the billing unit's resolution.

    For readings that go straight into the outbox, which rounds every reading
    as it enters (``outbox.policy``): the quarter-hour tick does not round
    each meter's reading twice.
    """
    if state is None or (text := state.state) in (STATE_UNKNOWN, STATE_UNAVAILABLE):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    # to_reading without the rounding, inline (each meter's state passes here
    # each quarter hour).
    unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
    found = _CONVERTERS[kind].get(unit) or _converter(kind, unit)
    if found is None or not math.isfinite(value) or value < 0:
        return None
    return found[0](value)


def state_to_kwh(state: State | None) -> float | None:
    """Return a state's meter reading in kWh, or None if it has none."""
    return state_reading(state, MeterKind.ENERGY)


@dataclass(frozen=True, slots=True)
class MeterCheck:
    """One meter subentry checked: usable (``meter``) or why not."""

    subentry_id: str
    title: str
    entity_id: str  # current entity id, or the one stored in the subentry
    meter: Meter | None  # None: not usable
    entity_missing: bool  # not usable because the entity left the registry


@callback
def check_meters(hass: HomeAssistant, entry: ConfigEntry[Any]) -> list[MeterCheck]:
    """Return every meter subentry of the entry, checked (a pure lookup).

    A meter whose entity left the entity registry, or no longer has a unit of the
    meter's kind and a meter state class, is not usable (``issues.py`` raises its
    repair issue).
    """
    registry = er.async_get(hass)
    checks: list[MeterCheck] = []
    for subentry in entry.subentries.values():
        if subentry.subentry_type != SUBENTRY_TYPE_METER:
            continue
        data = subentry.data
        entity_entry = registry.entities.get_entry(data[CONF_ENTITY_REGISTRY_ID])
        meter = None
        kind = stored_kind(data)
        if entity_entry is not None and entity_kind(hass, entity_entry) is kind:
            meter = Meter(
                subentry_id=subentry.subentry_id,
                entity_registry_id=entity_entry.id,
                entity_id=entity_entry.entity_id,
                device_ref=data[CONF_DEVICE_REF],
                register_ref=data[CONF_REGISTER_REF],
                reading_source=data.get(CONF_READING_SOURCE, SOURCE_SENSOR),
                start_value=float(data.get(CONF_START_VALUE) or 0.0),
                start_at=data.get(CONF_START_AT),
                start_seed=data.get(CONF_START_SEED),
                step=sensor_step(hass, entity_entry, kind),
                kind=kind,
            )
        checks.append(
            MeterCheck(
                subentry_id=subentry.subentry_id,
                title=subentry.title,
                entity_id=entity_entry.entity_id
                if entity_entry
                else data[CONF_ENTITY_ID],
                meter=meter,
                entity_missing=entity_entry is None,
            )
        )
    return checks


@callback
def resolve_meters(hass: HomeAssistant, entry: ConfigEntry[Any]) -> list[Meter]:
    """Return the entry's usable meters, with their current entity ids."""
    return [check.meter for check in check_meters(hass, entry) if check.meter]


# The state attributes ``check_meters`` reads (``entity_kind``, ``sensor_step``).
_CHECKED_ATTRIBUTES: Final = (
    ATTR_UNIT_OF_MEASUREMENT,
    ATTR_DEVICE_CLASS,
    ATTR_STATE_CLASS,
)


class MeterResolver:
    """The checked meters of one config entry, kept between quarter hours.

    ``check_meters`` walks every subentry, the entity registry and the states;
    a tick of 1000 meters must not repeat that each quarter hour. The answer is
    kept until something it depends on changes, and then checked again on the
    next call:

    * the entity registry (an entity removed, renamed, re-added, its unit or
      display precision changed), any entry of it;
    * the entry's subentries (a meter added, removed or changed);
    * the state of a meter's entity: it appears or goes, or its unit, device
      class or state class changes (a filter on the state-changed event keeps
      the other state changes cheap).

    The listeners run when the change happens (Home Assistant calls event and
    dispatcher callbacks at once), so the next call sees it. They are set up by
    the first call and ended by ``async_stop``; after that every call checks
    anew, as ``check_meters`` does.
    """

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry[Any]) -> None:
        """Keep nothing yet: the first call checks the meters."""
        self._hass = hass
        self._entry = entry
        self._checks: list[MeterCheck] | None = None
        self._meters: list[Meter] = []
        # What the kept answer was checked with: the subentries, and the
        # entities whose state changes may change it.
        self._subentries: Mapping[str, Any] | None = None
        self._entity_ids: frozenset[str] = frozenset()
        self._unsubs: list[CALLBACK_TYPE] = []
        self._stopped = False
        # How many times the meters were checked: what is made from the
        # answer (the pipeline's destinations) is made again when it grows.
        self.checked = 0

    @callback
    def checks(self) -> list[MeterCheck]:
        """Return every meter subentry checked (as ``check_meters``)."""
        return list(self._async_checks())

    @callback
    def meters(self) -> list[Meter]:
        """Return the usable meters (as ``resolve_meters``)."""
        self._async_checks()
        return list(self._meters)

    @callback
    def invalidate(self) -> None:
        """Check the meters again on the next call."""
        self._checks = None

    @callback
    def async_stop(self) -> None:
        """End the listeners; from now on every call checks anew."""
        self._stopped = True
        self._async_unsubscribe()
        self._checks = None

    @callback
    def _async_checks(self) -> list[MeterCheck]:
        entry = self._entry
        if self._checks is not None and entry.subentries is self._subentries:
            return self._checks
        checks = check_meters(self._hass, entry)
        self._meters = [check.meter for check in checks if check.meter]
        self.checked += 1
        if self._stopped:
            return checks
        if not self._unsubs:
            self._async_subscribe()
        registry = er.async_get(self._hass)
        self._entity_ids = frozenset(
            entity_entry.entity_id
            for subentry in entry.subentries.values()
            if subentry.subentry_type == SUBENTRY_TYPE_METER
            and (
                entity_entry := registry.entities.get_entry(
                    subentry.data[CONF_ENTITY_REGISTRY_ID]
                )
            )
        )
        self._subentries = entry.subentries
        self._checks = checks
        return checks

    @callback
    def _async_subscribe(self) -> None:
        hass = self._hass

        @callback
        def _async_entry_changed(
            change: ConfigEntryChange, changed: ConfigEntry[Any]
        ) -> None:
            if (
                change is ConfigEntryChange.UPDATED
                and changed.entry_id == self._entry.entry_id
            ):
                self.invalidate()

        self._unsubs = [
            hass.bus.async_listen(
                er.EVENT_ENTITY_REGISTRY_UPDATED, self._async_invalidate_event
            ),
            hass.bus.async_listen(
                EVENT_STATE_CHANGED,
                self._async_invalidate_event,
                event_filter=self._async_checked_state_changed,
            ),
            async_dispatcher_connect(
                hass, SIGNAL_CONFIG_ENTRY_CHANGED, _async_entry_changed
            ),
        ]

    @callback
    def _async_unsubscribe(self) -> None:
        for unsub in self._unsubs:
            unsub()
        self._unsubs = []

    @callback
    def _async_invalidate_event(self, _event: Event[Any]) -> None:
        self.invalidate()

    @callback
    def _async_checked_state_changed(self, data: EventStateChangedData) -> bool:
        """Return whether a state change may change a meter's check."""
        if data["entity_id"] not in self._entity_ids:
            return False
        old, new = data["old_state"], data["new_state"]
        if old is None or new is None:
            return True
        before, after = old.attributes, new.attributes
        return before is not after and any(
            before.get(name) != after.get(name) for name in _CHECKED_ATTRIBUTES
        )
