"""Sending at the edges: one register refused, batches split, readings zevvy has.

Against the sandbox, driven by the frozen clock like test_delivery (whose
``meters`` fixture the tests use, hence F811).
"""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
import math
from typing import Any
from unittest.mock import patch

from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.zevvy.api import Reading
from custom_components.zevvy.const import BACKOFF_MAX, DOMAIN
from custom_components.zevvy.outbox import Destination, policy as outbox_policy
from custom_components.zevvy.pipeline import ReadingPipeline
from zevvy_sandbox import ZevvySandbox

from .test_delivery import (  # noqa: F401  (meters: the fixture)
    Meters,
    _fix_flow,
    _read_at,
    meters,
)

QUARTER = timedelta(minutes=15)
# Readings of an earlier day, as upload_history or a backlog would queue them.
DAY = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)


def _api_requests(sandbox: ZevvySandbox) -> int:
    counts: dict[str, Any] = sandbox.request_counts()
    return int(counts["by_target"].get("api", 0))


def _readings(count: int, first: int = 0, bad: int | None = None) -> list[Reading]:
    """Quarter-hour readings of DAY, rising; ``bad`` gets an absurd value."""
    return [
        Reading(DAY + i * QUARTER, 1e12 if i == bad else 1000.0 + i * 0.25)
        for i in range(first, first + count)
    ]


async def _queue(pipeline: ReadingPipeline, key: str, readings: list[Reading]) -> None:
    """Queue readings of meter ``key`` the one way into the outbox (no send)."""
    destination = Destination(key, f"Device {key_name(pipeline, key)}", "Energy")
    await pipeline.async_accept([(destination, readings)], send=False)


def key_name(pipeline: ReadingPipeline, key: str) -> str:
    """Return the meter name of a subentry ("Device one - Energy" -> "one")."""
    title = pipeline.config_entry.subentries[key].title
    return title.removeprefix("Device ").removesuffix(" - Energy")


def _stored_times(sandbox: ZevvySandbox, device: str) -> list[str]:
    return sorted(r.read_at for r in sandbox.readings(device))


def _times(readings: list[Reading]) -> list[str]:
    return [_read_at(r.read_at) for r in readings]


# --------------------------------------------------- one register refused (§2)


