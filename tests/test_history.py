"""Backfill (zevvy.upload_history) and gap fill from the recorder's statistics.

The recorder runs for real (in-memory SQLite). Statistics are imported into its
hourly and 5-minute tables through the recorder's own import job (the same code
path as ``async_import_statistics``; the 5-minute table is passed explicitly,
which the public helper does not offer). Readings travel to the sandbox over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
import logging
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import Recorder, db_schema
from homeassistant.components.recorder.db_schema import (
    RecorderRuns,
    Statistics,
    StatisticsShortTerm,
)
from homeassistant.components.recorder.models import (
    StatisticData,
    StatisticMeanType,
    StatisticMetaData,
)
from homeassistant.config_entries import ConfigEntryState, ConfigSubentry
from homeassistant.const import (
    EVENT_HOMEASSISTANT_STARTED,
    EVENT_RECORDER_5MIN_STATISTICS_GENERATED,
)
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.helpers.recorder import get_instance, session_scope
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from sqlalchemy import update

from custom_components.zevvy import gap_fill
from custom_components.zevvy.api import Reading
from custom_components.zevvy.const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_REGISTER_REF,
    DOMAIN,
    GAP_FILL_RETRIES,
    SOURCE_RUNNING_TOTAL,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.meters import meter_title, source_data
from custom_components.zevvy.outbox import Destination
from custom_components.zevvy.pipeline import ReadingPipeline
from custom_components.zevvy.services import SERVICE_UPLOAD_HISTORY
from zevvy_sandbox import ZevvySandbox

NOW = datetime(2026, 11, 26, 12, 7, tzinfo=UTC)
# kWh a test meter counts per hour.
RATE = 0.5
BASE = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: Any) -> None:
    """Prepare the recorder's database before hass (recorder_mock needs it)."""


def _value(moment: datetime, offset: float = 1000.0) -> float:
    """The meter reading (kWh) of a test meter at ``moment``."""
    return round(offset + (moment - BASE).total_seconds() / 3600 * RATE, 3)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _add_meter(
    hass: HomeAssistant, entry: MockConfigEntry, name: str, unit: str = "kWh"
) -> tuple[str, str]:
    """Add a meter sensor and its subentry; return (entity id, subentry id)."""
    entity = er.async_get(hass).async_get_or_create(
        "sensor", "test", f"uid_{name}", suggested_object_id=name
    )
    hass.states.async_set(
        entity.entity_id,
        "1",
        {"unit_of_measurement": unit, "state_class": "total_increasing"},
    )
    subentry = ConfigSubentry(
        data={
            CONF_ENTITY_REGISTRY_ID: entity.id,
            CONF_ENTITY_ID: entity.entity_id,
            CONF_DEVICE_REF: f"Device {name}",
            CONF_REGISTER_REF: "Energy",
        },
        subentry_type=SUBENTRY_TYPE_METER,
        title=meter_title(f"Device {name}", "Energy"),
        unique_id=entity.id,
    )
    hass.config_entries.async_add_subentry(entry, subentry)
    return entity.entity_id, subentry.subentry_id


def _rows(
    first: datetime, last: datetime, step: timedelta, value: Any = _value
) -> list[tuple[datetime, float]]:
    """(row start, state) for rows starting at first..last (exclusive).

    A row's state is the reading at the end of its period.
    """
    rows = []
    moment = first
    while moment < last:
        rows.append((moment, value(moment + step)))
        moment += step
    return rows


