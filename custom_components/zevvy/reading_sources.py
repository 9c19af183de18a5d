"""Reading sources: where a meter's readings come from, one implementation each.

A meter's subentry names its source (``CONF_READING_SOURCE``); the source is
chosen once per meter here (``ReadingSources.of``) and asked for everything
that makes readings: the quarter-hour tick (``async_readings_at``: readings at
quarter hours, live or owed by a late tick) and the recorder's statistics for
gap fill, ``upload_history`` and a series continued (``statistics_base``). No
module outside the sources branches on the kind of source.

* ``sensor`` (``quarters.SensorValueSource``): the sensor's value as of each
  quarter hour;
* ``running_total`` (``readings.MeterReadings``): what a sensor that restarts
  from zero counted since the meter's start, plus its start value.

A new source is one implementation (a class with the ``ReadingSource``
methods, made with ``(hass, entry, outbox)``), one line in ``SOURCES``, its key
in ``const.py`` and its strings (the option of the ``reading_source``
selector).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, Protocol

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback

from .api import Reading
from .const import SOURCE_RUNNING_TOTAL, SOURCE_SENSOR
from .meters import Meter
from .outbox import Outbox
from .quarters import SensorValueSource
from .readings import MeterReadings


class ReadingSource(Protocol):
    """Where the readings of a kind of meter come from (one per loaded entry)."""

    @callback
    def async_start(self) -> None:
        """Start following what the source needs (the entry was set up)."""

    @callback
    def async_stop(self) -> None:
        """Stop following (the entry unloads)."""

    async def async_readings_at(
        self, meters: Sequence[Meter], quarters: Sequence[datetime]
    ) -> list[tuple[Meter, list[Reading]]]:
        """Return each meter's readings at ``quarters`` (billing unit)."""

    def statistics_base(self, meter: Meter) -> tuple[int, float] | None:
        """Return how the recorder's statistics give the meter's readings.

        None: their ``state`` (the sensor's value); (start, start value): their
        ``sum`` since ``start`` plus the start value (a running total).
        """


type SourceFactory = Callable[[HomeAssistant, ConfigEntry[Any], Outbox], ReadingSource]

# Every reading source by its key (the subentry's ``reading_source``); the
# first is the default. The order is the order of the selector's options.
SOURCES: Final[dict[str, SourceFactory]] = {
    SOURCE_SENSOR: SensorValueSource,
    SOURCE_RUNNING_TOTAL: MeterReadings,
}


class ReadingSources:
    """The reading sources of one loaded entry, and the source of each meter."""

    def __init__(
        self, hass: HomeAssistant, entry: ConfigEntry[Any], outbox: Outbox
    ) -> None:
        """Make one of each source for the entry."""
        self._by_key: dict[str, ReadingSource] = {
            key: make(hass, entry, outbox) for key, make in SOURCES.items()
        }
        self._default = next(iter(self._by_key.values()))

    def of(self, meter: Meter) -> ReadingSource:
        """Return the source of a meter's readings."""
        return self._by_key.get(meter.reading_source, self._default)

    @callback
    def async_start(self) -> None:
        """Start every source."""
        for source in self._by_key.values():
            source.async_start()

    @callback
    def async_stop(self) -> None:
        """Stop every source."""
        for source in self._by_key.values():
            source.async_stop()

    async def async_readings_at(
        self, meters: Sequence[Meter], quarters: Sequence[datetime]
    ) -> list[tuple[Meter, list[Reading]]]:
        """Return every meter's readings at ``quarters``, each from its source."""
        # Grouped by source (as ``of`` chooses, without a call per meter).
        groups: dict[str, list[Meter]] = {key: [] for key in self._by_key}
        group_of, default = groups.get, next(iter(groups.values()))
        for meter in meters:
            group_of(meter.reading_source, default).append(meter)
        found: list[tuple[Meter, list[Reading]]] = []
        for key, source in self._by_key.items():
            if group := groups[key]:
                found += await source.async_readings_at(group, quarters)
        return found
