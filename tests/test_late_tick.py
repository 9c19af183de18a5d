"""A tick that fires late files each quarter hour's value as of that quarter hour.

Home Assistant busy, a suspended machine or a clock jump can make the quarter-hour
tick fire long after its time. The readings it owes are the meter's values *at*
those quarter hours: from the state when it has not changed since, else from the
recorder's state history, else none (never the value read late).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import Recorder
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.recorder import get_instance
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from zevvy_sandbox import ZevvySandbox

from .test_history import _add_meter, _setup

START = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)


def _at(hour: int, minute: int) -> datetime:
    return START.replace(hour=hour, minute=minute)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _stored(sandbox: ZevvySandbox) -> list[tuple[str, float]]:
    return [(r.read_at, r.value) for r in sandbox.readings("Device a", "Energy")]


class Meter:
    """One kWh meter whose state changes at frozen times."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: MockConfigEntry,
        freezer: FrozenDateTimeFactory,
        *,
        recorded: bool,
    ) -> None:
        """Add the meter to the entry (not yet set up)."""
        self.hass = hass
        self.freezer = freezer
        self.recorded = recorded
        self.entity_id, _ = _add_meter(hass, entry, "a")

    async def set(self, moment: datetime, kwh: float) -> None:
        """Set the state as changed at ``moment``; the clock and timers stay.

        The loop is "stalled": the tick due meanwhile does not fire (the clock
        does not move), while the state and the recorder see the change.
        """
        self.hass.states.async_set(
            self.entity_id,
            str(kwh),
            {"unit_of_measurement": "kWh", "state_class": "total_increasing"},
            timestamp=moment.timestamp(),
        )
        await self.hass.async_block_till_done()
        if self.recorded:
            # Written to the database without firing timers (as
            # async_wait_recording_done would).
            await get_instance(self.hass).async_block_till_done()

    async def fire(self, moment: datetime) -> None:
        """Let the clock reach ``moment`` and run the timers that are due."""
        self.freezer.move_to(moment)
        async_fire_time_changed(self.hass, moment)
        await self.hass.async_block_till_done()


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: Any) -> None:
    """Prepare the recorder's database before hass (recorder_mock needs it)."""


async def test_late_tick_without_recorder(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The loop stalls from 12:14 to 12:40: 12:30 is filed, 12:15 is not guessed.

    The state changed at 12:20, after 12:15: its value at 12:15 is unknown without
    the recorder, so 12:15 stays empty rather than get a later value. It has not
    changed since 12:30, so it is the value at 12:30.
    """
    freezer.move_to(START)
    mock_config_entry.add_to_hass(hass)
    meter = Meter(hass, mock_config_entry, freezer, recorded=False)
    await meter.set(START, 1000.1)
    await _setup(hass, mock_config_entry)

    await meter.set(_at(12, 20), 1000.2)
    await meter.fire(_at(12, 40))

    assert _stored(sandbox) == [(_stamp(_at(12, 30)), 1000.2)]

    # The schedule goes on: the next tick is 12:45, on time.
    await meter.set(_at(12, 44), 1000.3)
    await meter.fire(_at(12, 45))
    assert _stored(sandbox)[-1] == (_stamp(_at(12, 45)), 1000.3)
    assert len(_stored(sandbox)) == 2


async def test_late_tick_takes_past_values_from_the_recorder(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Tick at 12:40 instead of 12:15: 12:15 and 12:30 as the recorder saw them."""
    freezer.move_to(START)
    mock_config_entry.add_to_hass(hass)
    meter = Meter(hass, mock_config_entry, freezer, recorded=True)
    await meter.set(START, 1000.1)
    await _setup(hass, mock_config_entry)

    await meter.set(_at(12, 20), 1000.2)
    await meter.set(_at(12, 35), 1000.3)
    await meter.set(_at(12, 40), 1000.4)
    await meter.fire(_at(12, 40))

    assert _stored(sandbox) == [
        (_stamp(_at(12, 15)), 1000.1),
        (_stamp(_at(12, 30)), 1000.2),
    ]
    # 12:40's value is 12:45's reading if nothing changes until then.
    await meter.fire(_at(12, 45))
    assert _stored(sandbox)[-1] == (_stamp(_at(12, 45)), 1000.4)


async def test_clock_jump_over_a_quarter_hour(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The clock jumps 25 minutes forward: every quarter passed gets its value once.

    A second meter whose sensor has no state gets no reading at all.
    """
    freezer.move_to(START)
    mock_config_entry.add_to_hass(hass)
    meter = Meter(hass, mock_config_entry, freezer, recorded=False)
    await meter.set(_at(12, 10), 1000.1)
    silent, _ = _add_meter(hass, mock_config_entry, "b")
    hass.states.async_remove(silent)  # its integration has not set it up (yet)
    er.async_get(hass).async_update_entity(
        silent,
        capabilities={"state_class": "total_increasing"},
        unit_of_measurement="kWh",
    )
    await _setup(hass, mock_config_entry)

    await meter.fire(_at(12, 14))
    freezer.move_to(_at(12, 39))  # 12:14 + 25 minutes
    await meter.fire(_at(12, 39))

    assert _stored(sandbox) == [
        (_stamp(_at(12, 15)), 1000.1),
        (_stamp(_at(12, 30)), 1000.1),
    ]
    assert sandbox.readings("Device b") == []
