"""Tests for the persisted outbox (Home Assistant Store only, no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
import random
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import EVENT_HOMEASSISTANT_FINAL_WRITE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.zevvy.api import Reading
from custom_components.zevvy.const import DOMAIN
from custom_components.zevvy.issues import async_apply_outbox_report
from custom_components.zevvy.outbox import (
    Destination,
    Outbox,
    Series,
    policy as outbox_policy,
    store as outbox_store,
)
from custom_components.zevvy.outbox.format import NOT_NEWEST, Queue

ENTRY_ID = "entry1"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
QUARTER = timedelta(minutes=15)


def _at(index: int) -> datetime:
    return T0 + index * QUARTER


@pytest.fixture(autouse=True)
def _storage(hass_storage: dict[str, Any]) -> None:
    """Keep the written outbox in hass_storage (the plugin mocks the disk)."""
    global _STORAGE  # noqa: PLW0603
    _STORAGE = hass_storage


_STORAGE: dict[str, Any] = {}


def _outbox(hass: HomeAssistant) -> Outbox:
    """An outbox whose reports become repair issues, as the pipeline has them."""
    box = Outbox(hass, ENTRY_ID)
    box.async_add_reporter(partial(async_apply_outbox_report, hass, ENTRY_ID))
    return box


def _stored(hass: HomeAssistant) -> dict[str, Any]:
    data: dict[str, Any] = _STORAGE[f"{DOMAIN}.{ENTRY_ID}.outbox"]
    return data


async def _reloaded(hass: HomeAssistant) -> Outbox:
    box = _outbox(hass)
    await box.async_load()
    return box


async def test_add_is_on_disk_when_async_add_returns(hass: HomeAssistant) -> None:
    """Readings are written before async_add returns and survive a reload."""
    box = _outbox(hass)
    await box.async_load()
    result = await box.async_add(
        Destination("m1", "Dev", "Reg", step=1),
        [Reading(_at(0), 1.0), Reading(_at(1), 1.23456)],
    )
    assert (result.queued, result.duplicates, result.held) == (2, 0, 0)

    raw = _stored(hass)["data"]["queues"]["m1"]
    assert raw["device"] == "Dev"
    assert raw["pending"] == {
        "t": [int(_at(0).timestamp()), int(_at(1).timestamp())],
        "v": [1.0, 1.235],
        "p": [1, 1],
    }

    again = await _reloaded(hass)
    assert again.pending_count == 2
    batch = again.next_batch("m1", 10)
    assert batch is not None
    assert batch.readings() == [Reading(_at(0), 1.0), Reading(_at(1), 1.235)]


async def test_duplicates_are_not_queued_twice(hass: HomeAssistant) -> None:
    """A (meter, readAt) already pending or delivered is skipped."""
    box = _outbox(hass)
    await box.async_add(Destination("m1", "D", "R"), [Reading(_at(0), 1.0)])
    result = await box.async_add(
        Destination("m1", "D", "R"), [Reading(_at(0), 1.0), Reading(_at(1), 2.0)]
    )
    assert (result.queued, result.duplicates) == (1, 1)
    assert box.pending_count == 2

    batch = box.next_batch("m1", 1)
    assert batch is not None
    box.confirm(batch)
    assert box.last_delivered("m1") == Reading(_at(0), 1.0)
    result = box.add(Destination("m1", "D", "R"), [Reading(_at(0), 1.0)])
    assert result.duplicates == 1
    assert box.pending_count == 1
    await box.async_flush()


async def test_out_of_order_readings_are_sorted(hass: HomeAssistant) -> None:
    """Older readings (backfill) land at their place in time."""
    box = _outbox(hass)
    box.add(
        Destination("m1", "D", "R"),
        [Reading(_at(2), 3.0), Reading(_at(0), 1.0), Reading(_at(1), 2.0)],
    )
    batch = box.next_batch("m1", 10)
    assert batch is not None
    assert [r.value for r in batch.readings()] == [1.0, 2.0, 3.0]
    assert box.keys_with_pending() == ["m1"]


async def test_confirm_removes_and_sets_baseline(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """Confirmed readings leave; the delayed save writes that within a second."""
    box = _outbox(hass)
    await box.async_add(
        Destination("m1", "D", "R"), [Reading(_at(i), float(i)) for i in range(5)]
    )
    batch = box.next_batch("m1", 3)
    assert batch is not None
    assert len(batch) == 3
    # A reading added while the batch is in flight stays.
    box.add(Destination("m1", "D", "R"), [Reading(_at(5), 5.0)])
    box.confirm(batch)
    assert box.pending_count == 3
    assert box.last_delivered("m1") == Reading(_at(2), 2.0)
    assert len(_stored(hass)["data"]["queues"]["m1"]["pending"]["t"]) == 5

    freezer.tick(timedelta(seconds=outbox_store.SAVE_DELAY + 0.1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    raw = _stored(hass)["data"]["queues"]["m1"]
    assert raw["pending"]["v"] == [3.0, 4.0, 5.0]
    assert raw["last"] == [int(_at(2).timestamp()), 2.0]


async def test_flush_writes_delayed_changes(hass: HomeAssistant) -> None:
    """async_flush (on unload) writes what the delayed save has not yet."""
    box = _outbox(hass)
    await box.async_add(Destination("m1", "D", "R"), [Reading(_at(0), 1.0)])
    batch = box.next_batch("m1", 10)
    assert batch is not None
    box.confirm(batch)
    await box.async_flush()
    again = await _reloaded(hass)
    assert again.pending_count == 0
    assert again.last_delivered("m1") == Reading(_at(0), 1.0)


async def test_lower_reading_is_held_and_accepted(hass: HomeAssistant) -> None:
    """A drop is held with a repair issue; accepting queues every held reading."""
    issues = ir.async_get(hass)
    box = _outbox(hass)
    await box.async_add(
        Destination("m1", "Dev", "Reg"),
        [Reading(_at(0), 100.0), Reading(_at(1), 100.0)],
    )
    result = await box.async_add(
        Destination("m1", "Dev", "Reg"), [Reading(_at(2), 0.5)]
    )
    assert (result.queued, result.held) == (0, 1)
    result = await box.async_add(
        Destination("m1", "Dev", "Reg"), [Reading(_at(3), 1.0)]
    )
    assert result.held == 1
    assert box.held_count == 2
    issue = issues.async_get_issue(DOMAIN, f"reading_held_{ENTRY_ID}_m1")
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["count"] == "2"
    assert issue.translation_placeholders["previous"] == "100.000"
    assert issue.translation_placeholders["value"] == "1.000"

    # Held readings survive a restart.
    again = await _reloaded(hass)
    assert again.held_count == 2

    assert await box.async_accept_held("m1") == 2
    assert box.held_count == 0
    assert box.pending_count == 4
    assert issues.async_get_issue(DOMAIN, f"reading_held_{ENTRY_ID}_m1") is None
    # The accepted reading is the new baseline: the next one is normal.
    result = box.add(Destination("m1", "Dev", "Reg"), [Reading(_at(4), 1.5)])
    assert (result.queued, result.held) == (1, 0)


async def test_drop_check_looks_both_ways_with_precision(
    hass: HomeAssistant,
) -> None:
    """Older readings are checked against later ones; less precision is no drop.

    The precision is the one the readings were made with, never their digits.
    """
    box = _outbox(hass)
    await box.async_load()
    tenth = Destination("m1", "Dev", "Reg", step=100)  # kWh with one decimal
    wh = Destination("m1", "Dev", "Reg", step=1)  # a sensor in Wh
    box.add(tenth, [Reading(_at(4), 1234.5)])
    # Older readings in Wh: up to one step (0.1 kWh) above the later one.
    result = box.add(wh, [Reading(_at(3), 1234.567), Reading(_at(2), 1234.4)])
    assert (result.queued, result.held) == (2, 0)

    result = box.add(wh, [Reading(_at(1), 1234.45)])  # 0.05 above a Wh one
    assert (result.queued, result.held) == (0, 1)
    result = box.add(
        tenth,
        [
            Reading(_at(0), 1234.6),  # 0.2 above a Wh one: a drop
            Reading(_at(5), 1234.4),  # same precision, lower: a drop
        ],
    )
    assert (result.queued, result.held) == (0, 2)
    # Whole kWh in Wh's digits: 1235.000 from a Wh sensor, then 1234.2 from it.
    result = box.add(wh, [Reading(_at(6), 1235.0), Reading(_at(7), 1234.2)])
    assert (result.queued, result.held) == (1, 1)
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"reading_held_{ENTRY_ID}_m1")
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["previous"] == "1234.600"
    assert issue.translation_placeholders["value"] == "1234.400"


async def test_outbox_of_an_older_version_loads(
    hass: HomeAssistant, hass_storage: dict[str, Any]
) -> None:
    """An outbox as written before precisions were kept loads and is sent.

    Its readings' precision is not known: they are compared strictly, also
    with new readings of another precision.
    """
    hass_storage[f"{DOMAIN}.{ENTRY_ID}.outbox"] = {
        "version": 1,
        "minor_version": 1,
        "key": f"{DOMAIN}.{ENTRY_ID}.outbox",
        "data": {
            "queues": {
                "m1": {
                    "device": "Dev",
                    "register": "Reg",
                    "last": [int(_at(0).timestamp()), 1235.0],
                    "pending": {
                        "t": [int(_at(2).timestamp()), int(_at(1).timestamp())],
                        "v": [1235.5, 1235.25],
                    },
                    "held": None,
                    "parked": {"t": [int(_at(3).timestamp())], "v": [1.0]},
                    "parked_message": "invalid",
                }
            },
            "overflow_dropped": 3,
            "meter_states": {},
        },
    }
    box = await _reloaded(hass)
    assert (box.pending_count, box.rejected_count) == (2, 1)
    batch = box.next_batch("m1", 10)
    assert batch is not None
    assert batch.readings() == [Reading(_at(1), 1235.25), Reading(_at(2), 1235.5)]
    assert box.last_delivered("m1") == Reading(_at(0), 1235.0)
    # 0.05 below a reading of unknown precision, from a kWh sensor of 1 decimal.
    result = box.add(
        Destination("m1", "Dev", "Reg", step=100), [Reading(_at(4), 1235.45)]
    )
    assert (result.queued, result.held) == (0, 1)
    box.confirm(batch)
    await box.async_save()
    raw = _stored(hass)["data"]["queues"]["m1"]
    assert raw["last"] == [int(_at(2).timestamp()), 1235.5]
    assert raw["last_step"] == 0
    assert raw["parked"] == {"t": [int(_at(3).timestamp())], "v": [1.0], "p": [0]}


async def test_held_readings_can_be_discarded(hass: HomeAssistant) -> None:
    """Discarding drops the held readings; a recovered meter queues normally."""
    box = _outbox(hass)
    box.add(Destination("m1", "D", "R"), [Reading(_at(0), 10.0)])
    batch = box.next_batch("m1", 10)
    assert batch is not None
    box.confirm(batch)
    assert box.add(Destination("m1", "D", "R"), [Reading(_at(1), 0.0)]).held == 1
    # Equal to the baseline is normal, also while a drop is held.
    assert box.add(Destination("m1", "D", "R"), [Reading(_at(2), 10.0)]).queued == 1
    assert await box.async_discard_held("m1") == 1
    assert box.held_count == 0
    assert box.pending_count == 1
    assert await box.async_discard_held("unknown") == 0
    assert await box.async_accept_held("unknown") == 0


async def test_bound_drops_oldest_with_warning_and_issue(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """At OUTBOX_MAX_READINGS the oldest readings of all meters go first."""
    box = _outbox(hass)
    with patch.object(outbox_policy, "OUTBOX_MAX_READINGS", 5):
        box.add(
            Destination("a", "A", "R"), [Reading(_at(i), float(i)) for i in (0, 2, 4)]
        )
        box.add(Destination("b", "B", "R"), [Reading(_at(i), float(i)) for i in (1, 3)])
        result = await box.async_add(
            Destination("b", "B", "R"), [Reading(_at(5), 5.0), Reading(_at(6), 6.0)]
        )
    assert result.dropped == 2
    assert box.pending_count == 5
    batch_a = box.next_batch("a", 10)
    batch_b = box.next_batch("b", 10)
    assert batch_a is not None
    assert batch_b is not None
    assert [r.read_at for r in batch_a.readings()] == [_at(2), _at(4)]
    assert [r.read_at for r in batch_b.readings()] == [_at(3), _at(5), _at(6)]
    assert "outbox is full" in caplog.text
    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"outbox_overflow_{ENTRY_ID}")
    assert issue is not None
    assert issue.translation_placeholders == {"dropped": "2", "limit": "5"}
    assert _stored(hass)["data"]["overflow_dropped"] == 2
    box.acknowledge_overflow()
    await box.async_flush()
    assert _stored(hass)["data"]["overflow_dropped"] == 0


async def test_park_retry_and_discard(hass: HomeAssistant) -> None:
    """Rejected batches are parked with an issue; retry or discard them."""
    issues = ir.async_get(hass)
    box = _outbox(hass)
    box.add(
        Destination("m1", "Dev", "Reg"), [Reading(_at(i), float(i)) for i in range(3)]
    )
    batch = box.next_batch("m1", 2)
    assert batch is not None
    box.reject(batch, "value must not be negative")
    assert (box.pending_count, box.rejected_count) == (1, 2)
    issue = issues.async_get_issue(DOMAIN, f"batch_rejected_{ENTRY_ID}_m1")
    assert issue is not None
    assert issue.translation_placeholders == {
        "device": "Dev",
        "register": "Reg",
        "message": "value must not be negative",
        "count": "2",
    }
    # A parked reading is not queued again.
    assert (
        box.add(Destination("m1", "Dev", "Reg"), [Reading(_at(0), 0.0)]).duplicates == 1
    )
    await box.async_flush()
    again = await _reloaded(hass)
    assert again.rejected_count == 2
    queue = again.views()["m1"]
    assert queue is not None
    assert queue.rejected_message == "value must not be negative"

    assert await box.async_retry_rejected("m1") == 2
    assert (box.pending_count, box.rejected_count) == (3, 0)
    assert issues.async_get_issue(DOMAIN, f"batch_rejected_{ENTRY_ID}_m1") is None
    batch = box.next_batch("m1", 1)
    assert batch is not None
    box.reject(batch, "bad")
    assert await box.async_discard_rejected("m1") == 1
    assert (box.pending_count, box.rejected_count) == (2, 0)
    assert await box.async_retry_rejected("x") == 0
    assert await box.async_discard_rejected("x") == 0


async def test_remove_queue_and_store(hass: HomeAssistant) -> None:
    """A removed meter's readings go; removing the entry deletes the file."""
    box = _outbox(hass)
    changes: list[int] = []
    unsub = box.async_add_listener(lambda: changes.append(1))
    await box.async_add(Destination("m1", "D", "R"), [Reading(_at(0), 1.0)])
    await box.async_add(Destination("m2", "D2", "R"), [Reading(_at(0), 1.0)])
    assert await box.async_remove_queue("m1") == 1
    assert await box.async_remove_queue("m1") == 0
    assert box.keys == ["m2"]
    assert (await _reloaded(hass)).keys == ["m2"]
    assert changes
    unsub()

    assert f"{DOMAIN}.{ENTRY_ID}.outbox" in _STORAGE
    await box.async_remove()
    assert f"{DOMAIN}.{ENTRY_ID}.outbox" not in _STORAGE
    assert box.pending_count == 0


