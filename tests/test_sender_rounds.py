"""The sender's rounds: set-aside registers, account-wide refusals, the API's 401.

Against the sandbox, driven by the frozen clock like test_delivery (whose
``meters`` fixture the tests use, hence F811). Rounds are counted where they
start (``Sender.async_send``, which every timer, tick and action goes through).
"""

# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.zevvy.api import Reading
from custom_components.zevvy.const import DOMAIN
from custom_components.zevvy.outbox import Destination, policy as outbox_policy
from custom_components.zevvy.pipeline import ReadingPipeline
from zevvy_sandbox import ZevvySandbox

from . import icu
from .test_delivery import (  # noqa: F401  (meters: the fixture)
    Meters,
    _fix_flow,
    _read_at,
    meters,
    relogin,
)

QUARTER = timedelta(minutes=15)
# A sender that spins is stopped after this many rounds (the test then fails
# on the count instead of hanging).
RUNAWAY = 2000


def _api_requests(sandbox: ZevvySandbox) -> int:
    counts: dict[str, Any] = sandbox.request_counts()
    return int(counts["by_target"].get("api", 0))


class Rounds:
    """Count the rounds a pipeline's sender starts."""

    def __init__(self, pipeline: ReadingPipeline) -> None:
        """Wrap the sender's ``async_send``."""
        self.count = 0
        sender = pipeline.sender
        original: Callable[[], Coroutine[Any, Any, int]] = sender.async_send

        async def counted() -> int:
            self.count += 1
            if self.count > RUNAWAY:
                sender.async_stop()  # a spinning sender: end it, fail on the count
            return await original()

        sender.async_send = counted  # type: ignore[method-assign]


async def _fire_again_and_again(hass: HomeAssistant, times: int = 20) -> None:
    for _ in range(times):
        async_fire_time_changed(hass)
        await hass.async_block_till_done()


