"""Collector and sender against the sandbox, driven by the (frozen) clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
import logging
from typing import Any
from unittest.mock import patch

import aiohttp
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.config_entries import (
    SOURCE_REAUTH,
    ConfigEntryState,
    ConfigSubentry,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.zevvy import (
    delivery as delivery_module,
    repairs as repairs_module,
)
from custom_components.zevvy.api import Reading, ZevvyAuth
from custom_components.zevvy.const import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_REGISTER_REF,
    DOMAIN,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.outbox import policy as outbox_policy
from custom_components.zevvy.pipeline import ReadingPipeline
from custom_components.zevvy.quarters import next_quarter
from zevvy_sandbox import ZevvySandbox

START = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)


def _read_at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Meters:
    """Sensors (Wh) mapped to zevvy registers, and the clock that drives them."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: MockConfigEntry,
        freezer: FrozenDateTimeFactory,
        sandbox: ZevvySandbox,
    ) -> None:
        """Keep what the helpers need."""
        self.hass = hass
        self.entry = entry
        self.freezer = freezer
        self.sandbox = sandbox
        self.entity_ids: dict[str, str] = {}  # subentry id -> entity id
        self.wh: dict[str, float] = {}

    def add(self, name: str, wh: float = 1_000_000.0) -> str:
        """Add a meter sensor and its subentry; return the subentry id."""
        registry = er.async_get(self.hass)
        entity = registry.async_get_or_create(
            "sensor", "test", f"uid_{name}", suggested_object_id=name
        )
        subentry = ConfigSubentry(
            data={
                CONF_ENTITY_REGISTRY_ID: entity.id,
                CONF_ENTITY_ID: entity.entity_id,
                CONF_DEVICE_REF: f"Device {name}",
                CONF_REGISTER_REF: "Energy",
            },
            subentry_type=SUBENTRY_TYPE_METER,
            title=f"Device {name} - Energy",
            unique_id=entity.id,
        )
        self.hass.config_entries.async_add_subentry(self.entry, subentry)
        self.entity_ids[subentry.subentry_id] = entity.entity_id
        self.set(subentry.subentry_id, wh)
        return subentry.subentry_id

    def set(self, subentry_id: str, wh: float | str) -> None:
        """Set a meter's state in Wh."""
        if isinstance(wh, float):
            self.wh[subentry_id] = wh
        self.hass.states.async_set(
            self.entity_ids[subentry_id],
            str(wh),
            {"unit_of_measurement": "Wh", "state_class": "total_increasing"},
        )

    def grow(self, wh: float = 250.0) -> None:
        """Let every meter count up."""
        for subentry_id in self.entity_ids:
            self.set(subentry_id, self.wh[subentry_id] + wh)

    async def advance(
        self, until: datetime, step: timedelta, grow: bool = True
    ) -> None:
        """Move the clock in steps, firing timers; meters count between ticks."""
        now = datetime.now(UTC)
        while now < until:
            now = min(now + step, until)
            if grow and now.minute % 15 == 14:
                self.grow()
            self.freezer.move_to(now)
            async_fire_time_changed(self.hass)
            await self.hass.async_block_till_done()

    async def setup(self) -> ReadingPipeline:
        """Set up the entry; return its pipeline."""
        if self.entry.state is ConfigEntryState.NOT_LOADED and (
            self.entry.entry_id
            not in {e.entry_id for e in self.hass.config_entries.async_entries()}
        ):
            self.entry.add_to_hass(self.hass)
        assert await self.hass.config_entries.async_setup(self.entry.entry_id)
        await self.hass.async_block_till_done()
        assert self.entry.state is ConfigEntryState.LOADED
        pipeline: ReadingPipeline = self.entry.runtime_data.pipeline
        return pipeline


@pytest.fixture
def relogin(
    sandbox: ZevvySandbox, freezer: FrozenDateTimeFactory
) -> Callable[[], Awaitable[str]]:
    """Log in again through the device flow; return the new refresh token.

    The clock is frozen, so instead of waiting for the polling interval the
    clock moves past it and the token is polled once.
    """

    async def login() -> str:
        config = sandbox.config
        async with aiohttp.ClientSession() as session:
            auth = ZevvyAuth(
                session, config.client_id, config.client_secret, sandbox.issuer
            )
            authorization = await auth.request_device_authorization()
            sandbox.approve(authorization.user_code)
            freezer.tick(timedelta(seconds=1))
            tokens = await auth.poll_token(authorization.device_code)
        return tokens.refresh_token

    return login