def test_series_remove_non_contiguous() -> None:
    """Removing times that are not one block keeps the others in order."""
    series = Series()
    for when in (1, 2, 3, 4):
        series.insert(when, float(when))
    sent = Series()
    for when in (1, 3):
        sent.insert(when, 0.0)
    assert series.remove_times(sent.times) == 2
    assert series.times.tolist() == [2, 4]
    assert series.values.tolist() == [2.0, 4.0]
    assert Series.from_json({"t": [5, 1], "v": [5, 1]}).times.tolist() == [1, 5]


async def test_delayed_save_is_written_when_home_assistant_stops(
    hass: HomeAssistant,
) -> None:
    """A confirmation waiting for the delayed save is written on final write."""
    box = _outbox(hass)
    await box.async_add(Destination("m1", "D", "R"), [Reading(_at(0), 1.0)])
    batch = box.next_batch("m1", 10)
    assert batch is not None
    box.confirm(batch)
    assert _stored(hass)["data"]["queues"]["m1"]["pending"] is not None

    hass.bus.async_fire(EVENT_HOMEASSISTANT_FINAL_WRITE)
    await hass.async_block_till_done()
    raw = _stored(hass)["data"]["queues"]["m1"]
    assert raw["pending"] is None
    assert raw["last"] == [int(_at(0).timestamp()), 1.0]


