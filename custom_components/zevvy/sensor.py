"""Diagnostic sensors: last upload, readings waiting, and per meter the last
reading zevvy confirmed (in kWh, or in m³ for a water or gas meter) and the
meter's reading source (the sensor's value or a running total, with its start
value and start as attributes).

The two times change every quarter hour; like Home Assistant's own
"last updated" sensors (filesize, ituran) they are disabled by default, which
keeps a "changed to" line per quarter hour out of the logbook (it leaves out
only sensors with a unit or a state class, which a time cannot have).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntry,
    ConfigEntryChange,
    ConfigSubentry,
)
from homeassistant.const import EntityCategory, UnitOfEnergy
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .compat import async_get_device
from .const import (
    CONF_READING_SOURCE,
    CONF_START_AT,
    CONF_START_VALUE,
    SOURCE_RUNNING_TOTAL,
    SOURCE_SENSOR,
    SUBENTRY_TYPE_METER,
)
from .entity import ZevvyEntity, ZevvyMeterEntity, meter_identifier
from .helpers import async_on_entry_updated
from .meters import KINDS, MeterKind, stored_kind
from .outbox import QueueView
from .reading_sources import SOURCES
from .runtime import ZevvyConfigEntry
from .status import ZevvyStatus

# Coordinator entities: the pipeline does the work, the coordinator publishes
# its status, entities only read.
PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class ZevvySensorEntityDescription(SensorEntityDescription):
    """A sensor of the account."""

    value_fn: Callable[[ZevvyStatus], datetime | int | None]
    # Show the value from before a restart until there is a new one.
    restore: bool = False


@dataclass(frozen=True, kw_only=True)
class ZevvyMeterSensorEntityDescription(SensorEntityDescription):
    """A sensor of one meter."""

    value_fn: Callable[[QueueView], datetime | float | None]


ACCOUNT_SENSORS: tuple[ZevvySensorEntityDescription, ...] = (
    ZevvySensorEntityDescription(
        key="last_upload",
        translation_key="last_upload",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda status: status.last_success,
        restore=True,
    ),
    ZevvySensorEntityDescription(
        key="readings_waiting",
        translation_key="readings_waiting",
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda status: status.pending,
    ),
)

METER_SENSORS: tuple[ZevvyMeterSensorEntityDescription, ...] = (
    ZevvyMeterSensorEntityDescription(
        key="last_reading_time",
        translation_key="last_reading_time",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda meter: meter.last_delivered_at,
    ),
    # The value mostly repeats the meter's own sensor; off by default so that
    # the recorder does not keep a second copy of every meter.
    ZevvyMeterSensorEntityDescription(
        key="last_reading",
        translation_key="last_reading",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda meter: meter.last_delivered_value,
    ),
)

# Which meters are running totals (item of the meter's device page).
READING_SOURCE = SensorEntityDescription(
    key="reading_source",
    translation_key="reading_source",
    device_class=SensorDeviceClass.ENUM,
    options=list(SOURCES),
    entity_category=EntityCategory.DIAGNOSTIC,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ZevvyConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the account's sensors and those of each meter, now and later."""
    device_registry = dr.async_get(hass)
    async_add_entities(
        ZevvySensorEntity(entry, description) for description in ACCOUNT_SENSORS
    )

    known: set[str] = set()

    @callback
    def _async_sync_meters() -> None:
        """Add entities for new meters; follow renamed meters' titles."""
        for subentry_id, subentry in entry.subentries.items():
            if subentry.subentry_type != SUBENTRY_TYPE_METER:
                continue
            if subentry_id not in known:
                known.add(subentry_id)
                async_add_entities(
                    [
                        *(
                            ZevvyMeterSensorEntity(entry, subentry, description)
                            for description in METER_SENSORS
                        ),
                        ZevvyReadingSourceEntity(entry, subentry, READING_SOURCE),
                    ],
                    config_subentry_id=subentry_id,
                )
                continue
            device = async_get_device(
                hass, meter_identifier(entry, subentry_id), entry.entry_id
            )
            if device is not None and device.name != subentry.title:
                device_registry.async_update_device(device.id, name=subentry.title)
        # Removing a subentry removes its entities and device (Home Assistant).
        known.intersection_update(entry.subentries)

    _async_sync_meters()
    async_on_entry_updated(hass, entry, _async_sync_meters)


class ZevvySensorEntity(ZevvyEntity, RestoreSensor):
    """A sensor of the account."""

    entity_description: ZevvySensorEntityDescription
    _restored: datetime | None = None

    async def async_added_to_hass(self) -> None:
        """Restore the last upload time: the coordinator only knows its own."""
        await super().async_added_to_hass()
        if not self.entity_description.restore:
            return
        if (data := await self.async_get_last_sensor_data()) is not None and (
            isinstance(data.native_value, datetime)
        ):
            self._restored = data.native_value

    @property
    def native_value(self) -> datetime | int | None:
        """Return the value from the coordinator's status."""
        value = self.entity_description.value_fn(self.coordinator.data)
        return self._restored if value is None else value


class ZevvyMeterSensorEntity(ZevvyMeterEntity, SensorEntity):
    """A sensor of one meter."""

    entity_description: ZevvyMeterSensorEntityDescription

    def __init__(
        self,
        entry: ZevvyConfigEntry,
        subentry: ConfigSubentry,
        description: ZevvyMeterSensorEntityDescription,
    ) -> None:
        """Initialize; a water or gas meter's reading is a volume in m³."""
        super().__init__(entry, subentry, description)
        kind = stored_kind(subentry.data)
        if (
            description.device_class is SensorDeviceClass.ENERGY
            and kind is not MeterKind.ENERGY
        ):
            self._attr_device_class = SensorDeviceClass(kind.value)
            self._attr_native_unit_of_measurement = KINDS[kind].billing_unit

    @property
    def native_value(self) -> datetime | float | None:
        """Return the value from the meter's delivery state."""
        if (meter := self.meter_status) is None:
            return None
        return self.entity_description.value_fn(meter)


class ZevvyReadingSourceEntity(ZevvyMeterEntity, SensorEntity):
    """A meter's reading source; a running total's start value and start."""

    def _data(self) -> Mapping[str, Any]:
        subentry = self.entry.subentries.get(self.subentry_id)
        return subentry.data if subentry is not None else {}

    @property
    def native_value(self) -> str:
        """Return the source's key (translated by the frontend)."""
        return str(self._data().get(CONF_READING_SOURCE, SOURCE_SENSOR))

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Return a running total's start value (kWh) and start."""
        data = self._data()
        if data.get(CONF_READING_SOURCE) != SOURCE_RUNNING_TOTAL:
            return None
        start_at = data.get(CONF_START_AT)
        return {
            "start_value": data.get(CONF_START_VALUE),
            "start": None
            if start_at is None
            else dt_util.utc_from_timestamp(start_at).isoformat(),
        }

    async def async_added_to_hass(self) -> None:
        """Follow the meter's changes (a switched source)."""
        await super().async_added_to_hass()

        @callback
        def _async_changed(change: ConfigEntryChange, entry: ConfigEntry[Any]) -> None:
            if (
                change is ConfigEntryChange.UPDATED
                and entry.entry_id == self.entry.entry_id
                and self.subentry_id in entry.subentries
            ):
                self.async_write_ha_state()

        self.async_on_remove(
            async_dispatcher_connect(
                self.hass, SIGNAL_CONFIG_ENTRY_CHANGED, _async_changed
            )
        )
