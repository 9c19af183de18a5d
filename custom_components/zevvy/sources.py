"""Reading sources in the flows: which suits a sensor, the fields, switching.

A meter's reading is either the sensor's value (a meter register) or a running
total (``running_total.py``) for sensors that restart from zero. This module
gives the flows (``meter_flow.py``, ``repairs.py``) what they share: the
suggested source of a sensor, the form fields, the texts' placeholders (what
zevvy will receive) and a switch to a running total that continues zevvy's
series (its subentry data; held readings discarded, the quarter hours since
filled from the statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from homeassistant.components.sensor import ATTR_LAST_RESET
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
)
from homeassistant.util import dt as dt_util

from .api import Reading
from .compat import vol
from .const import (
    CONF_DEVICE_REF,
    CONF_READING_SOURCE,
    CONF_REGISTER_REF,
    CONF_START_AT,
    CONF_START_SEED,
    CONF_START_VALUE,
    READING_DECIMALS,
    SOURCE_RUNNING_TOTAL,
    SOURCE_SENSOR,
)
from .history import async_fill_since
from .meters import (
    KINDS,
    MeterKind,
    async_default_references,
    entity_kind,
    friendly_name,
    round_kwh,
    source_data,
    state_reading,
    stored_kind,
)
from .quarters import next_quarter_epoch
from .reading_sources import SOURCES
from .runtime import ZevvyConfigEntry
from .status import Decision

# Shown where a value is not known.
UNKNOWN: Final = "\u2013"  # en dash
# Words in a sensor's translation key, entity id or name that say it restarts
# from zero (peblar ``energy_session``, tesla_wall_connector
# ``session_energy_wh``, daily and per-cycle counters).
_RESTARTING_WORDS: Final = ("session", "daily", "cycle")
# Integrations whose energy sensors restart although no word says so: wallbox
# ``added_energy`` (per charging session), ohme's energy (per session), and the
# utility_meter helper (per cycle). None: every energy sensor of the platform.
_RESTARTING_PLATFORMS: Final[Mapping[str, frozenset[str] | None]] = {
    "wallbox": frozenset({"added_energy", "added_discharged_energy"}),
    "ohme": None,
    "utility_meter": None,
}

SOURCE_SELECTOR: Final = SelectSelector(
    SelectSelectorConfig(
        options=list(SOURCES),
        translation_key=CONF_READING_SOURCE,
        mode=SelectSelectorMode.LIST,
    )
)


def start_schema(unit: str) -> vol.Schema:
    """Return the start value's form, in the meter's billing unit (kWh, m³)."""
    return vol.Schema(
        {
            vol.Required(CONF_START_VALUE): NumberSelector(
                NumberSelectorConfig(
                    min=0,
                    step="any",
                    mode=NumberSelectorMode.BOX,
                    unit_of_measurement=unit,
                )
            )
        }
    )


def entity_unit(hass: HomeAssistant, entity_entry: er.RegistryEntry) -> str:
    """Return the unit zevvy receives an entity's readings in (kWh, m³)."""
    return KINDS[entity_kind(hass, entity_entry) or MeterKind.ENERGY].billing_unit


def meter_unit(data: Mapping[str, Any]) -> str:
    """Return the unit zevvy receives a meter's readings in (kWh, m³)."""
    return KINDS[stored_kind(data)].billing_unit


# Optional: a form sent without it keeps the sensor's value (a new meter) or
# the meter's current source (a changed one). A running total's start value is
# asked in a step of its own (``start_schema``).
SOURCE_FIELD: Final[dict[vol.Marker, Any]] = {
    vol.Optional(CONF_READING_SOURCE): SOURCE_SELECTOR
}


