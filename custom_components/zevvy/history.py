"""Meter readings from the recorder's statistics, for backfill and gap fill.

The recorder keeps, per meter sensor (energy, water, gas), 5-minute statistics for ``keep_days``
(10 days by default) and hourly statistics for ever. A statistics row covers
``[start, start + period)``; its ``state`` is the last state within that
period, so it is the meter reading at the *end* of the period. Readings are
therefore dated ``start + period``: the 5-minute row ending on a quarter hour
gives that quarter hour's reading, an hourly row gives the reading of the full
hour it ends on.

* Backfill (the ``zevvy.upload_history`` action in services.py): for a period
  and some or all meters, queue quarter-hour readings where 5-minute statistics
  exist and hourly readings from the long-term statistics before that.
  Readings older than a
  meter's last delivered reading are queued too: the integration only remembers
  the newest reading zevvy confirmed, not which older ones it has, and zevvy
  answers "already present" (409) for those it has, so nothing is stored twice.
* Gap fill (gap_fill.py): when the entry is set up (start-up, reload, after a
  new login), the quarter hours after each meter's last delivered reading that
  the collector missed are queued from the 5-minute statistics.

The meter's reading source (``reading_sources.py``) says which statistics give
its readings. A running total (``running_total.py``) reads the statistics'
``sum`` instead of their ``state``: its reading at Q is its start
value + sum(Q) - sum(at its start), the same number the live tracker computes,
and none before its start.

Statistics of a time Home Assistant was off (between two recorder runs) are
left out: the recorder compiles them at the next start from the last state it
had, so they repeat the reading from before the stop. That includes a row that
only began before the stop (its end, the time its reading would be filed
under, lies in the gap).

This module only reads: ``async_read_meter`` returns a meter's readings, and
whoever asked hands them to the reading pipeline (``ReadingPipeline.async_accept``)
like live readings, then counts what happened (``MeterResult.count``): readings
already pending are not queued twice, and a drop against the readings beside it
in time (pending or the last delivered one, before or after it) is held back
with a repair issue (a meter reset inside the period) instead of being sent.

Recorder queries run in the recorder's executor, one meter at a time; the
pipeline adds the readings to the outbox in chunks so that a large backfill
never blocks the event loop for long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
import math
from typing import Any, Final, Literal

from homeassistant.components.recorder.models import process_timestamp
from homeassistant.components.recorder.statistics import (
    get_metadata,
    statistics_during_period,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.recorder import get_instance, session_scope
from homeassistant.util import dt as dt_util
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .api import Reading
from .const import LOGGER
from .meters import KINDS, Meter, MeterKind, resolve_meters, to_reading
from .outbox import AddResult, Destination
from .quarters import is_quarter_epoch, recorder_loaded
from .runtime import ZevvyConfigEntry

# Readings handed to the outbox between two yields to the event loop.
SHORT_TERM_PERIOD: Final = timedelta(minutes=5)
LONG_TERM_PERIOD: Final = timedelta(hours=1)


def _units(kind: MeterKind) -> dict[str, str]:
    """Return the recorder's unit conversion to the kind's billing unit."""
    spec = KINDS[kind]
    return {spec.converter.UNIT_CLASS: spec.billing_unit}


type _Type = Literal["change", "last_reset", "max", "mean", "min", "state", "sum"]
type _Period = Literal["5minute", "day", "hour", "week", "month"]


@dataclass(slots=True)
class Statistics:
    """Readings of one meter found in the recorder."""

    found: bool = False  # the entity has statistics of the meter's kind at all
    quarter_hours: list[Reading] = field(default_factory=list)
    hours: list[Reading] = field(default_factory=list)
    # End of the newest 5-minute row: how far the recorder has compiled them.
    compiled_until: datetime | None = None


@dataclass(slots=True)
class MeterResult:
    """What happened to one meter's history."""

    meter: Meter
    found: bool = False
    quarter_hours: int = 0
    hours: int = 0
    queued: int = 0
    already_queued: int = 0
    already_delivered: int = 0
    held: int = 0
    compiled_until: datetime | None = None
    # The readings to queue, and the last one zevvy had when they were read.
    readings: list[Reading] = field(default_factory=list, repr=False)
    last: Reading | None = field(default=None, repr=False)

    def item(self) -> tuple[Destination, list[Reading]]:
        """Return the readings to queue with their destination."""
        return Destination.for_meter(self.meter), self.readings

    def count(self, added: AddResult) -> None:
        """Count what the outbox did with the readings (``AddResult``)."""
        self.queued = added.queued
        self.held = added.held
        # The outbox counts the last delivered reading as a duplicate too.
        last = self.last
        delivered_again = sum(
            1 for reading in self.readings if last and reading.read_at == last.read_at
        )
        self.already_delivered += delivered_again
        self.already_queued = added.duplicates - delivered_again

    def as_dict(self) -> dict[str, Any]:
        """Return the action's answer for this meter."""
        return {
            "device_ref": self.meter.device_ref,
            "register_ref": self.meter.register_ref,
            "quarter_hour_readings": self.quarter_hours,
            "hourly_readings": self.hours,
            "queued": self.queued,
            "already_queued": self.already_queued,
            "already_delivered": self.already_delivered,
            "held": self.held,
        }