@pytest.mark.parametrize("new_series", [False, True])
async def test_a_batch_on_its_way_when_its_meter_changes(
    hass: HomeAssistant, new_series: bool
) -> None:
    """A batch taken before its meter was changed, confirmed after: its readings
    leave the outbox, and the new register gets no baseline from the old one."""
    box = _outbox(hass)
    await box.async_load()
    box.add(
        Destination("m1", "Dev", "Old", 1, "sensor"),
        [Reading(_at(0), 10.0), Reading(_at(1), 11.0)],
    )
    batch = box.next_batch("m1", 10)
    assert batch is not None
    box.follow(
        Destination(
            "m1", "Dev", "New", 1, "running_total@1" if new_series else "sensor"
        )
    )
    views = box.views()
    if new_series:
        assert (views["m1"].pending, views["ref:Dev/Old"].pending) == (0, 2)
    else:
        assert views["m1"].register_ref == "New"
        assert "ref:Dev/Old" not in views
    box.confirm(batch)
    assert box.pending_count == 0
    assert box.last_delivered("m1") is None
    if new_series:
        assert box.last_delivered("ref:Dev/Old") == Reading(_at(1), 11.0)
    # The new register's first reading is not compared with the old series.
    result = box.add(
        Destination(
            "m1", "Dev", "New", 1, "running_total@1" if new_series else "sensor"
        ),
        [Reading(_at(2), 0.0)],
    )
    assert (result.queued, result.held) == (1, 0)