@callback
def restarts_from_zero(hass: HomeAssistant, entity_entry: er.RegistryEntry) -> bool:
    """Return whether a sensor restarts from zero: a running total suits it.

    A ``last_reset`` attribute, a translation key, entity id or name that says
    session, daily or cycle, or an integration known for such sensors.
    """
    state = hass.states.get(entity_entry.entity_id)
    if state is not None and state.attributes.get(ATTR_LAST_RESET) is not None:
        return True
    if entity_entry.platform in _RESTARTING_PLATFORMS:
        keys = _RESTARTING_PLATFORMS[entity_entry.platform]
        if keys is None or entity_entry.translation_key in keys:
            return True
    words = " ".join(
        text
        for text in (
            entity_entry.translation_key,
            entity_entry.entity_id,
            entity_entry.original_name,
            entity_entry.name,
            friendly_name(hass, entity_entry),
        )
        if text
    ).casefold()
    return any(word in words for word in _RESTARTING_WORDS)


@callback
def suggested_source(
    hass: HomeAssistant, entity_entry: er.RegistryEntry
) -> dict[str, Any]:
    """Return the form's suggested reading source and start value."""
    running = restarts_from_zero(hass, entity_entry)
    return {
        CONF_READING_SOURCE: SOURCE_RUNNING_TOTAL if running else SOURCE_SENSOR,
        CONF_START_VALUE: 0.0,
    }


def first_quarter(now: datetime | None = None) -> int:
    """Return the start of a new running total: the next quarter hour (epoch)."""
    return next_quarter_epoch(int((now or dt_util.utcnow()).timestamp()))


def local_time(epoch: float) -> str:
    """Return a time for the UI, in Home Assistant's time zone."""
    return dt_util.as_local(dt_util.utc_from_timestamp(epoch)).strftime(
        "%Y-%m-%d %H:%M"
    )


def kwh_text(value: float | None) -> str:
    """Return a reading (kWh or m³, 3 decimals) for the UI."""
    return UNKNOWN if value is None else f"{value:.{READING_DECIMALS}f}"


def source_choice_placeholders(
    hass: HomeAssistant, entity_entry: er.RegistryEntry
) -> dict[str, str]:
    """Return what zevvy will receive with the sensor's value, for a new meter.

    ``suggested`` is the source's key: the texts name it in the language of the
    person looking (an ICU ``select``), not in Home Assistant's.
    """
    kind = entity_kind(hass, entity_entry) or MeterKind.ENERGY
    return {
        "value": kwh_text(state_reading(hass.states.get(entity_entry.entity_id), kind)),
        "unit": KINDS[kind].billing_unit,
        "suggested": suggested_source(hass, entity_entry)[CONF_READING_SOURCE],
    }


def start_placeholders(
    hass: HomeAssistant,
    entity_entry: er.RegistryEntry,
    references: tuple[str, str],
) -> dict[str, str]:
    """Return the texts' placeholders of a new running total's start step."""
    return {
        "entity_id": entity_entry.entity_id,
        "name": friendly_name(hass, entity_entry),
        "device_ref": references[0],
        "register_ref": references[1],
        "start": local_time(first_quarter()),
        "unit": entity_unit(hass, entity_entry),
    }


async def async_meter_form(
    hass: HomeAssistant,
    entity_entry: er.RegistryEntry,
    user_input: Mapping[str, Any] | None,
) -> tuple[Mapping[str, Any], dict[str, str]]:
    """Return a new meter's form: its suggested values and text placeholders.

    Suggested: what the user entered, else the default references and source.
    """
    suggested = user_input
    if suggested is None:
        device_ref, register_ref = await async_default_references(hass, entity_entry)
        suggested = {
            CONF_DEVICE_REF: device_ref,
            CONF_REGISTER_REF: register_ref,
            **suggested_source(hass, entity_entry),
        }
    return suggested, {
        "entity_id": entity_entry.entity_id,
        "name": friendly_name(hass, entity_entry),
        **source_choice_placeholders(hass, entity_entry),
    }