# --- reading the recorder (runs in the recorder's executor) ----------------------


def recorder_gaps(hass: HomeAssistant) -> list[tuple[float, float]]:
    """Return the times (epoch) between the recorder's runs: Home Assistant was off.

    For such a time the recorder compiles statistics at the next start from the
    last state it had, so they repeat the reading from before the stop: they are
    not meter readings of that time. Runs older than the recorder keeps are
    unknown (nothing is excluded there). Must run in the recorder's executor.
    """
    try:
        # The recorder's own table of runs: an internal of the recorder, so a
        # future schema without it only costs the downtime detection.
        from homeassistant.components.recorder.db_schema import (
            RecorderRuns,
        )

        with session_scope(hass=hass, read_only=True) as session:
            runs = session.execute(
                select(RecorderRuns.start, RecorderRuns.end).order_by(
                    RecorderRuns.start
                )
            ).all()
    except (ImportError, SQLAlchemyError):
        LOGGER.debug("Recorder runs unavailable; not excluding downtime")
        return []
    gaps: list[tuple[float, float]] = []
    covered: float | None = None
    for run_start, run_end in runs:
        start = process_timestamp(run_start).timestamp()
        if covered is not None and start > covered:
            gaps.append((covered, start))
        end = math.inf if run_end is None else process_timestamp(run_end).timestamp()
        covered = end if covered is None else max(covered, end)
    return gaps


def _readings_from_rows(
    rows: Sequence[Any],
    first: int,
    last: int,
    gaps: Sequence[tuple[float, float]] = (),
    offset: float | None = None,
    kind: MeterKind = MeterKind.ENERGY,
) -> list[Reading]:
    """Return readings of the quarter-hour rows ending within [first, last].

    A reading is dated at the end of its row's period. Rows whose period ends
    in a gap between recorder runs are left out: their state is the last one
    before the stop, no reading of that end (a row that began in a gap and ends
    after the start holds the states after it). With ``offset`` (a running
    total) the reading is the row's ``sum`` plus ``offset``.
    """
    readings: list[Reading] = []
    for row in rows:
        end = int(row["end"])
        if end < first or end > last or not is_quarter_epoch(end):
            continue
        if any(gap_start < end <= gap_end for gap_start, gap_end in gaps):
            continue
        value = row.get("state") if offset is None else row.get("sum")
        if value is not None and offset is not None:
            value += offset
        # Already in the billing unit (the recorder converted it): to_reading
        # checks and rounds.
        unit = KINDS[kind].billing_unit
        reading = None if value is None else to_reading(float(value), unit, kind)
        if reading is not None:
            readings.append(Reading(dt_util.utc_from_timestamp(end), reading))
    return readings


def _sum_at(
    hass: HomeAssistant,
    statistic_id: str,
    moment: datetime,
    kind: MeterKind = MeterKind.ENERGY,
) -> float | None:
    """Return the statistics' ``sum`` (kWh, m³) at ``moment``: of the row ending
    then."""
    periods: tuple[tuple[_Period, timedelta], ...] = (
        ("5minute", SHORT_TERM_PERIOD),
        ("hour", LONG_TERM_PERIOD),
    )
    for period, length in periods:
        rows = statistics_during_period(
            hass,
            moment - length,
            moment,
            {statistic_id},
            period,
            _units(kind),
            {"sum"},
        ).get(statistic_id, [])
        for row in rows:
            value = row.get("sum")
            if int(row["end"]) == int(moment.timestamp()) and value is not None:
                return float(value)
    return None