async def _import(
    hass: HomeAssistant,
    entity_id: str,
    *,
    hourly: Iterable[tuple[datetime, float]] = (),
    short: Iterable[tuple[datetime, float]] = (),
    unit: str = "kWh",
) -> None:
    """Write statistics of an entity into the recorder's tables."""
    metadata = StatisticMetaData(
        has_mean=False,
        mean_type=StatisticMeanType.NONE,
        has_sum=True,
        name=None,
        source="recorder",
        statistic_id=entity_id,
        unit_of_measurement=unit,
    )
    if "unit_class" in StatisticMetaData.__annotations__:
        # Required in newer Home Assistant versions (not in 2025.4).
        metadata["unit_class"] = "energy"  # type: ignore[typeddict-unknown-key]
    instance = get_instance(hass)
    for table, rows in ((Statistics, hourly), (StatisticsShortTerm, short)):
        data = [
            StatisticData(start=start, state=state, sum=state) for start, state in rows
        ]
        if data:
            instance.async_import_statistics(metadata, data, table)
    await async_wait_recording_done(hass)


async def _setup(hass: HomeAssistant, entry: MockConfigEntry) -> ReadingPipeline:
    if entry.entry_id not in {e.entry_id for e in hass.config_entries.async_entries()}:
        entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    pipeline: ReadingPipeline = entry.runtime_data.pipeline
    return pipeline


async def _upload_history(hass: HomeAssistant, **data: Any) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN, SERVICE_UPLOAD_HISTORY, data, blocking=True, return_response=True
    )
    assert isinstance(response, dict)
    return response


def _bulk_requests(sandbox: ZevvySandbox) -> int:
    return sum(1 for r in sandbox.requests if r.path.endswith("_bulk_create"))