async def test_held_readings_stay_with_the_series_they_were_made_for(
    hass: HomeAssistant,
) -> None:
    """A new series on new names: the old register's held readings and their
    repair go with its waiting readings; a plain rename renames the repair."""
    box = _outbox(hass)
    await box.async_load()
    old = Destination("m1", "Dev", "Old", 1, "sensor")
    box.add(old, [Reading(_at(0), 10.0), Reading(_at(1), 5.0)])
    issues = ir.async_get(hass)
    issue = issues.async_get_issue(DOMAIN, f"reading_held_{ENTRY_ID}_m1")
    assert issue is not None

    box.follow(Destination("m1", "Dev", "Renamed", 1, "sensor"))
    issue = issues.async_get_issue(DOMAIN, f"reading_held_{ENTRY_ID}_m1")
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["register"] == "Renamed"

    box.follow(Destination("m1", "Dev", "New", 1, "running_total@1"))
    assert issues.async_get_issue(DOMAIN, f"reading_held_{ENTRY_ID}_m1") is None
    moved = issues.async_get_issue(DOMAIN, f"reading_held_{ENTRY_ID}_ref:Dev/Renamed")
    assert moved is not None
    assert moved.translation_placeholders is not None
    assert moved.translation_placeholders["register"] == "Renamed"
    assert (box.held_count, box.pending_count) == (1, 1)