def read_statistics(
    hass: HomeAssistant,
    statistic_id: str,
    start: datetime,
    end: datetime,
    hourly: bool,
    running: tuple[int, float] | None = None,
    kind: MeterKind = MeterKind.ENERGY,
) -> Statistics:
    """Return a meter's readings in [start, end] from the recorder's statistics.

    Quarter hours come from the 5-minute statistics; with ``hourly``, full hours
    before the first 5-minute row come from the long-term statistics. Values
    are converted from the statistic's unit to the kind's billing unit (kWh,
    m³) by the recorder (Home Assistant's unit converter of the kind); a
    statistic in a unit of another kind has no readings. ``running``: (start,
    start value) of a running total. Must run in the recorder's executor.
    """
    result = Statistics()
    metadata = get_metadata(hass, statistic_ids={statistic_id})
    if statistic_id not in metadata:
        return result
    if metadata[statistic_id][1]["unit_of_measurement"] not in KINDS[kind].units:
        return result
    first, last = int(start.timestamp()), int(end.timestamp())
    offset: float | None = None
    types: set[_Type] = {"state"}
    if running is not None:
        start_at, start_value = running
        anchor = _sum_at(hass, statistic_id, dt_util.utc_from_timestamp(start_at), kind)
        if anchor is None:
            LOGGER.warning(
                "No statistics of %s at its start (%s): no history for its "
                "running total",
                statistic_id,
                dt_util.utc_from_timestamp(start_at).isoformat(),
            )
            return result
        offset, types = start_value - anchor, {"sum"}
        first = max(first, start_at)
    short = statistics_during_period(
        hass,
        start - SHORT_TERM_PERIOD,
        end,
        {statistic_id},
        "5minute",
        _units(kind),
        types,
    ).get(statistic_id, [])
    gaps = recorder_gaps(hass)
    result.quarter_hours = _readings_from_rows(short, first, last, gaps, offset, kind)
    result.found = bool(short)
    if short:
        result.compiled_until = dt_util.utc_from_timestamp(int(short[-1]["end"]))
    if not hourly:
        return result
    # Long-term statistics only before the short-term ones begin.
    long_last = last
    if short:
        long_last = min(last, int(short[0]["end"]) - 1)
    if long_last >= first:
        long = statistics_during_period(
            hass,
            start - LONG_TERM_PERIOD,
            dt_util.utc_from_timestamp(long_last),
            {statistic_id},
            "hour",
            _units(kind),
            types,
        ).get(statistic_id, [])
        result.hours = _readings_from_rows(long, first, long_last, gaps, offset, kind)
        result.found = result.found or bool(long)
    return result


# --- queueing -------------------------------------------------------------------


async def async_read_meter(
    hass: HomeAssistant,
    entry: ZevvyConfigEntry,
    meter: Meter,
    start: datetime,
    end: datetime,
    *,
    hourly: bool,
    after: datetime | None = None,
) -> MeterResult:
    """Return one meter's readings in [start, end] from statistics.

    Readings at or before ``after`` are counted as already delivered and left
    out (gap fill); the action passes None and sends them again. Nothing is
    queued here: hand ``result.item()`` to the pipeline, then ``count`` it.
    """
    # The meter's source says how the statistics give its readings.
    running = entry.runtime_data.pipeline.sources.of(meter).statistics_base(meter)
    found = await get_instance(hass).async_add_executor_job(
        read_statistics,
        hass,
        meter.entity_id,
        start,
        end,
        hourly,
        running,
        meter.kind,
    )
    result = MeterResult(
        meter,
        found=found.found,
        quarter_hours=len(found.quarter_hours),
        hours=len(found.hours),
        compiled_until=found.compiled_until,
    )
    readings = found.hours + found.quarter_hours
    result.last = entry.runtime_data.outbox.last_delivered(meter.subentry_id)
    if after is not None:
        kept = [reading for reading in readings if reading.read_at > after]
        result.already_delivered = len(readings) - len(kept)
        readings = kept
    result.readings = readings
    return result


async def async_fill_since(
    hass: HomeAssistant, entry: ZevvyConfigEntry, key: str, since: datetime
) -> None:
    """Queue a meter's quarter hours after ``since`` from the 5-minute statistics.

    After a meter switched to a running total that continues at ``since``.
    """
    meter = next((m for m in resolve_meters(hass, entry) if m.subentry_id == key), None)
    if meter is None or not recorder_loaded(hass):
        return
    result = await async_read_meter(
        hass, entry, meter, since, dt_util.utcnow(), hourly=False, after=since
    )
    result.count(await entry.runtime_data.pipeline.async_accept([result.item()]))
    log_result("Running total since " + since.isoformat(), [result])


def log_result(kind: str, results: Sequence[MeterResult]) -> None:
    queued = sum(result.queued for result in results)
    held = sum(result.held for result in results)
    LOGGER.info(
        "%s: %s readings queued for %s meters (%s held back as drops, "
        "%s already queued, %s already delivered); meters without statistics: %s",
        kind,
        queued,
        len(results),
        held,
        sum(result.already_queued for result in results),
        sum(result.already_delivered for result in results),
        ", ".join(r.meter.entity_id for r in results if not r.found) or "none",
    )