async def test_backfill_quarter_hours_then_hours(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """20 days: quarter hours where 5-minute statistics exist, full hours before."""
    freezer.move_to(NOW)
    mock_config_entry.add_to_hass(hass)
    entity_id, _ = _add_meter(hass, mock_config_entry, "a")
    hour = NOW.replace(minute=0)
    short_from = hour - timedelta(days=4)
    # Hourly statistics exist for the whole time (as in a real recorder), the
    # 5-minute ones only for the last 4 days.
    await _import(
        hass,
        entity_id,
        hourly=_rows(hour - timedelta(days=25), hour, timedelta(hours=1)),
        short=_rows(short_from, NOW.replace(minute=5), timedelta(minutes=5)),
    )
    pipeline = await _setup(hass, mock_config_entry)
    start = hour - timedelta(days=20)
    await hass.config.async_set_time_zone("Europe/Zurich")

    response = await _upload_history(
        hass, config_entry_id=mock_config_entry.entry_id, start=start
    )
    # The period, with the offset of Home Assistant's time zone.
    assert (response["start"], response["end"]) == (
        "2026-11-06T13:00:00+01:00",
        "2026-11-26T13:07:00+01:00",
    )

    # Hours up to the end of the first 5-minute row (short_from itself
    # included), quarter hours after it.
    hours = 16 * 24 + 1
    quarters = 4 * 24 * 4
    assert response["no_statistics"] == []
    assert response["meters"][entity_id] == {
        "device_ref": "Device a",
        "register_ref": "Energy",
        "quarter_hour_readings": quarters,
        "hourly_readings": hours,
        "queued": hours + quarters,
        "already_queued": 0,
        "already_delivered": 0,
        "held": 0,
        "dropped": 0,
    }
    assert response["queued"] == hours + quarters
    # The readings-waiting count shows the backlog.
    assert pipeline.coordinator.data.pending == hours + quarters

    await pipeline.async_send()
    readings = sandbox.readings("Device a", "Energy")
    expected = [start + timedelta(hours=i) for i in range(hours)] + [
        short_from + timedelta(minutes=15 * i) for i in range(1, quarters + 1)
    ]
    assert [r.read_at for r in readings] == [_stamp(m) for m in expected]
    assert [r.value for r in readings] == [_value(m) for m in expected]
    assert expected[-1] == hour
    assert pipeline.outbox.pending_count == 0


async def test_backfill_twice_stores_nothing_twice(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A second run resends older readings; zevvy keeps one of each."""
    freezer.move_to(NOW)
    mock_config_entry.add_to_hass(hass)
    entity_id, _ = _add_meter(hass, mock_config_entry, "a")
    hour = NOW.replace(minute=0)
    await _import(
        hass,
        entity_id,
        short=_rows(hour - timedelta(hours=2), hour, timedelta(minutes=5)),
    )
    pipeline = await _setup(hass, mock_config_entry)
    start = hour - timedelta(hours=3)

    # zevvy is down: the readings wait in the outbox.
    sandbox.inject_fault(status=503, count=100)
    first = await _upload_history(hass, start=start, meters=[entity_id])
    assert first["queued"] == 8
    await hass.async_block_till_done()
    assert pipeline.outbox.pending_count == 8
    # Already waiting in the outbox: not queued twice.
    again = await _upload_history(hass, start=start)
    assert again["queued"] == 0
    assert again["meters"][entity_id]["already_queued"] == 8
    sandbox.clear_faults()
    await pipeline.async_send_now()
    stored = sandbox.readings()
    assert len(stored) == 8

    # Delivered: the newest is recognized, the older ones go again and zevvy
    # answers that it has them.
    third = await _upload_history(hass, start=start)
    assert third["meters"][entity_id]["already_delivered"] == 1
    assert third["queued"] == 7
    await hass.async_block_till_done()
    assert sandbox.readings() == stored
    assert pipeline.outbox.pending_count == 0


async def _deliver_one_then_unload(
    hass: HomeAssistant, entry: MockConfigEntry, freezer: FrozenDateTimeFactory
) -> tuple[str, datetime]:
    """Meter "a" delivers its NOW-hour reading, then the entry is unloaded.

    Returns the meter's entity id and the time of its last delivered reading.
    """
    freezer.move_to(NOW)
    entry.add_to_hass(hass)
    entity_id, subentry_id = _add_meter(hass, entry, "a")
    pipeline = await _setup(hass, entry)
    delivered_at = NOW.replace(minute=0)
    await pipeline.outbox.async_add(
        Destination(subentry_id, "Device a", "Energy"),
        [Reading(delivered_at, _value(delivered_at))],
    )
    await pipeline.async_send()
    assert await hass.config_entries.async_unload(entry.entry_id)
    return entity_id, delivered_at


@pytest.mark.parametrize("at_start", [False, True])
async def test_gap_fill_after_outage(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
    monkeypatch: pytest.MonkeyPatch,
    at_start: bool,
) -> None:
    """Three days unloaded: the missed quarter hours arrive after the setup.

    While Home Assistant starts, the gap fill waits until it has started (and
    the recorder compiled what it missed).
    """
    entity_id, delivered_at = await _deliver_one_then_unload(
        hass, mock_config_entry, freezer
    )
    assert len(sandbox.readings()) == 1

    back = NOW + timedelta(days=3)
    freezer.move_to(back)
    await _import(
        hass,
        entity_id,
        short=_rows(
            delivered_at - timedelta(hours=1),
            back.replace(minute=5),
            timedelta(minutes=5),
        ),
    )
    requests = _bulk_requests(sandbox)
    if at_start:
        monkeypatch.setattr(gap_fill, "GAP_FILL_STARTUP_DELAY", 0)
        hass.set_state(CoreState.starting)
        await _setup(hass, mock_config_entry)
        await hass.async_block_till_done()
        assert _bulk_requests(sandbox) == requests
        hass.set_state(CoreState.running)
        hass.bus.async_fire(EVENT_HOMEASSISTANT_STARTED)
    else:
        await _setup(hass, mock_config_entry)
    await hass.async_block_till_done(wait_background_tasks=True)

    quarters = [delivered_at + timedelta(minutes=15 * i) for i in range(3 * 96 + 1)]
    readings = sandbox.readings("Device a", "Energy")
    assert [r.read_at for r in readings] == [_stamp(m) for m in quarters]
    assert [r.value for r in readings] == [_value(m) for m in quarters]
    assert _bulk_requests(sandbox) > requests

    # Idempotent: another setup finds nothing missing and sends nothing.
    requests = _bulk_requests(sandbox)
    assert await hass.config_entries.async_reload(mock_config_entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert _bulk_requests(sandbox) == requests
    assert len(sandbox.readings()) == len(quarters)


def _set_runs(hass: HomeAssistant, stopped: datetime, started: datetime) -> None:
    """Pretend Home Assistant was off from ``stopped`` to ``started``."""
    with session_scope(hass=hass) as session:
        session.execute(
            update(RecorderRuns)
            .where(RecorderRuns.end.is_(None))
            .values(start=started.replace(tzinfo=None))
        )
        session.add(
            RecorderRuns(
                start=(stopped - timedelta(days=1)).replace(tzinfo=None),
                end=stopped.replace(tzinfo=None),
                created=stopped.replace(tzinfo=None),
            )
        )


async def test_gap_fill_skips_home_assistant_downtime(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Statistics of a time Home Assistant was off repeat an old state: not sent."""
    entity_id, delivered_at = await _deliver_one_then_unload(
        hass, mock_config_entry, freezer
    )

    back = NOW + timedelta(days=3)
    freezer.move_to(back)
    stopped = delivered_at + timedelta(hours=1, minutes=2)
    started = back - timedelta(minutes=10)
    await get_instance(hass).async_add_executor_job(_set_runs, hass, stopped, started)
    # What the recorder compiles for the downtime: the last state before it.
    await _import(
        hass,
        entity_id,
        short=_rows(
            delivered_at,
            back.replace(minute=5),
            timedelta(minutes=5),
            lambda m: _value(min(m, stopped)),
        ),
    )
    await _setup(hass, mock_config_entry)
    await hass.async_block_till_done(wait_background_tasks=True)

    # 12:15 .. 13:00 (periods that began before the stop at 13:02), then only
    # 12:00 three days later (its period ended after the start at 11:57).
    expected = [delivered_at + timedelta(minutes=15 * i) for i in range(5)] + [
        back.replace(minute=0)
    ]
    readings = sandbox.readings("Device a", "Energy")
    assert [r.read_at for r in readings] == [_stamp(m) for m in expected]


async def test_gap_fill_skips_a_row_that_ends_after_the_stop(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Home Assistant stops at 13:12: the 5-minute row 13:10-13:15 holds the
    reading of 13:12 (compiled after the start from the last state). It is no
    reading of 13:15: not sent."""
    entity_id, delivered_at = await _deliver_one_then_unload(
        hass, mock_config_entry, freezer
    )
    back = NOW + timedelta(days=3)
    freezer.move_to(back)
    stopped = delivered_at + timedelta(hours=1, minutes=12)
    started = back - timedelta(minutes=10)
    await get_instance(hass).async_add_executor_job(_set_runs, hass, stopped, started)
    await _import(
        hass,
        entity_id,
        short=_rows(
            delivered_at,
            back.replace(minute=5),
            timedelta(minutes=5),
            lambda m: _value(min(m, stopped) if m <= started else m),
        ),
    )
    await _setup(hass, mock_config_entry)
    await hass.async_block_till_done(wait_background_tasks=True)

    expected = [delivered_at + timedelta(minutes=15 * i) for i in range(5)] + [
        back.replace(minute=0)
    ]
    readings = sandbox.readings("Device a", "Energy")
    assert [r.read_at for r in readings] == [_stamp(m) for m in expected]
    assert [r.value for r in readings] == [_value(m) for m in expected]


async def test_backfill_skips_an_hour_that_ends_after_the_stop(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Hourly statistics only; Home Assistant was off from 13:40 to 15:20 five
    days ago. The hour 13:00-14:00 holds the reading of 13:40, 14:00-15:00 the
    same: neither is sent as the reading of 14:00 or 15:00; 16:00 is (its hour
    ends after the start, the states after it are real)."""
    freezer.move_to(NOW)
    mock_config_entry.add_to_hass(hass)
    entity_id, _ = _add_meter(hass, mock_config_entry, "a")
    day = NOW.replace(hour=0, minute=0) - timedelta(days=5)
    stopped = day.replace(hour=13, minute=40)
    started = day.replace(hour=15, minute=20)
    await get_instance(hass).async_add_executor_job(_set_runs, hass, stopped, started)
    await _import(
        hass,
        entity_id,
        hourly=_rows(
            day.replace(hour=11),
            day.replace(hour=17),
            timedelta(hours=1),
            lambda m: _value(min(m, stopped) if m <= started else m),
        ),
    )
    pipeline = await _setup(hass, mock_config_entry)
    await _upload_history(
        hass,
        config_entry_id=mock_config_entry.entry_id,
        start=day.replace(hour=12),
        end=day.replace(hour=17),
    )
    await pipeline.async_send()
    expected = [day.replace(hour=hour) for hour in (12, 13, 16, 17)]
    readings = sandbox.readings("Device a", "Energy")
    assert [r.read_at for r in readings] == [_stamp(m) for m in expected]
    assert [r.value for r in readings] == [_value(m) for m in expected]


async def test_gap_fill_without_recorder_runs_table(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A recorder without its runs table (a future schema) still fills gaps."""
    entity_id, delivered_at = await _deliver_one_then_unload(
        hass, mock_config_entry, freezer
    )

    back = delivered_at + timedelta(hours=2)
    freezer.move_to(back)
    await _import(
        hass,
        entity_id,
        short=_rows(delivered_at, back, timedelta(minutes=5), _value),
    )
    monkeypatch.delattr(db_schema, "RecorderRuns")
    await _setup(hass, mock_config_entry)
    await hass.async_block_till_done(wait_background_tasks=True)

    expected = [delivered_at + timedelta(minutes=15 * i) for i in range(9)]
    readings = sandbox.readings("Device a", "Energy")
    assert [r.read_at for r in readings] == [_stamp(m) for m in expected]
    assert [r.value for r in readings] == [_value(m) for m in expected]


async def test_gap_fill_skips_queued_and_new_meters(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Readings the collector queued are kept; never-delivered meters are left alone."""
    freezer.move_to(NOW)
    mock_config_entry.add_to_hass(hass)
    entity_a, sub_a = _add_meter(hass, mock_config_entry, "a")
    entity_b, _ = _add_meter(hass, mock_config_entry, "b")
    pipeline = await _setup(hass, mock_config_entry)
    t0 = NOW.replace(minute=0) - timedelta(hours=2)
    await pipeline.outbox.async_add(
        Destination(sub_a, "Device a", "Energy"), [Reading(t0, _value(t0))]
    )
    await pipeline.async_send()
    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    # The collector's own reading of 11:00 (slightly different value) waits.
    sandbox.inject_fault(status=503, count=100)
    pipeline = await _setup(hass, mock_config_entry)
    eleven = t0 + timedelta(hours=1)
    collected = _value(eleven) + 0.123
    await pipeline.outbox.async_add(
        Destination(sub_a, "Device a", "Energy"), [Reading(eleven, collected)]
    )
    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    sandbox.clear_faults()

    for entity_id in (entity_a, entity_b):
        await _import(
            hass,
            entity_id,
            short=_rows(t0, NOW.replace(minute=5), timedelta(minutes=5)),
        )
    pipeline = await _setup(hass, mock_config_entry)
    await hass.async_block_till_done(wait_background_tasks=True)

    stamps = {r.read_at: r.value for r in sandbox.readings("Device a", "Energy")}
    assert stamps[_stamp(eleven)] == collected
    assert len(stamps) == 9  # 10:00 .. 12:00
    assert sandbox.readings("Device b", "Energy") == []


async def test_backfill_meter_reset_is_held(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A meter reset inside the period is held back with a repair issue."""
    freezer.move_to(NOW)
    mock_config_entry.add_to_hass(hass)
    entity_id, subentry_id = _add_meter(hass, mock_config_entry, "a")
    hour = NOW.replace(minute=0)
    reset = hour - timedelta(hours=1)

    def value(moment: datetime) -> float:
        # A new meter starts from 0 right after the reset.
        if moment <= reset:
            return _value(moment)
        return round((moment - reset).total_seconds() / 3600 * RATE, 3)

    await _import(
        hass,
        entity_id,
        short=_rows(hour - timedelta(hours=2), hour, timedelta(minutes=5), value),
    )
    pipeline = await _setup(hass, mock_config_entry)

    response = await _upload_history(hass, start=hour - timedelta(hours=2))

    assert response["meters"][entity_id]["queued"] == 4  # 10:15 .. 11:00
    assert response["meters"][entity_id]["held"] == 4  # 11:15 .. 12:00
    issue = ir.async_get(hass).async_get_issue(
        DOMAIN, f"reading_held_{mock_config_entry.entry_id}_{subentry_id}"
    )
    assert issue is not None
    await pipeline.async_send()
    assert [r.read_at for r in sandbox.readings()][-1] == _stamp(reset)
    assert pipeline.outbox.held_count == 4


async def test_backfill_converts_wh_statistics(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Statistics in Wh become kWh readings rounded to Wh."""
    freezer.move_to(NOW)
    mock_config_entry.add_to_hass(hass)
    entity_id, _ = _add_meter(hass, mock_config_entry, "a", unit="Wh")
    hour = NOW.replace(minute=0)
    await _import(
        hass,
        entity_id,
        hourly=[(hour - timedelta(hours=3), 1_234_567.4)],
        short=[(hour - timedelta(minutes=5), 1_235_000.6)],
        unit="Wh",
    )
    pipeline = await _setup(hass, mock_config_entry)

    await _upload_history(hass, start=hour - timedelta(hours=3))
    await pipeline.async_send()

    assert [(r.read_at, r.value) for r in sandbox.readings()] == [
        (_stamp(hour - timedelta(hours=2)), 1234.567),
        (_stamp(hour), 1235.001),
    ]


async def test_backfill_says_when_a_new_running_total_starts(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A running total just added starts at the next quarter hour: the answer
    says when (local time), not that it has no statistics."""
    await hass.config.async_set_time_zone("Europe/Zurich")
    freezer.move_to(NOW)
    mock_config_entry.add_to_hass(hass)
    entity_id, key = _add_meter(hass, mock_config_entry, "charger")
    subentry = mock_config_entry.subentries[key]
    start_at = int((NOW.replace(minute=15)).timestamp())
    hass.config_entries.async_update_subentry(
        mock_config_entry,
        subentry,
        data={
            **subentry.data,
            **source_data(SOURCE_RUNNING_TOTAL, 100.0, start_at),
        },
    )
    await _setup(hass, mock_config_entry)

    response = await _upload_history(hass, start=NOW - timedelta(days=1))

    assert response["no_statistics"] == []
    assert response["meters"] == {}
    assert response["starts_later"] == {entity_id: "2026-11-26T13:15:00+01:00"}
    assert response["queued"] == 0


async def test_backfill_reports_meters_without_statistics(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Meters without (energy) statistics are listed, not an error."""
    freezer.move_to(NOW)
    mock_config_entry.add_to_hass(hass)
    entity_a, _ = _add_meter(hass, mock_config_entry, "a")
    entity_b, _ = _add_meter(hass, mock_config_entry, "b")
    entity_c, _ = _add_meter(hass, mock_config_entry, "c")
    hour = NOW.replace(minute=0)
    await _import(hass, entity_a, short=[(hour - timedelta(minutes=5), 5.0)])
    # Statistics in a unit that is not energy are not meter readings.
    await _import(hass, entity_c, short=[(hour - timedelta(minutes=5), 5.0)], unit="m³")
    await _setup(hass, mock_config_entry)

    response = await _upload_history(hass, start=hour - timedelta(hours=1))

    assert list(response["meters"]) == [entity_a]
    assert response["no_statistics"] == [entity_b, entity_c]
    assert response["starts_later"] == {}
    # Without a response the action still queues.
    await hass.services.async_call(
        DOMAIN,
        SERVICE_UPLOAD_HISTORY,
        {"start": hour - timedelta(hours=1), "meters": entity_a},
        blocking=True,
    )


async def test_upload_history_invalid_calls(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Unknown meters and empty periods are translated errors."""
    freezer.move_to(NOW)
    mock_config_entry.add_to_hass(hass)
    _add_meter(hass, mock_config_entry, "a")
    await _setup(hass, mock_config_entry)

    with pytest.raises(ServiceValidationError) as err:
        await _upload_history(hass, start=NOW - timedelta(days=1), meters=["sensor.x"])
    assert err.value.translation_key == "history_unknown_meter"
    with pytest.raises(ServiceValidationError) as err:
        await _upload_history(hass, start=NOW, end=NOW - timedelta(hours=1))
    assert err.value.translation_key == "history_invalid_period"
    # Named in local time (the tests' default zone: US/Pacific).
    assert err.value.translation_placeholders == {
        "start": "2026-11-26 04:07",
        "end": "2026-11-26 03:07",
    }
    # Local time without a zone (the UI's picker), in the future: empty period.
    with pytest.raises(ServiceValidationError) as err:
        await _upload_history(
            hass, start=(NOW + timedelta(days=1)).replace(tzinfo=None)
        )
    assert err.value.translation_key == "history_invalid_period"


async def test_without_recorder(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No recorder: the setup skips the gap fill, the action explains why not."""
    caplog.set_level(logging.DEBUG, logger="custom_components.zevvy")
    mock_config_entry.add_to_hass(hass)
    _add_meter(hass, mock_config_entry, "a")
    await _setup(hass, mock_config_entry)
    assert "Recorder not loaded: no gap fill" in caplog.text

    with pytest.raises(ServiceValidationError) as err:
        await _upload_history(hass, start=NOW - timedelta(days=1))
    assert err.value.translation_key == "history_no_recorder"
    assert "needs the recorder" in str(err.value)


async def test_backfill_after_live_delivery_holds_a_reset(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A reset inside the backfilled period is held although live delivery ran.

    The meter was replaced at 11:00 and the 12:00 tick delivered the new meter's
    0.5 kWh. The backfill from 10:00 brings the old meter's readings, older but
    higher than the delivered 12:00 one: they are held, not sent.
    """
    hour = NOW.replace(minute=0)
    reset = hour - timedelta(hours=1)

    def value(moment: datetime) -> float:
        if moment <= reset:
            return _value(moment)
        return round((moment - reset).total_seconds() / 3600 * RATE, 3)

    freezer.move_to(hour - timedelta(minutes=2))
    mock_config_entry.add_to_hass(hass)
    entity_id, subentry_id = _add_meter(hass, mock_config_entry, "a")
    hass.states.async_set(
        entity_id,
        str(value(hour)),
        {"unit_of_measurement": "kWh", "state_class": "total_increasing"},
    )
    pipeline = await _setup(hass, mock_config_entry)
    freezer.move_to(hour)
    async_fire_time_changed(hass, hour)
    await hass.async_block_till_done()
    assert [(r.read_at, r.value) for r in sandbox.readings()] == [(_stamp(hour), 0.5)]

    freezer.move_to(NOW)
    await _import(
        hass,
        entity_id,
        short=_rows(hour - timedelta(hours=2), hour, timedelta(minutes=5), value),
    )
    response = await _upload_history(hass, start=hour - timedelta(hours=2))

    assert response["meters"][entity_id]["held"] == 4  # 10:15 .. 11:00
    assert response["meters"][entity_id]["queued"] == 3  # 11:15 .. 11:45
    assert response["meters"][entity_id]["already_delivered"] == 1
    issue = ir.async_get(hass).async_get_issue(
        DOMAIN, f"reading_held_{mock_config_entry.entry_id}_{subentry_id}"
    )
    assert issue is not None
    assert issue.translation_placeholders is not None
    # The drop: from the old meter's 10:15 reading to the new meter's 11:15.
    first_held = hour - timedelta(minutes=105)
    assert issue.translation_placeholders["previous"] == f"{value(first_held):.3f}"
    assert issue.translation_placeholders["value"] == "0.125"
    await pipeline.async_send()
    stored = sorted((r.read_at, r.value) for r in sandbox.readings())
    after_reset = [reset + timedelta(minutes=15 * i) for i in range(1, 5)]
    assert stored == [(_stamp(m), value(m)) for m in after_reset]
    assert pipeline.outbox.held_count == 4


async def test_gap_fill_waits_for_statistics_compiled_late(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Set up again (a new login) before the recorder compiled the statistics.

    The gap fill finds only part of them, and looks again each time the recorder
    says it compiled statistics, until the quarter hours are there (each sent
    once), at most GAP_FILL_RETRIES times.
    """
    caplog.set_level(logging.DEBUG, logger="custom_components.zevvy")
    entity_id, delivered_at = await _deliver_one_then_unload(
        hass, mock_config_entry, freezer
    )
    back = delivered_at + timedelta(hours=2, minutes=1)
    freezer.move_to(back)
    until = back.replace(minute=0)
    # Compiled so far: up to 13:00.
    await _import(
        hass,
        entity_id,
        short=_rows(delivered_at, until - timedelta(hours=1), timedelta(minutes=5)),
    )
    await _setup(hass, mock_config_entry)
    await hass.async_block_till_done(wait_background_tasks=True)
    quarters = [delivered_at + timedelta(minutes=15 * i) for i in range(9)]
    stamps = [r.read_at for r in sandbox.readings("Device a", "Energy")]
    assert stamps == [_stamp(m) for m in quarters[:5]]

    # The recorder compiles the rest and says so.
    await _import(
        hass,
        entity_id,
        short=_rows(until - timedelta(hours=1), until, timedelta(minutes=5)),
    )
    hass.bus.async_fire(EVENT_RECORDER_5MIN_STATISTICS_GENERATED)
    await hass.async_block_till_done(wait_background_tasks=True)

    readings = sandbox.readings("Device a", "Energy")
    assert [r.read_at for r in readings] == [_stamp(m) for m in quarters]
    assert [r.value for r in readings] == [_value(m) for m in quarters]
    # Nothing was sent twice.
    posted = [r for r in sandbox.requests if r.path.endswith("_bulk_create")]
    assert all(r.status == 201 for r in posted)


async def test_gap_fill_gives_up_after_some_compiles(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Statistics that never appear: the gap fill stops looking after a while."""
    caplog.set_level(logging.INFO, logger="custom_components.zevvy")
    entity_id, delivered_at = await _deliver_one_then_unload(
        hass, mock_config_entry, freezer
    )
    back = delivered_at + timedelta(hours=1, minutes=1)
    freezer.move_to(back)
    await _setup(hass, mock_config_entry)
    await hass.async_block_till_done(wait_background_tasks=True)
    for _ in range(GAP_FILL_RETRIES):
        hass.bus.async_fire(EVENT_RECORDER_5MIN_STATISTICS_GENERATED)
        await hass.async_block_till_done(wait_background_tasks=True)
    assert "use the action zevvy.upload_history once it has them" in caplog.text
    # Statistics appearing later are left to the action.
    await _import(
        hass,
        entity_id,
        short=_rows(delivered_at, back, timedelta(minutes=5)),
    )
    hass.bus.async_fire(EVENT_RECORDER_5MIN_STATISTICS_GENERATED)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert len(sandbox.readings()) == 1