async def test_one_refused_register_does_not_delay_the_others(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """A register answering 404 is set aside; the others deliver every quarter.

    Its readings are kept, a repair issue names it and zevvy's answer, it is
    retried on its own backoff, and the repair's confirm sends it at once.
    """
    good = [meters.add(name) for name in ("one", "two", "three")]
    bad = meters.add("bad")
    pipeline = await meters.setup()
    sandbox.inject_fault(
        404,
        count=10**6,
        device_ref="Device bad",
        body={"message": "Register not found"},
    )
    for quarter in range(1, 5):  # 12:15 ... 13:00
        tick = datetime(2026, 11, 26, 12, 0, tzinfo=UTC) + quarter * QUARTER
        await meters.advance(tick + timedelta(minutes=1), timedelta(minutes=1))
        # Every good meter has this quarter's reading one minute after it.
        for name in ("one", "two", "three"):
            assert _stored_times(sandbox, f"Device {name}")[-1] == _read_at(tick)
        assert pipeline.coordinator.data.connected
        assert pipeline.coordinator.data.last_error is None
    assert pipeline.coordinator.data.pending == 4  # the refused register's, kept
    assert pipeline.coordinator.data.meters[bad].pending == 4
    assert all(pipeline.coordinator.data.meters[key].pending == 0 for key in good)
    # Set aside for 15 minutes, then 30: not retried at every round.
    attempts = [r for r in sandbox.requests if "Device bad" in r.path]
    assert [r.status for r in attempts] == [404, 404, 404]

    issue_id = f"register_refused_{meters.entry.entry_id}_{bad}"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders == {
        "device": "Device bad",
        "register": "Energy",
        "answer": "HTTP 404: Register not found",
    }

    sandbox.clear_faults()
    result = await _fix_flow(hass, issue_id)
    assert result["type"] is FlowResultType.FORM
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert _stored_times(sandbox, "Device bad") == [
        _read_at(datetime(2026, 11, 26, 12, 15, tzinfo=UTC) + i * QUARTER)
        for i in range(4)
    ]
    assert pipeline.coordinator.data.pending == 0
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_upload_now_sends_a_refused_register_again(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """upload_now ignores a set-aside register's backoff; 403 is per register."""
    meters.add("one")
    bad = meters.add("bad")
    pipeline = await meters.setup()
    sandbox.inject_fault(403, count=1, device_ref="Device bad")
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    assert pipeline.coordinator.data.meters[bad].pending == 1
    assert pipeline.coordinator.data.next_retry is None
    response = await hass.services.async_call(
        DOMAIN, "upload_now", {}, blocking=True, return_response=True
    )
    assert response == {"sent": 1, "waiting": 0, "held": 0, "parked": 0, "rejected": 0}
    assert _stored_times(sandbox, "Device bad") == ["2026-11-26T12:15:00.000Z"]
    issue_id = f"register_refused_{meters.entry.entry_id}_{bad}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_removed_meter_takes_its_refused_issue_along(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """Deleting a set-aside meter deletes its issue; the timer goes on unload."""
    bad = meters.add("bad")
    await meters.setup()
    sandbox.inject_fault(404, count=10**6, device_ref="Device bad")
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    issue_id = f"register_refused_{meters.entry.entry_id}_{bad}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    assert hass.config_entries.async_remove_subentry(meters.entry, bad)
    await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    assert await hass.config_entries.async_unload(meters.entry.entry_id)


# ------------------------------------------------------ batches split (§2)


@pytest.mark.parametrize("status", [400, 422])
async def test_one_bad_reading_is_the_only_one_rejected(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox, status: int
) -> None:
    """A batch refused as a whole for one reading: only that one is set aside."""
    sandbox.configure(max_value=1e9, validation_status=status)
    one = meters.add("one")
    pipeline = await meters.setup()
    # The newest is bad (a bad one in the middle would make the ones after it
    # drops, held back by the outbox).
    readings = _readings(500, bad=499)
    await _queue(pipeline, one, readings)
    sandbox.clear_requests()

    result = await pipeline.async_send_now()
    assert (result.sent, result.pending, result.rejected) == (499, 0, 1)
    assert _stored_times(sandbox, "Device one") == _times(readings[:499])
    # Halving down to the bad reading: about 2 log2(n) requests.
    assert _api_requests(sandbox) <= 2 * math.ceil(math.log2(500)) + 1
    assert pipeline.coordinator.data.connected
    issue_id = f"batch_rejected_{meters.entry.entry_id}_{one}"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["count"] == "1"
    assert "[0].value must be at most" in issue.translation_placeholders["message"]


@pytest.mark.parametrize("status", [400, 422])
async def test_register_refused_with_400_is_set_aside_not_rejected(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox, status: int
) -> None:
    """zevvy answers 400/422 about the register, whatever is sent.

    Every reading on its own gets the batch's answer: that is the register's
    refusal. It is set aside with its readings kept (no rejected readings), in
    about log2(n) + 2 requests instead of 2n - 1; the others keep going.
    """
    one = meters.add("one")
    meters.add("two")
    pipeline = await meters.setup()
    readings = _readings(500)
    await _queue(pipeline, one, readings)
    sandbox.inject_fault(
        status,
        count=10**6,
        device_ref="Device one",
        body={"message": "Register is closed"},
    )
    sandbox.clear_requests()

    result = await pipeline.async_send_now()
    assert (result.pending, result.rejected) == (500, 0)
    attempts = [r for r in sandbox.requests if "Device one" in r.path]
    assert len(attempts) <= math.ceil(math.log2(500)) + 2
    assert pipeline.coordinator.data.connected
    entry_id = meters.entry.entry_id
    registry = ir.async_get(hass)
    assert registry.async_get_issue(DOMAIN, f"batch_rejected_{entry_id}_{one}") is None
    issue = registry.async_get_issue(DOMAIN, f"register_refused_{entry_id}_{one}")
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["answer"] == (
        f"HTTP {status}: Register is closed"
    )

    sandbox.clear_faults()
    result = await pipeline.async_send_now()
    assert (result.sent, result.pending, result.rejected) == (500, 0, 0)
    assert _stored_times(sandbox, "Device one") == _times(readings)


async def test_two_bad_readings_at_both_ends_are_readings_not_the_register(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """The oldest reading is bad, the newest is not: readings, not the register.

    Every half on the way to the oldest reading gets the same answer (it names
    that reading); the newest on its own is taken, so only the oldest is
    rejected.
    """
    sandbox.configure(validation_status=400)
    one = meters.add("one")
    pipeline = await meters.setup()
    readings = _readings(64)
    readings[0] = Reading(readings[0].read_at, -1.0)  # zevvy refuses negatives
    await _queue(pipeline, one, readings)
    sandbox.clear_requests()

    result = await pipeline.async_send_now()
    assert (result.sent, result.pending, result.rejected) == (63, 0, 1)
    assert _stored_times(sandbox, "Device one") == _times(readings[1:])
    assert (
        ir.async_get(hass).async_get_issue(
            DOMAIN, f"register_refused_{meters.entry.entry_id}_{one}"
        )
        is None
    )


async def test_too_large_splits_and_learns_the_batch_size(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """413: the batch is split, and later batches stay within what zevvy took."""
    sandbox.configure(max_batch=100)
    one = meters.add("one")
    pipeline = await meters.setup()
    await _queue(pipeline, one, _readings(500))
    sandbox.clear_requests()

    result = await pipeline.async_send_now()
    assert (result.sent, result.pending, result.error) == (500, 0, None)
    first = [r.status for r in sandbox.requests]
    assert first.count(413) <= 9
    assert _stored_times(sandbox, "Device one") == _times(_readings(500))

    sandbox.clear_requests()
    await _queue(pipeline, one, _readings(500, first=500))
    result = await pipeline.async_send_now()
    assert (result.sent, result.pending) == (500, 0)
    # Batches of the learned size: no more 413.
    statuses = [r.status for r in sandbox.requests]
    assert set(statuses) == {201}
    assert len(statuses) <= 10
    assert len(sandbox.readings()) == 1000


async def test_too_large_for_a_single_reading_sets_the_register_aside(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """A 413 to one reading is about the register: set aside, readings kept."""
    one = meters.add("one")
    pipeline = await meters.setup()
    sandbox.inject_fault(413, count=1)
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    assert pipeline.coordinator.data.meters[one].pending == 1
    assert pipeline.coordinator.data.connected
    assert pipeline.last_error_detail is not None
    assert "413" in pipeline.last_error_detail[1]
    # Retried on its own after REGISTER_BACKOFF_INITIAL (15 min).
    await meters.advance(
        datetime(2026, 11, 26, 12, 31, 30, tzinfo=UTC), timedelta(minutes=1)
    )
    assert pipeline.coordinator.data.pending == 0
    assert len(sandbox.readings()) == 2


# -------------------------------------------- readings zevvy already has (§3)

N = 64


@pytest.mark.parametrize("mode", ["all_or_nothing", "partial"])
@pytest.mark.parametrize(
    ("stored", "details"),
    [(N, True), (N // 2, True), (N // 2, False), (N, False)],
    ids=["all-details", "half-details", "half-nodetails", "all-nodetails"],
)
async def test_resending_what_zevvy_has(
    hass: HomeAssistant,
    meters: Meters,
    sandbox: ZevvySandbox,
    mode: str,
    stored: int,
    details: bool,
) -> None:
    """A batch whose first readings zevvy has (a lost confirmation) is cheap.

    Today's bisection took 2n - 1 requests for a stored batch. Without details,
    only a 409 to a single reading proves zevvy has it (a 409 to several may
    mean it stored none of them), so each reading zevvy has costs one request.
    """
    sandbox.configure(conflict_mode=mode, conflict_details=details)
    one = meters.add("one")
    pipeline = await meters.setup()
    readings = _readings(N)
    await pipeline.client.bulk_create("Device one", "Energy", readings[:stored])
    await _queue(pipeline, one, readings)
    sandbox.clear_requests()

    result = await pipeline.async_send_now()
    assert (result.sent, result.pending, result.error) == (N, 0, None)
    if details:
        # The 409 names what zevvy has: confirm it, send the rest once.
        most = 1 if stored == N else 2
    elif mode == "all_or_nothing":
        # One request per stored reading, one for the first new one, one for
        # the rest.
        most = 1 + min(stored + 2, N)
    else:
        # The first 409 stored the rest; nothing proves it but a single 409
        # per reading.
        most = 1 + N
    assert _api_requests(sandbox) == most
    assert _stored_times(sandbox, "Device one") == _times(readings)


@pytest.mark.parametrize("mode", ["all_or_nothing", "partial"])
@pytest.mark.parametrize("details", [True, False])
@pytest.mark.parametrize(
    "holes",
    [
        [range(10), range(20, 30)],  # gaps between stored readings
        [range(30, 64)],  # new readings before stored ones (a backfill)
        [range(0, 64, 2)],  # every other one
    ],
    ids=["gaps", "new-prefix", "alternating"],
)
async def test_holes_are_never_confirmed_unsent(
    hass: HomeAssistant,
    meters: Meters,
    sandbox: ZevvySandbox,
    mode: str,
    details: bool,
    holes: list[range],
) -> None:
    """Whatever zevvy has, every reading ends up stored once and confirmed."""
    sandbox.configure(conflict_mode=mode, conflict_details=details)
    one = meters.add("one")
    pipeline = await meters.setup()
    readings = _readings(N)
    have = [readings[i] for part in holes for i in part]
    await pipeline.client.bulk_create("Device one", "Energy", have)
    await _queue(pipeline, one, readings)
    sandbox.clear_requests()

    result = await pipeline.async_send_now()
    assert (result.sent, result.pending, result.error) == (N, 0, None)
    stored = [r.read_at for r in sandbox.readings("Device one")]
    assert sorted(stored) == _times(readings)  # each once
    if details:
        assert _api_requests(sandbox) <= 2


@pytest.mark.parametrize("details", [True, False])
async def test_rate_limit_in_the_middle_resumes(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox, details: bool
) -> None:
    """A 429 while resolving a 409 keeps what was confirmed; the retry goes on."""
    sandbox.configure(conflict_details=details)
    one = meters.add("one")
    pipeline = await meters.setup()
    readings = _readings(N)
    await pipeline.client.bulk_create("Device one", "Energy", readings[: N // 2])
    await _queue(pipeline, one, readings)
    sandbox.clear_requests()

    answered = 0

    def changed() -> None:
        nonlocal answered
        answered += 1
        if answered == 1:  # after the first part zevvy answered
            sandbox.inject_fault(429, count=1, retry_after=60)

    unsub = pipeline.outbox.async_add_listener(changed)
    result = await pipeline.async_send_now()
    unsub()
    assert result.error == "rate_limited"
    assert 0 < result.pending < N
    first_round = _api_requests(sandbox)
    assert pipeline.coordinator.data.next_retry is not None

    meters.freezer.move_to(pipeline.coordinator.data.next_retry + timedelta(seconds=1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert pipeline.coordinator.data.pending == 0
    assert pipeline.coordinator.data.connected
    assert _stored_times(sandbox, "Device one") == _times(readings)
    # Resumed, not started over: both rounds together cost about one.
    most = 3 if details else N // 2 + 3
    assert _api_requests(sandbox) <= most + 2
    assert _api_requests(sandbox) - first_round < most


# ----------------------------------------------------------- smaller holes (§7)


async def test_upload_now_during_a_failing_round_leaves_no_retry_timer(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """upload_now succeeds right after a failed round: the next tick sends."""
    meters.add("one")
    pipeline = await meters.setup()
    sandbox.inject_fault(503, count=10**6)
    # An hour of outage: the backoff is at its maximum (30 minutes).
    await meters.advance(
        datetime(2026, 11, 26, 13, 5, tzinfo=UTC), timedelta(minutes=1)
    )
    sandbox.clear_faults()
    # A round that fails slowly, and upload_now while it is under way.
    sandbox.inject_fault(503, count=1, delay=0.5)
    before = _api_requests(sandbox)
    failing = hass.async_create_task(pipeline.async_send())
    for _ in range(10_000):
        if _api_requests(sandbox) > before:
            break
        await asyncio.sleep(0)
    now = hass.async_create_task(pipeline.async_send_now())
    for _ in range(10):
        await asyncio.sleep(0)
    meters.freezer.tick(timedelta(seconds=1))  # the slow answer comes
    result = await now
    await failing
    assert (result.pending, result.error) == (0, None)
    assert pipeline.coordinator.data.connected
    assert pipeline.coordinator.data.next_retry is None

    # The 13:15 reading goes at 13:15, not with a retry timer half an hour on.
    await meters.advance(
        datetime(2026, 11, 26, 13, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    assert _stored_times(sandbox, "Device one")[-1] == "2026-11-26T13:15:00.000Z"
    assert pipeline.coordinator.data.pending == 0
    assert BACKOFF_MAX == 30 * 60


async def test_full_outbox_never_drops_fresh_readings_for_stuck_ones(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """Held readings fill the bound: the oldest go, fresh readings still flow."""
    one = meters.add("one")
    meters.add("two")
    pipeline = await meters.setup()
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    meters.set(one, 500.0)  # below the delivered reading: held from now on
    with patch.object(outbox_policy, "OUTBOX_MAX_READINGS", 3):
        await meters.advance(
            datetime(2026, 11, 26, 14, 1, tzinfo=UTC), timedelta(minutes=1)
        )
    # Meter two: every quarter hour arrived.
    assert _stored_times(sandbox, "Device two") == [
        _read_at(datetime(2026, 11, 26, 12, 15, tzinfo=UTC) + i * QUARTER)
        for i in range(8)
    ]
    # Meter one: only the newest held readings are kept, within the bound
    # (two, and one fresh reading of meter two at each tick).
    assert pipeline.outbox.held_count == 2
    issue = ir.async_get(hass).async_get_issue(
        DOMAIN, f"reading_held_{meters.entry.entry_id}_{one}"
    )
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["count"] == "2"
    assert issue.translation_placeholders["time"] == "2026-11-26T13:45:00+00:00"
    overflow = ir.async_get(hass).async_get_issue(
        DOMAIN, f"outbox_overflow_{meters.entry.entry_id}"
    )
    assert overflow is not None
    assert overflow.translation_placeholders == {"dropped": "5", "limit": "3"}


async def test_full_outbox_drops_rejected_readings_first_when_oldest(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """Rejected readings count too; once all are dropped their issue goes."""
    one = meters.add("one")
    pipeline = await meters.setup()
    sandbox.inject_fault(400, count=2)
    await meters.advance(
        datetime(2026, 11, 26, 12, 31, tzinfo=UTC), timedelta(minutes=1)
    )
    assert pipeline.outbox.rejected_count == 2
    issue_id = f"batch_rejected_{meters.entry.entry_id}_{one}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    with patch.object(outbox_policy, "OUTBOX_MAX_READINGS", 1):
        await meters.advance(
            datetime(2026, 11, 26, 12, 46, tzinfo=UTC), timedelta(minutes=1)
        )
    assert pipeline.outbox.rejected_count == 0
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    assert _stored_times(sandbox, "Device one") == ["2026-11-26T12:45:00.000Z"]