async def _assert_counts_as_loaded(hass: HomeAssistant, box: Outbox) -> None:
    """The counts and views kept as the outbox changed are those of the same
    outbox loaded anew (counted from scratch)."""
    await box.async_save()
    again = await _reloaded(hass)
    assert box.views() == again.views()
    assert list(box.views()) == list(again.views())  # in the queues' order
    assert (box.pending_count, box.held_count, box.rejected_count) == (
        again.pending_count,
        again.held_count,
        again.rejected_count,
    )


async def test_counts_and_views_follow_every_change(hass: HomeAssistant) -> None:
    """Every way a queue changes shows in the counts and views at once."""
    box = Outbox(hass, ENTRY_ID)
    await box.async_load()
    a, b = Destination("a", "A", "R", 1, "sensor"), Destination("b", "B", "R", 1)
    assert (box.views(), box.pending_count) == ({}, 0)
    # Queued, a drop held back, a duplicate.
    box.add(a, [Reading(_at(i), 10.0 + i) for i in range(4)])
    box.add(a, [Reading(_at(4), 5.0), Reading(_at(0), 10.0)])
    box.add(b, [Reading(_at(i), 20.0 + i) for i in range(3)])
    assert (box.pending_count, box.held_count) == (7, 1)
    assert box.views()["a"].oldest_pending == _at(0)
    await _assert_counts_as_loaded(hass, box)
    # Confirmed: the baseline moves.
    batch = box.next_batch("b", 2)
    assert batch is not None
    box.confirm(batch)
    assert box.views()["b"].last_delivered_at == _at(1)
    await _assert_counts_as_loaded(hass, box)
    # Rejected, retried, rejected and discarded.
    batch = box.next_batch("a", 2)
    assert batch is not None
    box.reject(batch, "bad")
    assert (box.rejected_count, box.views()["a"].rejected_message) == (2, "bad")
    await _assert_counts_as_loaded(hass, box)
    assert await box.async_retry_rejected("a") == 2
    await _assert_counts_as_loaded(hass, box)
    batch = box.next_batch("a", 1)
    assert batch is not None
    box.reject(batch, "worse")
    assert await box.async_discard_rejected("a") == 1
    assert box.views()["a"].rejected_message is None
    await _assert_counts_as_loaded(hass, box)
    # The held drop accepted.
    assert await box.async_accept_held("a") == 1
    assert box.held_count == 0
    await _assert_counts_as_loaded(hass, box)
    # Renamed, then a new reading source: the readings move to the old names.
    box.follow(Destination("a", "A2", "R", 1, "sensor"))
    assert box.views()["a"].device_ref == "A2"
    await _assert_counts_as_loaded(hass, box)
    box.follow(Destination("a", "A3", "R", 1, "running_total@1"))
    assert (box.views()["a"].pending, box.views()["ref:A2/R"].pending) == (0, 4)
    await _assert_counts_as_loaded(hass, box)
    # The bound drops the oldest readings, here a rejected one too.
    batch = box.next_batch("b", 1)
    assert batch is not None
    box.reject(batch, "gone")
    with patch.object(outbox_policy, "OUTBOX_MAX_READINGS", 4):
        assert box.add(b, [Reading(_at(5), 30.0)]).dropped == 2
    assert (box.pending_count, box.rejected_count) == (4, 0)
    assert box.views()["b"].rejected_message is None
    await _assert_counts_as_loaded(hass, box)
    # A meter removed, and the outbox loaded again.
    assert await box.async_remove_queue("b") == 1
    assert "b" not in box.views()
    await _assert_counts_as_loaded(hass, box)
    await box.async_load()
    await _assert_counts_as_loaded(hass, box)
    assert box.pending_count == 3
    await box.async_remove()
    assert (box.views(), box.pending_count) == ({}, 0)