@pytest.fixture
async def meters(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
    sandbox: ZevvySandbox,
) -> Meters:
    """An entry (not yet set up) with the clock at 12:05 UTC."""
    freezer.move_to(START)
    mock_config_entry.add_to_hass(hass)
    return Meters(hass, mock_config_entry, freezer, sandbox)


async def test_ticks_on_quarter_hours_only(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """Readings are taken at :00/:15/:30/:45 only, readAt the quarter, in kWh."""
    one = meters.add("one", 1_234_567.0)
    two = meters.add("two", 5.0)
    pipeline = await meters.setup()
    assert pipeline.coordinator.data.pending == 0

    await meters.advance(
        START + timedelta(minutes=9, seconds=59), timedelta(minutes=1), grow=False
    )
    assert sandbox.readings() == []
    await meters.advance(
        START + timedelta(minutes=10), timedelta(minutes=1), grow=False
    )
    stored = sandbox.readings("Device one", "Energy")
    assert [(r.read_at, r.value) for r in stored] == [
        ("2026-11-26T12:15:00.000Z", 1234.567)
    ]
    assert [(r.read_at, r.value) for r in sandbox.readings("Device two")] == [
        ("2026-11-26T12:15:00.000Z", 0.005)
    ]

    meters.set(one, 1_235_000.0)
    meters.set(two, "unavailable")
    await meters.advance(
        START + timedelta(minutes=39), timedelta(minutes=1), grow=False
    )
    assert [(r.read_at, r.value) for r in sandbox.readings("Device one")] == [
        ("2026-11-26T12:15:00.000Z", 1234.567),
        ("2026-11-26T12:30:00.000Z", 1235.0),
    ]
    # Unavailable: no reading, never a 0.
    assert len(sandbox.readings("Device two")) == 1
    # One request per register and tick.
    assert len([r for r in sandbox.requests if r.path.endswith("_bulk_create")]) == 3

    status = pipeline.coordinator.data
    assert status.connected
    assert status.pending == 0
    assert status.last_success == datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
    assert status.meters[one].last_delivered_at == datetime(
        2026, 11, 26, 12, 30, tzinfo=UTC
    )
    assert status.meters[one].last_delivered_value == 1235.0
    assert next_quarter(datetime(2026, 11, 26, 12, 45, tzinfo=UTC)) == datetime(
        2026, 11, 26, 13, 0, tzinfo=UTC
    )


def _bulk_requests(sandbox: ZevvySandbox) -> list[int]:
    return [r.status for r in sandbox.requests if r.path.endswith("_bulk_create")]


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503},
        {"status": None, "drop": True},
        {"status": 429, "retry_after": 90},
    ],
    ids=["503", "dropped_connection", "429"],
)
async def test_two_hour_outage_delivers_everything_once_in_order(
    hass: HomeAssistant,
    meters: Meters,
    sandbox: ZevvySandbox,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, Any],
) -> None:
    """zevvy down for two hours: every reading arrives afterwards, once, in order."""
    caplog.set_level(logging.INFO, logger="custom_components.zevvy")
    one = meters.add("one")
    meters.add("two")
    pipeline = await meters.setup()
    sandbox.inject_fault(count=100_000, **fault)

    # 12:15 ... 14:15: nine quarter hours while zevvy is down.
    outage_end = datetime(2026, 11, 26, 14, 16, tzinfo=UTC)
    await meters.advance(outage_end, timedelta(minutes=1))
    assert sandbox.readings() == []
    assert pipeline.coordinator.data.pending == 18
    assert not pipeline.coordinator.data.connected
    assert pipeline.coordinator.data.last_error in {"unreachable", "rate_limited"}
    assert pipeline.coordinator.data.meters[one].pending == 9
    # Backoff: about ten attempts per register in 120 minutes, not 120.
    attempts = [r for r in sandbox.requests if "Device one" in r.path]
    assert 5 <= len(attempts) <= 12

    sandbox.clear_faults()
    await meters.advance(
        outage_end + timedelta(seconds=BACKOFF_MAX + 60), timedelta(minutes=1)
    )
    expected = [
        _read_at(datetime(2026, 11, 26, 12, 15, tzinfo=UTC) + i * timedelta(minutes=15))
        for i in range(9 + 2)  # the outage, then 14:30 and 14:45
    ]
    for name in ("one", "two"):
        stored = sandbox.readings(f"Device {name}")
        assert [r.read_at for r in stored] == expected
        values = [r.value for r in stored]
        assert values == sorted(values)
    assert pipeline.coordinator.data.pending == 0
    assert pipeline.coordinator.data.connected
    assert pipeline.coordinator.data.last_error is None
    unreachable = [r for r in caplog.records if "zevvy is unreachable" in r.message]
    back = [r for r in caplog.records if "zevvy is reachable again" in r.message]
    assert len(unreachable) == 1
    assert unreachable[0].levelno == logging.WARNING
    assert len(back) == 1
    assert back[0].levelno == logging.INFO