def source_from_input(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return the subentry data of the source chosen in a form (a new start).

    A running total starts at the next quarter hour with the start value
    entered (0 if none).
    """
    return source_data(
        user_input.get(CONF_READING_SOURCE, SOURCE_SENSOR),
        float(user_input.get(CONF_START_VALUE) or 0.0),
        first_quarter(),
    )


@callback
def last_delivered(
    hass: HomeAssistant, entry: ConfigEntry[Any], key: str
) -> Reading | None:
    """Return the last reading zevvy has of a meter (None if not loaded)."""
    if entry.state is not ConfigEntryState.LOADED:
        return None
    reading: Reading | None = entry.runtime_data.outbox.last_delivered(key)
    return reading


def last_placeholders(reading: Reading | None, unit: str) -> dict[str, str]:
    """Return the last reading zevvy has (value, time, unit) for a text.

    ``has_last``: the text leaves out what it says of the last reading when
    zevvy has none.
    """
    if reading is None:
        return {"has_last": "no", "last": UNKNOWN, "last_at": UNKNOWN, "unit": unit}
    return {
        "has_last": "yes",
        "last": kwh_text(reading.value),
        "last_at": local_time(reading.read_at.timestamp()),
        "unit": unit,
    }


def source_placeholders(data: Mapping[str, Any]) -> dict[str, str]:
    """Return a meter's reading source for a text: its key, start value, start."""
    start_at = data.get(CONF_START_AT)
    return {
        "source": data.get(CONF_READING_SOURCE, SOURCE_SENSOR),
        "start_value": kwh_text(data.get(CONF_START_VALUE)),
        "unit": meter_unit(data),
        "start_at": UNKNOWN if start_at is None else local_time(start_at),
    }


def running_total_from(
    reading: Reading | None, start_value: float | None = None
) -> dict[str, Any]:
    """Return the data of a switch from the sensor's value to a running total.

    Continuing zevvy's series (``start_value`` left at the last reading zevvy
    has): the running total starts at that reading, when the sensor read that
    value, and adds what it counted since. Any other start value starts anew
    at the next quarter hour.
    """
    if reading is not None and (
        start_value is None or round_kwh(start_value) == round_kwh(reading.value)
    ):
        start_at = int(reading.read_at.timestamp())
        return source_data(SOURCE_RUNNING_TOTAL, reading.value, start_at, reading.value)
    return source_data(SOURCE_RUNNING_TOTAL, start_value or 0.0, first_quarter())


def continues_series(source: Mapping[str, Any]) -> bool:
    """Return whether a running total's data continue zevvy's series."""
    return source.get(CONF_START_SEED) is not None


async def async_continue_series[_T](
    hass: HomeAssistant,
    entry: ZevvyConfigEntry,
    key: str,
    baseline: Reading | None,
    update: Callable[[], _T],
) -> _T:
    """Switch a meter register to a running total that continues zevvy's series.

    ``update`` saves the meter's new data (``running_total_from(baseline)``).
    The held readings (the sensor's values after it restarted) are discarded;
    the running total continues from the last reading zevvy has (readings
    still pending after it are the sensor's values before the restart: the
    same running total), and the quarter hours since are filled from the
    statistics. The repair's switch and Change meter do the same.
    """
    await entry.runtime_data.pipeline.async_decide(key, Decision.DISCARD_HELD)
    result = update()
    if baseline is not None:
        await async_fill_since(hass, entry, key, baseline.read_at)
    return result


async def async_switch_held_to_running_total(
    hass: HomeAssistant, entry: ZevvyConfigEntry, key: str
) -> None:
    """A meter register keeps dropping: it restarts from zero. Switch it
    (``async_continue_series``)."""
    if (subentry := entry.subentries.get(key)) is None:
        return
    baseline = entry.runtime_data.outbox.last_delivered(key)
    data = {**subentry.data, **running_total_from(baseline)}
    await async_continue_series(
        hass,
        entry,
        key,
        baseline,
        lambda: hass.config_entries.async_update_subentry(entry, subentry, data=data),
    )
