"""Flows that choose meters: after login, "Add meter" and renaming a meter.

``MeterSelectionFlow`` is the base of the main config flow: once the login is done
the main flow calls ``_async_offer_meters(title, data)``; the user picks eligible
entities, grouped by kind (energy, water, gas; preselected with the Energy
dashboard's), confirms or edits the two references and the reading source of
each (from the second meter on, the suggested names and sources can be
accepted for all the others at once), and the entry is created with one meter
subentry per entity. Each meter subentry stores its kind, that of its entity
when it is created (``with_kind``).

``MeterSubentryFlowHandler`` adds one meter at a time and changes meters
(subentry reconfigure: names and reading source). A changed meter's waiting
readings follow at once: to its new names, or, when new names come with a new
reading source (a new series), to the old names they were made for.

Each meter has a reading source (``sources.py``): the sensor's value, or a
running total for sensors that restart from zero (suggested for those), whose
start value is asked in a step of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryData,
    ConfigSubentryFlow,
    SubentryFlowResult,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    TextSelector,
)

from .compat import vol
from .const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_READING_SOURCE,
    CONF_REGISTER_REF,
    CONF_START_AT,
    CONF_START_VALUE,
    SOURCE_RUNNING_TOTAL,
    SOURCE_SENSOR,
    SUBENTRY_TYPE_METER,
)
from .meters import (
    Candidate,
    Eligibility,
    MeterKind,
    async_candidates,
    async_suggested_entity_ids,
    entity_eligibility,
    meter_subentry_data,
    meter_title,
    sanitize_reference,
    source_data,
    with_kind,
)
from .outbox import Destination, meter_series
from .sources import (
    SOURCE_FIELD,
    async_continue_series,
    async_meter_form,
    continues_series,
    entity_unit,
    last_delivered,
    last_placeholders,
    meter_unit,
    restarts_from_zero,
    running_total_from,
    source_from_input,
    source_placeholders,
    start_placeholders,
    start_schema,
)

# Fields of the multi-select step after login: one per kind of meter.
CONF_ENTITIES: Final = "entities"
CONF_WATER_ENTITIES: Final = "water_entities"
CONF_GAS_ENTITIES: Final = "gas_entities"
KIND_FIELDS: Final[dict[MeterKind, str]] = {
    MeterKind.ENERGY: CONF_ENTITIES,
    MeterKind.WATER: CONF_WATER_ENTITIES,
    MeterKind.GAS: CONF_GAS_ENTITIES,
}
# Field of the names step from the second meter on: the other meters take the
# suggested names and reading sources.
CONF_ACCEPT_SUGGESTED: Final = "accept_suggested"

ERROR_EMPTY_REFERENCE: Final = "empty_reference"
ERROR_INVALID_REFERENCE: Final = "invalid_reference"
ERROR_DUPLICATE_REFERENCES: Final = "duplicate_references"
ERROR_NOT_ELIGIBLE: Final = "not_eligible"

REFERENCES_SCHEMA: Final = vol.Schema(
    {
        vol.Required(CONF_DEVICE_REF): TextSelector(),
        vol.Required(CONF_REGISTER_REF): TextSelector(),
    }
)
# A meter's names and reading source (a running total's start: start_schema).
METER_SCHEMA: Final = REFERENCES_SCHEMA.extend(SOURCE_FIELD)
RECONFIGURE_SCHEMA: Final = METER_SCHEMA


def reconfigure_start_schema(unit: str) -> vol.Schema:
    """Switching to a running total: its start value (in the meter's unit), and
    the register name (a new name starts a new series on zevvy)."""
    return start_schema(unit).extend({vol.Required(CONF_REGISTER_REF): TextSelector()})


ACCEPT_SCHEMA: Final = METER_SCHEMA.extend(
    {vol.Optional(CONF_ACCEPT_SUGGESTED, default=False): BooleanSelector()}
)


def _pair_key(device_ref: str, register_ref: str) -> tuple[str, str]:
    return device_ref.casefold(), register_ref.casefold()


def _subentry_pairs(
    subentries: Iterable[Mapping[str, Any]],
) -> set[tuple[str, str]]:
    """Return the (device, register) keys already used by meters' data."""
    return {
        _pair_key(data[CONF_DEVICE_REF], data[CONF_REGISTER_REF]) for data in subentries
    }


def validate_references(
    user_input: Mapping[str, Any], taken: set[tuple[str, str]]
) -> tuple[tuple[str, str], dict[str, str]]:
    """Return the sanitized references and the form errors (empty if valid).

    A reference may not be empty once slashes are replaced and spaces trimmed, nor
    one the client's rule refuses ("." or ".."); two meters may not share a device
    and register (their readings would mix).
    """
    references: dict[str, str] = {}
    errors: dict[str, str] = {}
    for field in (CONF_DEVICE_REF, CONF_REGISTER_REF):
        value = user_input.get(field, "")
        references[field] = sanitize_reference(value)
        if not references[field]:
            errors[field] = (
                ERROR_INVALID_REFERENCE if value.strip() else ERROR_EMPTY_REFERENCE
            )
    device_ref = references[CONF_DEVICE_REF]
    register_ref = references[CONF_REGISTER_REF]
    if not errors and _pair_key(device_ref, register_ref) in taken:
        errors["base"] = ERROR_DUPLICATE_REFERENCES
    return (device_ref, register_ref), errors


def _resetting_placeholders(
    hass: HomeAssistant, candidates: Iterable[Candidate]
) -> dict[str, str]:
    """Name the sensors that restart from zero, for the step description.

    With their number: the text leaves its sentence out when there is none.
    """
    registry = er.async_get(hass)
    names = [
        f"{candidate.name} ({candidate.entity_id})"
        for candidate in candidates
        if (entity_entry := registry.async_get(candidate.entity_id))
        and restarts_from_zero(hass, entity_entry)
    ]
    return {"resetting": ", ".join(names), "resetting_count": str(len(names))}


def _mapped_registry_ids(entry: ConfigEntry[Any]) -> set[str]:
    return {
        subentry.data[CONF_ENTITY_REGISTRY_ID]
        for subentry in entry.subentries.values()
        if subentry.subentry_type == SUBENTRY_TYPE_METER
    }


class MeterSelectionFlow(ConfigFlow):
    """Main config flow steps that choose meters after login."""

    _meter_entry_title: str
    _meter_entry_data: dict[str, Any]
    _meter_queue: list[str]
    _meter_total: int
    _meter_subentries: list[ConfigSubentryData]
    # The names of the meter whose start value is asked (meter_start).
    _meter_references: tuple[str, str]
    # The user accepted the suggestions for the meters left.
    _meter_accept_rest: bool

    async def _async_offer_meters(
        self, title: str, data: dict[str, Any]
    ) -> ConfigFlowResult:
        """Let the user choose meters, then create the entry (title, data)."""
        self._meter_entry_title = title
        self._meter_entry_data = data
        self._meter_queue = []
        self._meter_total = 0
        self._meter_subentries = []
        self._meter_accept_rest = False
        return await self.async_step_meters()

    def _async_create_with_meters(self) -> ConfigFlowResult:
        # The same account may have been added meanwhile by another flow.
        self._abort_if_unique_id_configured()
        return self.async_create_entry(
            title=self._meter_entry_title,
            data=self._meter_entry_data,
            subentries=[
                ConfigSubentryData(
                    data=with_kind(self.hass, subentry["data"]),
                    subentry_type=subentry["subentry_type"],
                    title=subentry["title"],
                    unique_id=subentry["unique_id"],
                )
                for subentry in self._meter_subentries
            ],
        )

    async def async_step_meters(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Multi-select of eligible entities, one list per kind of meter (energy,
        water, gas: those with candidates); none is fine, meters can come later."""
        if user_input is not None:
            registry = er.async_get(self.hass)
            self._meter_queue = [
                entity_entry.id
                for field in KIND_FIELDS.values()
                for entity_id in user_input.get(field, [])
                if (entity_entry := registry.async_get(entity_id)) is not None
            ]
            self._meter_total = len(self._meter_queue)
            return await self.async_step_meter_names()

        candidates = async_candidates(self.hass)
        if not candidates:
            return self._async_create_with_meters()
        suggested = set(await async_suggested_entity_ids(self.hass, candidates))
        fields: dict[vol.Marker, Any] = {}
        values: dict[str, list[str]] = {}
        for kind, field in KIND_FIELDS.items():
            entity_ids = [c.entity_id for c in candidates if c.kind is kind]
            if not entity_ids:
                continue
            fields[vol.Optional(field)] = EntitySelector(
                EntitySelectorConfig(include_entities=entity_ids, multiple=True)
            )
            values[field] = [e for e in entity_ids if e in suggested]
        return self.async_show_form(
            step_id="meters",
            data_schema=self.add_suggested_values_to_schema(vol.Schema(fields), values),
            description_placeholders=_resetting_placeholders(self.hass, candidates),
        )

    def _meter_entity(self) -> er.RegistryEntry | None:
        """Return the entity of the first meter in the queue (None: all done).

        Entities removed from the registry meanwhile are dropped.
        """
        registry = er.async_get(self.hass)
        while self._meter_queue:
            entity_entry = registry.entities.get_entry(self._meter_queue[0])
            if entity_entry is not None:
                return entity_entry
            self._meter_queue.pop(0)
        return None

    def _meter_taken(self) -> set[tuple[str, str]]:
        return _subentry_pairs(subentry["data"] for subentry in self._meter_subentries)

    async def _async_add_meter(
        self,
        entity_entry: er.RegistryEntry,
        references: tuple[str, str],
        source: dict[str, Any],
    ) -> ConfigFlowResult:
        """Keep the meter; go on with the next one."""
        self._meter_subentries.append(
            meter_subentry_data(entity_entry, *references, source)
        )
        self._meter_queue.pop(0)
        return await self.async_step_meter_names()

    async def async_step_meter_names(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Confirm or edit the references and source of each chosen entity."""
        entity_id = self._meter_queue[0] if self._meter_queue else None
        if (entity_entry := self._meter_entity()) is None:
            return self._async_create_with_meters()
        if entity_entry.id != entity_id:
            # The names submitted were for an entity removed meanwhile.
            user_input = None

        errors: dict[str, str] = {}
        if user_input is None and self._meter_accept_rest:
            suggested, _ = await async_meter_form(self.hass, entity_entry, None)
            references, errors = validate_references(suggested, self._meter_taken())
            if not errors:
                return await self._async_add_meter(
                    entity_entry, references, source_from_input(suggested)
                )
            # The suggested names are taken: this meter's form, with the error.
        if user_input is not None:
            references, errors = validate_references(user_input, self._meter_taken())
            if not errors:
                self._meter_accept_rest = bool(user_input.get(CONF_ACCEPT_SUGGESTED))
                if user_input.get(CONF_READING_SOURCE) == SOURCE_RUNNING_TOTAL:
                    self._meter_references = references
                    return await self.async_step_meter_start()
                return await self._async_add_meter(
                    entity_entry, references, source_from_input(user_input)
                )

        position = self._meter_total - len(self._meter_queue) + 1
        suggested, placeholders = await async_meter_form(
            self.hass, entity_entry, user_input
        )
        # From the second meter on, when others follow.
        schema = (
            ACCEPT_SCHEMA
            if position > 1 and len(self._meter_queue) > 1
            else METER_SCHEMA
        )
        return self.async_show_form(
            step_id="meter_names",
            data_schema=self.add_suggested_values_to_schema(schema, suggested),
            errors=errors,
            description_placeholders={
                **placeholders,
                "position": str(position),
                "total": str(self._meter_total),
            },
        )

    async def async_step_meter_start(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask a new running total's start value."""
        entity_id = self._meter_queue[0] if self._meter_queue else None
        entity_entry = self._meter_entity()
        if entity_entry is None or entity_entry.id != entity_id:
            return await self.async_step_meter_names()
        if user_input is not None:
            return await self._async_add_meter(
                entity_entry,
                self._meter_references,
                source_from_input(
                    {**user_input, CONF_READING_SOURCE: SOURCE_RUNNING_TOTAL}
                ),
            )
        return self.async_show_form(
            step_id="meter_start",
            data_schema=self.add_suggested_values_to_schema(
                start_schema(entity_unit(self.hass, entity_entry)),
                {CONF_START_VALUE: 0.0},
            ),
            description_placeholders=start_placeholders(
                self.hass, entity_entry, self._meter_references
            ),
        )


class MeterSubentryFlowHandler(ConfigSubentryFlow):
    """Add a meter (one entity) or rename one."""

    _entity_registry_id: str
    _references: dict[str, str]
    # The names of a new running total whose start value is asked (start).
    _new_references: tuple[str, str]

    def async_create_entry(
        self, *, data: Mapping[str, Any], **kwargs: Any
    ) -> SubentryFlowResult:
        """Create the meter subentry with its kind (that of its entity now)."""
        return super().async_create_entry(data=with_kind(self.hass, data), **kwargs)

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Pick one eligible entity that is not a meter yet."""
        entry = self._get_entry()
        mapped = _mapped_registry_ids(entry)
        errors: dict[str, str] = {}
        if user_input is not None:
            entity_entry = er.async_get(self.hass).async_get(user_input[CONF_ENTITY_ID])
            if entity_entry is not None and entity_entry.id in mapped:
                return self.async_abort(reason="already_configured")
            if (
                entity_entry is None
                or entity_eligibility(self.hass, entity_entry)
                is Eligibility.NOT_ELIGIBLE
            ):
                errors[CONF_ENTITY_ID] = ERROR_NOT_ELIGIBLE
            else:
                self._entity_registry_id = entity_entry.id
                return await self.async_step_references()

        candidates = [
            candidate
            for candidate in async_candidates(self.hass)
            if candidate.entity_registry_id not in mapped
        ]
        if not candidates:
            return self.async_abort(reason="no_eligible_entities")
        schema = vol.Schema(
            {
                vol.Required(CONF_ENTITY_ID): EntitySelector(
                    EntitySelectorConfig(
                        include_entities=[c.entity_id for c in candidates]
                    )
                )
            }
        )
        return self.async_show_form(
            step_id="user",
            data_schema=schema,
            errors=errors,
            description_placeholders=_resetting_placeholders(self.hass, candidates),
        )

    async def async_step_references(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Confirm or edit the device and register references."""
        entry = self._get_entry()
        entity_entry = er.async_get(self.hass).entities.get_entry(
            self._entity_registry_id
        )
        if entity_entry is None:
            return self.async_abort(reason="entity_not_found")
        errors: dict[str, str] = {}
        if user_input is not None:
            if entity_entry.id in _mapped_registry_ids(entry):
                return self.async_abort(reason="already_configured")
            (device_ref, register_ref), errors = validate_references(
                user_input,
                _subentry_pairs(
                    subentry.data
                    for subentry in entry.subentries.values()
                    if subentry.subentry_type == SUBENTRY_TYPE_METER
                ),
            )
            if not errors:
                if user_input.get(CONF_READING_SOURCE) == SOURCE_RUNNING_TOTAL:
                    self._new_references = (device_ref, register_ref)
                    return await self.async_step_start()
                return self._async_create_meter(
                    entity_entry,
                    (device_ref, register_ref),
                    source_from_input(user_input),
                )

        suggested, placeholders = await async_meter_form(
            self.hass, entity_entry, user_input
        )
        return self.async_show_form(
            step_id="references",
            data_schema=self.add_suggested_values_to_schema(METER_SCHEMA, suggested),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def async_step_start(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Ask a new running total's start value."""
        entity_entry = er.async_get(self.hass).entities.get_entry(
            self._entity_registry_id
        )
        if entity_entry is None:
            return self.async_abort(reason="entity_not_found")
        if user_input is not None:
            if entity_entry.id in _mapped_registry_ids(self._get_entry()):
                return self.async_abort(reason="already_configured")
            return self._async_create_meter(
                entity_entry,
                self._new_references,
                source_from_input(
                    {**user_input, CONF_READING_SOURCE: SOURCE_RUNNING_TOTAL}
                ),
            )
        return self.async_show_form(
            step_id="start",
            data_schema=self.add_suggested_values_to_schema(
                start_schema(entity_unit(self.hass, entity_entry)),
                {CONF_START_VALUE: 0.0},
            ),
            description_placeholders=start_placeholders(
                self.hass, entity_entry, self._new_references
            ),
        )

    def _async_create_meter(
        self,
        entity_entry: er.RegistryEntry,
        references: tuple[str, str],
        source: dict[str, Any],
    ) -> SubentryFlowResult:
        subentry = meter_subentry_data(entity_entry, *references, source)
        return self.async_create_entry(
            title=subentry["title"],
            data=subentry["data"],
            unique_id=subentry["unique_id"],
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Rename a meter or switch its reading source.

        New names: zevvy sees a new device or register. Switching to a running
        total asks for its start (``reconfigure_start``).
        """
        entry = self._get_entry()
        subentry = self._get_reconfigure_subentry()
        source = subentry.data.get(CONF_READING_SOURCE, SOURCE_SENSOR)
        errors: dict[str, str] = {}
        if user_input is not None:
            (device_ref, register_ref), errors = validate_references(
                user_input,
                _subentry_pairs(
                    other.data
                    for other in entry.subentries.values()
                    if other.subentry_type == SUBENTRY_TYPE_METER
                    and other.subentry_id != subentry.subentry_id
                ),
            )
            if not errors:
                self._references = {
                    CONF_DEVICE_REF: device_ref,
                    CONF_REGISTER_REF: register_ref,
                }
                new_source = user_input.get(CONF_READING_SOURCE, source)
                if new_source == source:
                    return self._async_update_meter({})
                if new_source == SOURCE_RUNNING_TOTAL:
                    return await self.async_step_reconfigure_start()
                return self._async_update_meter(source_data(new_source))
            suggested: Mapping[str, Any] = user_input
        else:
            suggested = {**subentry.data, CONF_READING_SOURCE: source}

        entity_id = (
            er.async_resolve_entity_id(
                er.async_get(self.hass), subentry.data[CONF_ENTITY_REGISTRY_ID]
            )
            or subentry.data[CONF_ENTITY_ID]
        )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                RECONFIGURE_SCHEMA, suggested
            ),
            errors=errors,
            description_placeholders={
                "entity_id": entity_id,
                "device_ref": subentry.data[CONF_DEVICE_REF],
                "register_ref": subentry.data[CONF_REGISTER_REF],
                **source_placeholders(subentry.data),
            },
        )

    async def async_step_reconfigure_start(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Start a running total: continue zevvy's series, or a new start value.

        Continuing it, the held readings are discarded and the quarter hours
        since zevvy's last reading filled from the statistics (as the repair's
        switch does). A register name changed here starts a new series on
        zevvy: the running total starts anew with the start value at the next
        quarter hour.
        """
        entry = self._get_entry()
        subentry = self._get_reconfigure_subentry()
        last = last_delivered(self.hass, entry, subentry.subentry_id)
        errors: dict[str, str] = {}
        if user_input is not None:
            (device_ref, register_ref), errors = validate_references(
                {**self._references, CONF_REGISTER_REF: user_input[CONF_REGISTER_REF]},
                _subentry_pairs(
                    other.data
                    for other in entry.subentries.values()
                    if other.subentry_type == SUBENTRY_TYPE_METER
                    and other.subentry_id != subentry.subentry_id
                ),
            )
            if not errors:
                new_series = register_ref != self._references[CONF_REGISTER_REF]
                self._references[CONF_REGISTER_REF] = register_ref
                source = running_total_from(
                    None if new_series else last, float(user_input[CONF_START_VALUE])
                )
                if new_series or last is None or not continues_series(source):
                    return self._async_update_meter(source)
                # Kept at zevvy's last reading: like the repair's switch.
                return await async_continue_series(
                    self.hass,
                    entry,
                    subentry.subentry_id,
                    last,
                    lambda: self._async_update_meter(source),
                )
            suggested: Mapping[str, Any] = user_input
        else:
            suggested = {
                CONF_START_VALUE: last.value if last else 0.0,
                CONF_REGISTER_REF: self._references[CONF_REGISTER_REF],
            }
        return self.async_show_form(
            step_id="reconfigure_start",
            data_schema=self.add_suggested_values_to_schema(
                reconfigure_start_schema(meter_unit(subentry.data)), suggested
            ),
            errors=errors,
            description_placeholders={
                **self._references,
                **last_placeholders(last, meter_unit(subentry.data)),
            },
        )

    def _async_update_meter(self, source: Mapping[str, Any]) -> SubentryFlowResult:
        """Save the new names (and reading source) of the meter.

        Its waiting readings follow at once (before anything more is sent):
        to the new names, or, with a new reading source on new names, to the
        old names they were made for (``Outbox.follow``).
        """
        references = self._references
        entry = self._get_entry()
        subentry = self._get_reconfigure_subentry()
        old = subentry.data
        new = {**old, **references, **source}
        if entry.state is ConfigEntryState.LOADED:
            entry.runtime_data.outbox.follow(
                Destination(
                    subentry.subentry_id,
                    new[CONF_DEVICE_REF],
                    new[CONF_REGISTER_REF],
                    series=_series(new),
                ),
                previous_series=_series(old),
            )
        return self.async_update_and_abort(
            entry,
            subentry,
            title=meter_title(
                references[CONF_DEVICE_REF], references[CONF_REGISTER_REF]
            ),
            data_updates={**references, **source},
        )


def _series(data: Mapping[str, Any]) -> str:
    """Return the series of a meter's subentry data (``meter_series``)."""
    source = data.get(CONF_READING_SOURCE, SOURCE_SENSOR)
    return meter_series(
        source, data.get(CONF_START_AT) if source == SOURCE_RUNNING_TOTAL else None
    )