async def test_retry_after_is_honoured(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """A 429 with Retry-After waits that long, not the shorter backoff."""
    meters.add("one")
    pipeline = await meters.setup()
    sandbox.inject_fault(status=429, retry_after=300, count=1)
    tick = datetime(2026, 11, 26, 12, 15, tzinfo=UTC)
    await meters.advance(tick, timedelta(minutes=10), grow=False)
    assert pipeline.coordinator.data.next_retry == tick + timedelta(seconds=300)
    await meters.advance(
        tick + timedelta(seconds=299), timedelta(seconds=BACKOFF_INITIAL), grow=False
    )
    assert sandbox.readings() == []
    assert _bulk_requests(sandbox) == [429]
    await meters.advance(
        tick + timedelta(seconds=301), timedelta(seconds=2), grow=False
    )
    assert [r.read_at for r in sandbox.readings()] == [_read_at(tick)]
    assert _bulk_requests(sandbox) == [429, 201]


async def test_backoff_doubles_up_to_the_maximum(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """Retries come after BACKOFF_INITIAL, doubling, capped at BACKOFF_MAX."""
    meters.add("one")
    pipeline = await meters.setup()
    sandbox.inject_fault(status=503, count=100_000)
    tick = datetime(2026, 11, 26, 12, 15, tzinfo=UTC)
    await meters.advance(tick, timedelta(minutes=10), grow=False)
    delays = []
    previous = tick
    for _ in range(8):
        retry = pipeline.coordinator.data.next_retry
        assert retry is not None
        delays.append((retry - previous).total_seconds())
        previous = retry
        meters.freezer.move_to(retry)
        async_fire_time_changed(hass)
        await hass.async_block_till_done()
    expected = [min(BACKOFF_INITIAL * 2**i, BACKOFF_MAX) for i in range(8)]
    # Ticks in between may add attempts; the timer itself follows the schedule.
    assert delays[:3] == expected[:3]
    assert max(delays) == BACKOFF_MAX
    sandbox.clear_faults()
    await pipeline.async_send_now()
    assert len(sandbox.readings()) >= 1


async def test_restart_with_pending_readings(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """Unload with readings pending; after setting up again all are delivered."""
    meters.add("one")
    await meters.setup()
    sandbox.inject_fault(status=503, count=100_000)
    await meters.advance(
        datetime(2026, 11, 26, 12, 46, tzinfo=UTC), timedelta(minutes=1)
    )
    assert meters.entry.runtime_data.outbox.pending_count == 3

    assert await hass.config_entries.async_unload(meters.entry.entry_id)
    await hass.async_block_till_done()
    assert meters.entry.state is ConfigEntryState.NOT_LOADED
    sandbox.clear_faults()

    pipeline = await meters.setup()
    assert [r.read_at for r in sandbox.readings()] == [
        "2026-11-26T12:15:00.000Z",
        "2026-11-26T12:30:00.000Z",
        "2026-11-26T12:45:00.000Z",
    ]
    assert pipeline.coordinator.data.pending == 0
    # The delivered state survives too: the baseline is the 12:45 reading.
    assert pipeline.outbox.last_delivered(next(iter(meters.entity_ids))) == Reading(
        datetime(2026, 11, 26, 12, 45, tzinfo=UTC),
        1_000.75,
    )


async def test_backlog_goes_out_in_requests_of_max_batch(
    hass: HomeAssistant,
    meters: Meters,
    sandbox: ZevvySandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backlog is sent in requests of at most MAX_BATCH readings, in order."""
    monkeypatch.setattr(delivery_module, "MAX_BATCH", 3)
    sandbox.config.max_batch = 3
    meters.add("one")
    pipeline = await meters.setup()
    sandbox.inject_fault(status=503, count=100_000)
    await meters.advance(
        datetime(2026, 11, 26, 13, 46, tzinfo=UTC), timedelta(minutes=1)
    )
    assert pipeline.outbox.pending_count == 7
    sandbox.clear_faults()
    sandbox.clear_requests()

    await pipeline.async_send_now()
    assert _bulk_requests(sandbox) == [201, 201, 201]
    assert [r.read_at for r in sandbox.readings()] == [
        _read_at(datetime(2026, 11, 26, 12, 15, tzinfo=UTC) + timedelta(minutes=15 * i))
        for i in range(7)
    ]
    assert pipeline.coordinator.data.pending == 0


async def test_expired_access_token_mid_run(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """A 401 refreshes the token once and the reading is delivered."""
    sandbox.config.access_token_lifetime = 3600
    meters.add("one")
    await meters.setup()
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    sandbox.expire_access_tokens()
    await meters.advance(
        datetime(2026, 11, 26, 12, 31, tzinfo=UTC), timedelta(minutes=1)
    )
    assert len(sandbox.readings()) == 2
    assert _bulk_requests(sandbox) == [201, 401, 201]


async def test_already_present_readings_count_as_delivered(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """409 (zevvy has it, e.g. confirmation lost in a crash) leaves the outbox."""
    one = meters.add("one")
    pipeline = await meters.setup()
    tick = datetime(2026, 11, 26, 12, 15, tzinfo=UTC)
    await pipeline.client.bulk_create("Device one", "Energy", [Reading(tick, 1000.0)])
    await meters.advance(tick, timedelta(minutes=10), grow=False)
    assert 409 in _bulk_requests(sandbox)
    assert [r.read_at for r in sandbox.readings()] == [_read_at(tick)]
    assert pipeline.coordinator.data.pending == 0
    assert pipeline.outbox.last_delivered(one) == Reading(tick, 1000.0)


async def _fix_flow(hass: HomeAssistant, issue_id: str) -> dict[str, Any]:
    assert await async_setup_component(hass, "repairs", {})

    manager = repairs_flow_manager(hass)
    assert manager is not None
    result: dict[str, Any] = await manager.async_init(
        DOMAIN, data={"issue_id": issue_id}
    )
    return result


async def _choose(hass: HomeAssistant, flow_id: str, step: str) -> dict[str, Any]:
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result: dict[str, Any] = await manager.async_configure(
        flow_id, {"next_step_id": step}
    )
    await hass.async_block_till_done()
    return result


async def test_rejected_batch_is_parked_and_can_be_retried(
    hass: HomeAssistant,
    meters: Meters,
    sandbox: ZevvySandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """400: the batch leaves the retry loop, an issue names it; retry sends it."""
    one = meters.add("one")
    meters.add("two")
    pipeline = await meters.setup()
    sandbox.inject_fault(
        status=400, count=1, body={"message": "readAt is not a quarter hour"}
    )
    await meters.advance(
        datetime(2026, 11, 26, 12, 31, tzinfo=UTC), timedelta(minutes=1)
    )
    # One register's 12:15 batch was rejected; everything else arrived.
    assert pipeline.outbox.rejected_count == 1
    assert pipeline.coordinator.data.pending == 0
    assert len(sandbox.readings()) == 3
    assert pipeline.coordinator.data.connected
    parked_key = next(
        k for k, m in pipeline.coordinator.data.meters.items() if m.rejected
    )
    issue_id = f"batch_rejected_{meters.entry.entry_id}_{parked_key}"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["message"] == "readAt is not a quarter hour"
    assert "readAt is not a quarter hour" in caplog.text
    # Not retried on its own.
    await meters.advance(
        datetime(2026, 11, 26, 13, 1, tzinfo=UTC), timedelta(minutes=5)
    )
    assert pipeline.outbox.rejected_count == 1

    result = await _fix_flow(hass, issue_id)
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["retry", "discard"]
    result = await _choose(hass, result["flow_id"], "retry")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert pipeline.outbox.rejected_count == 0
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    device = pipeline.coordinator.data.meters[parked_key].device_ref
    assert [r.read_at for r in sandbox.readings(device)][
        -1
    ] == "2026-11-26T12:15:00.000Z"
    assert len(sandbox.readings()) == 8
    assert one in pipeline.coordinator.data.meters


async def test_rejected_batch_can_be_discarded(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """Discarding a rejected batch forgets it."""
    meters.add("one")
    pipeline = await meters.setup()
    sandbox.inject_fault(status=422, count=1)
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    key = next(iter(meters.entity_ids))
    result = await _fix_flow(hass, f"batch_rejected_{meters.entry.entry_id}_{key}")
    result = await _choose(hass, result["flow_id"], "discard")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert pipeline.outbox.rejected_count == 0
    assert sandbox.readings() == []


@pytest.mark.parametrize(
    ("choice", "delivered"),
    [
        ("replaced", [1000.0, 0.5, 0.75, 1.0]),
        ("discard", [1000.0, 1000.25]),
    ],
)
async def test_lower_reading_is_held_until_the_user_decides(
    hass: HomeAssistant,
    meters: Meters,
    sandbox: ZevvySandbox,
    choice: str,
    delivered: list[float],
) -> None:
    """A drop is held (with later lower ones) and raises a fixable issue."""
    one = meters.add("one")
    pipeline = await meters.setup()
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    meters.set(one, 500.0)  # 0.5 kWh: the meter was replaced, or a glitch
    await meters.advance(
        datetime(2026, 11, 26, 12, 31, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    meters.set(one, 750.0)
    await meters.advance(
        datetime(2026, 11, 26, 12, 46, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    assert [r.value for r in sandbox.readings()] == [1000.0]
    assert pipeline.outbox.held_count == 2
    issue_id = f"reading_held_{meters.entry.entry_id}_{one}"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.is_fixable
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["previous"] == "1000.000"

    result = await _fix_flow(hass, issue_id)
    assert result["type"] is FlowResultType.MENU
    # A meter register also offers the switch to a running total.
    assert result["menu_options"] == ["replaced", "discard", "running_total"]
    result = await _choose(hass, result["flow_id"], choice)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    assert pipeline.outbox.held_count == 0

    meters.set(one, 1000.0 if choice == "replaced" else 1_000_250.0)
    await meters.advance(
        datetime(2026, 11, 26, 13, 1, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    assert [r.value for r in sandbox.readings()] == delivered
    assert pipeline.outbox.held_count == 0


async def _restart_home_assistant(hass: HomeAssistant, meters: Meters) -> None:
    """Home Assistant restarts: the entry unloads, the repair issues are read
    back from storage as at a start (issues that are not persistent come back
    inactive: not shown), and the entry is set up again."""
    assert await hass.config_entries.async_unload(meters.entry.entry_id)
    await hass.async_block_till_done()
    meters.freezer.tick(timedelta(seconds=30))  # the registry's delayed write
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    await ir.async_load(hass)
    await meters.setup()


async def test_held_and_rejected_readings_are_in_repairs_after_a_restart(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """Readings held back (a drop) and rejected by zevvy (400) wait for the
    user's decision; after Home Assistant restarts, Repairs still shows both,
    and the decisions still work."""
    one = meters.add("one")
    two = meters.add("two")
    await meters.setup()
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    meters.set(one, 500.0)  # a drop: held
    meters.set(two, 1_000_250.0)
    sandbox.inject_fault(status=400, count=1, body={"message": "readAt is wrong"})
    await meters.advance(
        datetime(2026, 11, 26, 12, 31, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    entry_id = meters.entry.entry_id
    held_id = f"reading_held_{entry_id}_{one}"
    rejected_id = f"batch_rejected_{entry_id}_{two}"
    registry = ir.async_get(hass)
    before = {
        issue_id: issue.translation_placeholders
        for issue_id in (held_id, rejected_id)
        if (issue := registry.async_get_issue(DOMAIN, issue_id)) is not None
        and issue.active
    }
    assert set(before) == {held_id, rejected_id}

    await _restart_home_assistant(hass, meters)

    for issue_id, placeholders in before.items():
        issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
        assert issue is not None
        assert issue.active
        assert issue.is_fixable
        assert issue.translation_placeholders == placeholders
    assert before[rejected_id] is not None
    assert before[rejected_id]["message"] == "readAt is wrong"
    # The decisions work as before the restart.
    result = await _fix_flow(hass, rejected_id)
    result = await _choose(hass, result["flow_id"], "retry")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    result = await _fix_flow(hass, held_id)
    result = await _choose(hass, result["flow_id"], "replaced")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert sorted(r.value for r in sandbox.readings()) == [
        0.5,
        1000.0,
        1000.0,
        1000.25,
    ]
    assert not [
        issue
        for issue in ir.async_get(hass).issues.values()
        if issue.domain == DOMAIN and issue.active
    ]


async def test_less_precise_unit_is_not_a_drop(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """Wh to kWh with one decimal: 1234.567 then 1234.5 is no drop; 1234.3 is."""
    one = meters.add("one", 1_234_567.0)
    pipeline = await meters.setup()
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    entity_id = meters.entity_ids[one]
    attributes = {"unit_of_measurement": "kWh", "state_class": "total_increasing"}
    # The sensor now shows kWh with one decimal (cut off, not rounded).
    hass.states.async_set(entity_id, "1234.5", attributes)
    await meters.advance(
        datetime(2026, 11, 26, 12, 31, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    assert [r.value for r in sandbox.readings()] == [1234.567, 1234.5]
    assert pipeline.outbox.held_count == 0

    # More than one step of the coarser precision lower: a drop.
    hass.states.async_set(entity_id, "1234.3", attributes)
    await meters.advance(
        datetime(2026, 11, 26, 12, 46, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    assert [r.value for r in sandbox.readings()] == [1234.567, 1234.5]
    assert pipeline.outbox.held_count == 1


async def test_outbox_bound_drops_oldest(
    hass: HomeAssistant,
    meters: Meters,
    sandbox: ZevvySandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the outbox full the oldest readings go, with a warning and an issue."""
    meters.add("one")
    pipeline = await meters.setup()
    sandbox.inject_fault(status=503, count=100_000)
    with patch.object(outbox_policy, "OUTBOX_MAX_READINGS", 3):
        await meters.advance(
            datetime(2026, 11, 26, 13, 16, tzinfo=UTC), timedelta(minutes=1)
        )
    assert pipeline.coordinator.data.pending == 3
    assert "outbox is full" in caplog.text
    issue_id = f"outbox_overflow_{meters.entry.entry_id}"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders == {"dropped": "2", "limit": "3"}
    # Still shown after Home Assistant restarts (until the user saw it).
    with patch.object(outbox_policy, "OUTBOX_MAX_READINGS", 3):
        await _restart_home_assistant(hass, meters)
    pipeline = meters.entry.runtime_data.pipeline
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.active
    assert issue.translation_placeholders == {"dropped": "2", "limit": "3"}
    sandbox.clear_faults()
    await pipeline.async_send_now()
    assert [r.read_at for r in sandbox.readings()] == [
        "2026-11-26T12:45:00.000Z",
        "2026-11-26T13:00:00.000Z",
        "2026-11-26T13:15:00.000Z",
    ]

    result = await _fix_flow(hass, issue_id)
    assert result["type"] is FlowResultType.FORM

    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_removed_meter_and_entry_drop_their_readings(
    hass: HomeAssistant,
    meters: Meters,
    sandbox: ZevvySandbox,
    hass_storage: dict[str, Any],
) -> None:
    """Deleting a meter drops its pending readings; removing the entry the store."""
    one = meters.add("one")
    meters.add("two")
    pipeline = await meters.setup()
    sandbox.inject_fault(status=503, count=100_000)
    await meters.advance(
        datetime(2026, 11, 26, 12, 31, tzinfo=UTC), timedelta(minutes=1)
    )
    assert pipeline.coordinator.data.pending == 4

    assert hass.config_entries.async_remove_subentry(meters.entry, one)
    await hass.async_block_till_done()
    assert pipeline.outbox.keys == [k for k in meters.entity_ids if k != one]
    assert pipeline.coordinator.data.pending == 2

    key = f"{DOMAIN}.{meters.entry.entry_id}.outbox"
    assert key in hass_storage
    await hass.config_entries.async_remove(meters.entry.entry_id)
    await hass.async_block_till_done()
    assert key not in hass_storage


async def test_expired_login_starts_reauth_and_keeps_collecting(
    hass: HomeAssistant,
    meters: Meters,
    sandbox: ZevvySandbox,
    mock_config_entry: MockConfigEntry,
    relogin: Callable[[], Awaitable[str]],
) -> None:
    """invalid_grant: reauth starts, readings wait, and go after a new login."""
    meters.add("one")
    pipeline = await meters.setup()
    sandbox.revoke_refresh_tokens()
    sandbox.expire_access_tokens()
    await meters.advance(
        datetime(2026, 11, 26, 12, 46, tzinfo=UTC), timedelta(minutes=1)
    )
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]
    assert pipeline.coordinator.data.pending == 3
    assert pipeline.coordinator.data.last_error == "authentication"
    assert sandbox.readings() == []

    # What the reauth flow does once the user has logged in again.
    refresh_token = await relogin()
    hass.config_entries.async_update_entry(
        meters.entry, data={**meters.entry.data, "refresh_token": refresh_token}
    )
    assert await hass.config_entries.async_reload(meters.entry.entry_id)
    await hass.async_block_till_done()
    assert len(sandbox.readings()) == 3


async def test_fix_flow_needs_a_loaded_entry(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """A held reading's issue cannot be fixed while the entry is not loaded."""
    one = meters.add("one")
    await meters.setup()
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    meters.set(one, 10.0)
    await meters.advance(
        datetime(2026, 11, 26, 12, 31, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    issue_id = f"reading_held_{meters.entry.entry_id}_{one}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    # Flows opened before the entry was unloaded abort at the choice.
    opened = [await _fix_flow(hass, issue_id) for _ in range(2)]
    assert await hass.config_entries.async_unload(meters.entry.entry_id)
    await hass.async_block_till_done()
    for flow, choice in zip(opened, ("replaced", "discard"), strict=True):
        result = await _choose(hass, flow["flow_id"], choice)
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "not_loaded"
    result = await _fix_flow(hass, issue_id)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_loaded"

    # Held readings survive the reload and the issue can then be fixed.
    pipeline = await meters.setup()
    assert pipeline.outbox.held_count == 1
    result = await _fix_flow(hass, issue_id)
    result = await _choose(hass, result["flow_id"], "discard")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert pipeline.outbox.held_count == 0


async def test_unknown_issue_kind_has_no_fix_flow(hass: HomeAssistant) -> None:
    """Only the outbox's issues have fix flows here."""
    with pytest.raises(ValueError, match="No fix flow"):
        await repairs_module.async_create_fix_flow(hass, "other", {"kind": "other"})


async def test_upload_now_sends_at_once_despite_backoff(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """upload_now ignores a pending retry timer and reports what it did."""
    meters.add("one")
    meters.add("two")
    pipeline = await meters.setup()
    sandbox.inject_fault(status=503, count=100_000)
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    assert pipeline.coordinator.data.next_retry is not None
    result = await pipeline.async_send_now()
    assert (result.sent, result.pending) == (0, 2)
    assert result.error == "unreachable"
    sandbox.clear_faults()
    result = await pipeline.async_send_now()
    assert (result.sent, result.pending, result.held, result.rejected) == (2, 0, 0, 0)
    assert result.error is None
    assert pipeline.coordinator.data.next_retry is None
    # A 403 is about one register: it is set aside, the other one delivers,
    # and the account stays connected (the message is kept for diagnostics).
    sandbox.inject_fault(status=403, count=1)
    meters.grow()
    await meters.advance(
        datetime(2026, 11, 26, 12, 30, 10, tzinfo=UTC),
        timedelta(minutes=1),
        grow=False,
    )
    assert pipeline.coordinator.data.connected
    assert pipeline.coordinator.data.last_error is None
    assert pipeline.coordinator.data.pending == 1
    assert pipeline.last_error_detail is not None
    assert "403" in pipeline.last_error_detail[1]
    await meters.advance(
        datetime(2026, 11, 26, 12, 46, tzinfo=UTC), timedelta(minutes=1), grow=False
    )
    assert pipeline.coordinator.data.pending == 0
    assert len(sandbox.readings()) == 6