def test_newest_reading_takes_the_short_way_to_the_same_answer() -> None:
    """A reading after all a queue keeps (a tick's) is checked the short way:
    the same neighbour and duplicate answers as the general check, for queues
    of every shape (pending, held, rejected, last sent, at the same times)."""
    rng = random.Random(20)  # noqa: S311 - a fixed seed, not a secret
    for _ in range(2000):
        queue = Queue("Dev", "Reg")
        times = sorted(rng.sample(range(1, 40), rng.randint(0, 12)))
        for when in times:
            series = rng.choice((queue.pending, queue.pending, queue.held))
            series.insert(when * 900, rng.uniform(0, 10), rng.choice((0, 1, 100)))
        if rng.random() < 0.3:
            queue.rejected.insert(rng.randint(1, 45) * 900, 1.0)
        if rng.random() < 0.6:
            queue.last_time = rng.randint(1, 45) * 900
            queue.last_value = rng.uniform(0, 10)
            queue.last_step = rng.choice((0, 1, 100))
        for when in range(0, 50 * 900, 450):
            newest_neighbour = queue.newest_neighbour_of(when)
            if newest_neighbour is not NOT_NEWEST:
                assert not queue.contains(when)
                before, after = queue.neighbours(when)
                assert (newest_neighbour, after) == (before, None)
            else:
                kept = [*queue.pending.times, *queue.held.times, *queue.rejected.times]
                assert any(when <= t for t in [*kept, queue.last_time or -1])