async def test_deleted_refused_register_leaves_no_round_behind(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """A set-aside register deleted: once its backoff is over, nothing is due.

    Firing the time again and again starts no round and sends nothing.
    """
    meters.add("one")
    gone = meters.add("gone")
    pipeline = await meters.setup()
    sandbox.inject_fault(404, count=10**6, device_ref="Device gone")
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    assert pipeline.coordinator.data.meters[gone].pending == 1
    assert hass.config_entries.async_remove_subentry(meters.entry, gone)
    await hass.async_block_till_done()
    assert gone not in pipeline.coordinator.data.meters
    await meters.advance(
        datetime(2026, 11, 26, 12, 30, 30, tzinfo=UTC), timedelta(minutes=1)
    )

    rounds = Rounds(pipeline)
    requests = _api_requests(sandbox)
    # Past the register's backoff (15 minutes), before the next quarter hour.
    meters.freezer.move_to(datetime(2026, 11, 26, 12, 32, tzinfo=UTC))
    await _fire_again_and_again(hass)
    assert rounds.count <= 1  # at most the one its old timer starts
    before = rounds.count
    meters.freezer.move_to(datetime(2026, 11, 26, 12, 40, tzinfo=UTC))
    await _fire_again_and_again(hass)
    assert rounds.count == before
    assert _api_requests(sandbox) == requests
    assert pipeline.coordinator.data.pending == 0


async def test_a_day_with_a_deleted_and_an_emptied_refused_register(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """A day with one deleted and one bound-emptied set-aside register.

    Rounds stay bounded: the quarter-hour tick's, and the rare retry of a
    refused register that has readings again.
    """
    meters.add("one")
    gone = meters.add("gone")
    emptied = meters.add("emptied")
    pipeline = await meters.setup()
    sandbox.inject_fault(404, count=10**6, device_ref="Device gone")
    sandbox.inject_fault(404, count=10**6, device_ref="Device emptied")
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    assert pipeline.coordinator.data.meters[gone].pending == 1
    assert pipeline.coordinator.data.meters[emptied].pending == 1
    assert hass.config_entries.async_remove_subentry(meters.entry, gone)
    await hass.async_block_till_done()
    # The emptied meter's sensor goes away; the bound drops its last reading.
    meters.set(emptied, "unavailable")
    with patch.object(outbox_policy, "OUTBOX_MAX_READINGS", 1):
        await meters.advance(
            datetime(2026, 11, 26, 12, 30, 30, tzinfo=UTC),
            timedelta(minutes=1),
            grow=False,
        )
    assert pipeline.coordinator.data.meters[emptied].pending == 0

    rounds = Rounds(pipeline)
    start = datetime(2026, 11, 26, 12, 30, 30, tzinfo=UTC)
    for minute in range(1, 24 * 60 + 1):
        meters.freezer.move_to(start + timedelta(minutes=minute))
        async_fire_time_changed(hass)
        await hass.async_block_till_done()
        if rounds.count > RUNAWAY:
            break
    # One round per quarter hour (its tick); nothing else is due.
    assert rounds.count <= 96 + 2
    assert _read_at(datetime(2026, 11, 27, 12, 30, tzinfo=UTC)) in {
        r.read_at for r in sandbox.readings("Device one")
    }
    assert pipeline.coordinator.data.pending == 0


def _connection(hass: HomeAssistant) -> str:
    state = hass.states.get("binary_sensor.zevvy_connection")
    assert state is not None
    return state.state


def _token_statuses(sandbox: ZevvySandbox) -> list[int]:
    return [r.status for r in sandbox.requests if r.path.endswith("/token")]


async def test_api_refusing_a_renewed_login_keeps_the_login(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """401 from the API while the token endpoint renews fine: no new login.

    It is retried like a 503 (Connection off, backoff); after an hour of it a
    repair issue says that zevvy refuses the login for its API; the login is
    kept, and the issue goes when an upload succeeds.
    """
    meters.add("one")
    pipeline = await meters.setup()
    sandbox.inject_fault(401, count=10**6, target="api")
    issue_id = f"api_login_refused_{meters.entry.entry_id}"
    await meters.advance(
        datetime(2026, 11, 26, 12, 50, tzinfo=UTC), timedelta(minutes=1)
    )
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert meters.entry.state is ConfigEntryState.LOADED
    assert _connection(hass) == "off"
    assert pipeline.coordinator.data.last_error == "login_refused"
    assert pipeline.coordinator.data.next_retry is not None
    assert pipeline.coordinator.data.pending == 3
    assert set(_token_statuses(sandbox)) == {200}
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None

    # An hour of attempts (the first at 12:15): the repair issue.
    await meters.advance(
        datetime(2026, 11, 26, 13, 20, tzinfo=UTC), timedelta(minutes=1)
    )
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["since"] == dt_util.as_local(
        datetime(2026, 11, 26, 12, 15, tzinfo=UTC)
    ).strftime("%Y-%m-%d %H:%M")
    assert "injected fault: HTTP 401" in issue.translation_placeholders["answer"]
    assert sandbox.readings() == []

    # zevvy takes the login again: the next attempt delivers everything.
    sandbox.clear_faults()
    retry = pipeline.coordinator.data.next_retry
    assert retry is not None
    await meters.advance(retry + timedelta(seconds=1), timedelta(minutes=1))
    assert pipeline.coordinator.data.pending == 0
    # Every quarter hour from 12:15 to the retry (13:46), once.
    assert [r.read_at for r in sandbox.readings()] == [
        _read_at(datetime(2026, 11, 26, 12, 15, tzinfo=UTC) + i * QUARTER)
        for i in range(7)
    ]
    assert _connection(hass) == "on"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)


async def test_invalid_grant_still_asks_for_a_new_login(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """A login the token endpoint refuses (invalid_grant) starts reauth."""
    meters.add("one")
    pipeline = await meters.setup()
    sandbox.revoke_refresh_tokens()
    sandbox.expire_access_tokens()
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]
    assert pipeline.coordinator.data.last_error == "authentication"
    assert (
        ir.async_get(hass).async_get_issue(
            DOMAIN, f"api_login_refused_{meters.entry.entry_id}"
        )
        is None
    )


async def test_register_repair_while_zevvy_is_unreachable_says_when(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """The register repair's "try again" while the account waits for a retry.

    It says that the readings go with the account's next attempt (and when);
    they do, long before the register's own backoff would have ended.
    """
    meters.add("one")
    bad = meters.add("bad")
    pipeline = await meters.setup()
    sandbox.inject_fault(404, count=1, device_ref="Device bad")
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    issue_id = f"register_refused_{meters.entry.entry_id}_{bad}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    sandbox.inject_fault(503, count=10**6)
    await pipeline.async_send_now()  # zevvy down: a retry timer is armed
    retry = pipeline.coordinator.data.next_retry
    assert retry is not None

    result = await _fix_flow(hass, issue_id)
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "waiting_for_zevvy"
    assert result["description_placeholders"] == {
        "time": dt_util.as_local(retry).strftime("%H:%M")
    }
    sandbox.clear_faults()
    meters.freezer.move_to(retry + timedelta(seconds=1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert [r.read_at for r in sandbox.readings("Device bad")] == [
        "2026-11-26T12:15:00.000Z",
    ]
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_every_register_refused_alike_is_one_account_issue(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """A wrong API address: every meter gets the same 404.

    One account-level issue (not one per meter), Connection off, readings
    kept; its "try again" sends them once zevvy takes them, and it goes.
    """
    keys = [meters.add(name) for name in ("one", "two", "three")]
    pipeline = await meters.setup()
    sandbox.inject_fault(404, count=10**6, body={"message": "Not Found"})
    await meters.advance(
        datetime(2026, 11, 26, 12, 31, tzinfo=UTC), timedelta(minutes=1)
    )
    entry_id = meters.entry.entry_id
    registry = ir.async_get(hass)
    issue = registry.async_get_issue(DOMAIN, f"registers_refused_{entry_id}")
    assert issue is not None
    assert issue.translation_placeholders == {
        "account": meters.entry.title,
        "answer": "HTTP 404: Not Found",
        "count": "3",
    }
    assert not [
        issue_id
        for (domain, issue_id) in registry.issues
        if domain == DOMAIN and issue_id.startswith("register_refused_")
    ]
    assert _connection(hass) == "off"
    assert pipeline.coordinator.data.last_error == "refused"
    assert all(pipeline.coordinator.data.meters[key].pending == 2 for key in keys)
    # Tried on the registers' backoff, not at every quarter hour.
    assert _api_requests(sandbox) == 6

    sandbox.clear_faults()
    result = await _fix_flow(hass, f"registers_refused_{entry_id}")
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert pipeline.coordinator.data.pending == 0
    assert len(sandbox.readings()) == 6
    assert _connection(hass) == "on"
    assert pipeline.coordinator.data.last_error is None
    assert registry.async_get_issue(DOMAIN, f"registers_refused_{entry_id}") is None


DAY = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)


def _readings(count: int, first: int = 0) -> list[Reading]:
    """Quarter-hour readings of the day before, rising."""
    return [
        Reading(DAY + i * QUARTER, 1000.0 + i * 0.25)
        for i in range(first, first + count)
    ]


async def _queue(pipeline: ReadingPipeline, key: str, readings: list[Reading]) -> None:
    destination = Destination(key, "Device one", "Energy")
    await pipeline.async_accept([(destination, readings)], send=False)


async def _reload(hass: HomeAssistant, meters: Meters) -> ReadingPipeline:
    assert await hass.config_entries.async_unload(meters.entry.entry_id)
    await hass.async_block_till_done()
    return await meters.setup()


async def test_set_aside_register_stays_aside_after_a_restart(
    hass: HomeAssistant,
    meters: Meters,
    sandbox: ZevvySandbox,
    hass_storage: dict[str, Any],
) -> None:
    """A refused register keeps its backoff (and its issue) across a restart.

    It is not tried again at once on start; its next attempt doubles the
    backoff as if Home Assistant had run on.
    """
    meters.add("one")
    bad = meters.add("bad")
    await meters.setup()
    sandbox.inject_fault(404, count=10**6, device_ref="Device bad")
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    issue_id = f"register_refused_{meters.entry.entry_id}_{bad}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    assert await hass.config_entries.async_unload(meters.entry.entry_id)
    await hass.async_block_till_done()
    stored = hass_storage[f"{DOMAIN}.{meters.entry.entry_id}.outbox"]["data"]
    assert set(stored["sender"]["aside"]) == {bad}
    # Repair issues do not survive a restart of Home Assistant.
    ir.async_delete_issue(hass, DOMAIN, issue_id)

    meters.freezer.move_to(datetime(2026, 11, 26, 12, 20, tzinfo=UTC))
    attempts = len([r for r in sandbox.requests if "Device bad" in r.path])
    pipeline = await meters.setup()
    assert len([r for r in sandbox.requests if "Device bad" in r.path]) == attempts
    assert pipeline.coordinator.data.meters[bad].pending == 1
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    # Refused at 12:15: due at 12:30, then 30 minutes later (13:00).
    await meters.advance(
        datetime(2026, 11, 26, 12, 59, tzinfo=UTC), timedelta(minutes=1)
    )
    assert len([r for r in sandbox.requests if "Device bad" in r.path]) == (
        attempts + 1
    )
    assert pipeline.coordinator.data.meters[bad].pending == 3
    await meters.advance(
        datetime(2026, 11, 26, 13, 0, 30, tzinfo=UTC), timedelta(minutes=1)
    )
    assert len([r for r in sandbox.requests if "Device bad" in r.path]) == (
        attempts + 2
    )


async def test_learned_batch_size_survives_a_restart(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """413 once: after a restart, batches keep within what zevvy took."""
    sandbox.configure(max_batch=100)
    one = meters.add("one")
    pipeline = await meters.setup()
    await _queue(pipeline, one, _readings(300))
    assert (await pipeline.async_send_now()).pending == 0
    assert 413 in [r.status for r in sandbox.requests]

    pipeline = await _reload(hass, meters)
    sandbox.clear_requests()
    await _queue(pipeline, one, _readings(300, first=300))
    assert (await pipeline.async_send_now()).pending == 0
    assert {r.status for r in sandbox.requests if "_bulk_create" in r.path} == {201}


async def test_outbox_with_unusable_sender_state_loads(
    hass: HomeAssistant,
    meters: Meters,
    sandbox: ZevvySandbox,
    hass_storage: dict[str, Any],
) -> None:
    """Sender state that is broken or about queues that are gone is ignored."""
    one = meters.add("one")
    hass_storage[f"{DOMAIN}.{meters.entry.entry_id}.outbox"] = {
        "version": 1,
        "minor_version": 1,
        "key": f"{DOMAIN}.{meters.entry.entry_id}.outbox",
        "data": {
            "queues": {
                one: {
                    "device": "Device one",
                    "register": "Energy",
                    "last": None,
                    "pending": {"t": [1795694400], "v": [999.0]},
                }
            },
            "overflow_dropped": 0,
            "sender": {
                "aside": {one: {"until": "soon"}, "gone": {"backoff": 900}},
                "batch_size": "many",
                "refused": ["404", None],
            },
        },
    }
    pipeline = await meters.setup()
    assert pipeline.coordinator.data.pending == 0
    assert pipeline.coordinator.data.connected
    assert [r.read_at for r in sandbox.readings("Device one")] == [
        "2026-11-26T12:00:00.000Z"
    ]


async def test_register_repair_while_waiting_for_a_login(
    hass: HomeAssistant,
    meters: Meters,
    sandbox: ZevvySandbox,
    relogin: Callable[[], Coroutine[Any, Any, str]],
) -> None:
    """The register repair's "try again" while a new login is needed.

    It says so; once the user has logged in again, the register's readings go
    with the first round.
    """
    meters.add("one")
    bad = meters.add("bad")
    await meters.setup()
    sandbox.inject_fault(404, count=1, device_ref="Device bad")
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    issue_id = f"register_refused_{meters.entry.entry_id}_{bad}"
    sandbox.revoke_refresh_tokens()
    sandbox.expire_access_tokens()
    await meters.advance(
        datetime(2026, 11, 26, 12, 31, tzinfo=UTC), timedelta(minutes=1)
    )
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN)

    result = await _fix_flow(hass, issue_id)
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "waiting_for_login"

    # What the reauth flow does once the user has logged in again.
    refresh_token = await relogin()
    hass.config_entries.async_update_entry(
        meters.entry, data={**meters.entry.data, "refresh_token": refresh_token}
    )
    assert await hass.config_entries.async_reload(meters.entry.entry_id)
    await hass.async_block_till_done()
    assert [r.read_at for r in sandbox.readings("Device bad")] == [
        "2026-11-26T12:15:00.000Z",
        "2026-11-26T12:30:00.000Z",
    ]
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_account_refusal_goes_with_the_refused_meters(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """Every refused meter deleted: the account issue goes, Connection is on."""
    keys = [meters.add(name) for name in ("one", "two")]
    pipeline = await meters.setup()
    sandbox.inject_fault(404, count=10**6, body={"message": "Not Found"})
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    issue_id = f"registers_refused_{meters.entry.entry_id}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    assert _connection(hass) == "off"
    for key in keys:
        assert hass.config_entries.async_remove_subentry(meters.entry, key)
    await hass.async_block_till_done()
    await meters.advance(
        datetime(2026, 11, 26, 12, 31, tzinfo=UTC), timedelta(minutes=1)
    )
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    assert _connection(hass) == "on"
    assert pipeline.coordinator.data.last_error is None


def _upload_now_error(err: HomeAssistantError, key: str, language: str) -> str:
    """The action's error: its key, and its text rendered in a language."""
    assert err.translation_domain == DOMAIN
    assert err.translation_key == key
    text = icu.lookup(language, f"exceptions.{key}.message")
    return icu.render(language, text, err.translation_placeholders or {})


async def test_upload_now_says_every_meter_is_refused(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """upload_now while zevvy refuses every meter alike says so (with zevvy's
    answer), not that zevvy cannot be reached."""
    for name in ("one", "two"):
        meters.add(name)
    await meters.setup()
    sandbox.inject_fault(404, count=10**6, body={"message": "Not Found"})
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(DOMAIN, "upload_now", {}, blocking=True)
    text = _upload_now_error(err.value, "upload_refused", "de")
    assert "HTTP 404: Not Found" in text
    assert "Wartende Zählerstände: 2" in text
    assert "nicht erreichbar" not in text


async def test_upload_now_says_the_api_refuses_the_login(
    hass: HomeAssistant, meters: Meters, sandbox: ZevvySandbox
) -> None:
    """upload_now while zevvy's API refuses a renewed login says that (the
    login is kept), not that zevvy cannot be reached nor to log in again."""
    meters.add("one")
    await meters.setup()
    sandbox.inject_fault(401, count=10**6, target="api")
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(DOMAIN, "upload_now", {}, blocking=True)
    text = _upload_now_error(err.value, "upload_login_refused", "fr")
    assert "Relevés en attente : 1" in text
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)
