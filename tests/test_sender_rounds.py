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

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.zevvy.coordinator import ZevvyCoordinator
from custom_components.zevvy.outbox import policy as outbox_policy
from zevvy_sandbox import ZevvySandbox

from .test_delivery import (  # noqa: F401  (meters: the fixture)
    Meters,
    _read_at,
    meters,
)

QUARTER = timedelta(minutes=15)
# A sender that spins is stopped after this many rounds (the test then fails
# on the count instead of hanging).
RUNAWAY = 2000


def _api_requests(sandbox: ZevvySandbox) -> int:
    counts: dict[str, Any] = sandbox.request_counts()
    return int(counts["by_target"].get("api", 0))


class Rounds:
    """Count the rounds a coordinator's sender starts."""

    def __init__(self, coordinator: ZevvyCoordinator) -> None:
        """Wrap the sender's ``async_send``."""
        self.count = 0
        sender = coordinator.sender
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
    coordinator = await meters.setup()
    sandbox.inject_fault(404, count=10**6, device_ref="Device gone")
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    assert coordinator.data.meters[gone].pending == 1
    assert hass.config_entries.async_remove_subentry(meters.entry, gone)
    await hass.async_block_till_done()
    assert gone not in coordinator.data.meters
    await meters.advance(
        datetime(2026, 11, 26, 12, 30, 30, tzinfo=UTC), timedelta(minutes=1)
    )

    rounds = Rounds(coordinator)
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
    assert coordinator.data.pending == 0


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
    coordinator = await meters.setup()
    sandbox.inject_fault(404, count=10**6, device_ref="Device gone")
    sandbox.inject_fault(404, count=10**6, device_ref="Device emptied")
    await meters.advance(
        datetime(2026, 11, 26, 12, 16, tzinfo=UTC), timedelta(minutes=1)
    )
    assert coordinator.data.meters[gone].pending == 1
    assert coordinator.data.meters[emptied].pending == 1
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
    assert coordinator.data.meters[emptied].pending == 0

    rounds = Rounds(coordinator)
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
    assert coordinator.data.pending == 0
