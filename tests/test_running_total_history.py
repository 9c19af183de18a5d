"""Running totals from the recorder: live ticks, gap fill and upload_history agree.

The recorder runs for real (in-memory SQLite) and compiles its 5-minute
statistics from the recorded states with Home Assistant's own code (an ad-hoc
statistics run per period, as its timer would do), so the history side uses
Home Assistant's ``sum``, not our copy of its rule.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import Recorder
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
)

from custom_components.zevvy.const import DOMAIN
from custom_components.zevvy.services import SERVICE_UPLOAD_HISTORY
from zevvy_sandbox import ZevvySandbox

from .test_running_total import (
    START,
    WH_SESSION,
    add_running_meter,
    add_sensor,
    at,
    readings,
    setup_entry,
)

FIVE = timedelta(minutes=5)

# peblar's energy_session (Wh): (minutes after 12:00, state).
SESSIONS: list[tuple[int, str]] = [
    (9, "2000"),  # before the start (12:15): not counted
    (17, "2600"),  # +0.6
    (22, "0"),  # a new session
    (26, "800"),  # +0.8
    (33, "unavailable"),
    (38, "300"),  # a new session starting at 300 Wh: +0.3
    (44, "1300"),  # +1.0
    (52, "1700"),  # +0.4
    (58, "2500"),  # +0.8
    (63, "0"),  # a new session
    (67, "1200"),  # +1.2  (the integration is stopped from 13:02 to 13:40)
    (71, "2900"),  # +1.7
    (78, "150"),  # a new session at 150 Wh: +0.15
    (86, "2150"),  # +2.0
    (93, "unknown"),
    (97, "2650"),  # +0.5
    (104, "4150"),  # +1.5
]


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: Any) -> None:
    """Prepare the recorder's database before hass (recorder_mock needs it)."""


async def test_live_gap_fill_and_history_agree(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Two chargers with the same sessions: one's readings come from live ticks
    (and, while the integration was stopped, from gap fill after it started
    again), the other's from upload_history afterwards. zevvy receives the same
    numbers for both: the start value plus the energy charged."""
    freezer.move_to(START)
    live = add_sensor(hass, "peblar_energy_session", "1500", WH_SESSION, "peblar")
    twin = add_sensor(hass, "twin_energy_session", "1500", WH_SESSION)
    await async_wait_recording_done(hass)
    mock_config_entry.add_to_hass(hass)
    add_running_meter(hass, mock_config_entry, live, device="Live", start_value=50.0)
    await setup_entry(hass, mock_config_entry)
    sessions = dict(SESSIONS)
    base = START.replace(minute=0)

    for offset in range(8, 121):
        moment = base + timedelta(minutes=offset)
        await at(hass, freezer, moment)
        if offset % 5 == 0:
            # The recorder compiles the 5-minute period that just ended.
            do_adhoc_statistics(hass, start=moment - FIVE)
            await async_wait_recording_done(hass)
        if offset == 62:
            assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
        if offset == 100:
            await setup_entry(hass, mock_config_entry)  # gap fill: 13:15, 13:30
        if (value := sessions.get(offset)) is not None:
            for entity in (live, twin):
                hass.states.async_set(entity.entity_id, value, WH_SESSION)
            await async_wait_recording_done(hass)

    expected = [
        ("2026-11-26T12:15:00.000Z", 50.0),
        ("2026-11-26T12:30:00.000Z", 51.4),
        ("2026-11-26T12:45:00.000Z", 52.7),
        ("2026-11-26T13:00:00.000Z", 53.9),
        ("2026-11-26T13:15:00.000Z", 56.8),
        ("2026-11-26T13:30:00.000Z", 58.95),
        ("2026-11-26T13:45:00.000Z", 60.95),
        ("2026-11-26T14:00:00.000Z", 60.95),
    ]
    assert sorted(readings(sandbox, "Live")) == expected

    add_running_meter(hass, mock_config_entry, twin, device="Twin", start_value=50.0)
    response = await hass.services.async_call(
        DOMAIN,
        SERVICE_UPLOAD_HISTORY,
        {"start": base, "end": base + timedelta(hours=2), "meters": [twin.entity_id]},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    assert response["queued"] == len(expected)
    await hass.async_block_till_done()
    assert readings(sandbox, "Twin") == expected

    # The twin, added after its start, replayed the recorder's states: from now
    # on both count the same live.
    for entity in (live, twin):
        hass.states.async_set(entity.entity_id, "4400", WH_SESSION)
    await at(hass, freezer, base + timedelta(hours=2, minutes=15))
    for device in ("Live", "Twin"):
        assert max(readings(sandbox, device)) == ("2026-11-26T14:15:00.000Z", 61.2)


def _daily(last_reset: str) -> dict[str, Any]:
    return {
        "unit_of_measurement": "Wh",
        "state_class": "total",
        "last_reset": last_reset,
    }


# A utility_meter-like counter (Wh, ``total``) that starts a new cycle (a new
# ``last_reset``) four times: (minutes after 12:00, state, cycle start).
CYCLES: list[tuple[int, str, str]] = [
    (9, "5000", "2026-11-26T00:00:00+00:00"),  # before the start (12:15)
    (17, "5600", "2026-11-26T00:00:00+00:00"),  # +0.6
    (22, "5800", "2026-11-26T00:00:00+00:00"),  # +0.2
    (26, "150", "2026-11-26T12:25:00+00:00"),  # a new cycle: +0.15
    (33, "unavailable", "2026-11-26T12:25:00+00:00"),
    (38, "400", "2026-11-26T12:25:00+00:00"),  # +0.25
    (44, "900", "2026-11-26T12:25:00+00:00"),  # +0.5
    (52, "0", "2026-11-26T12:50:00+00:00"),  # a new cycle: +0
    (58, "300", "2026-11-26T12:50:00+00:00"),  # +0.3 (stopped 13:02-13:40)
    (67, "600", "2026-11-26T12:50:00+00:00"),  # +0.3
    (78, "50", "2026-11-26T13:15:00+00:00"),  # a new cycle: +0.05
    (86, "250", "2026-11-26T13:15:00+00:00"),  # +0.2
    (97, "700", "2026-11-26T13:15:00+00:00"),  # +0.45
    (104, "1000", "2026-11-26T13:15:00+00:00"),  # +0.3
]


async def test_daily_cycles_live_gap_fill_and_history_agree(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A counter with ``last_reset`` cycles: live ticks with gap fill, and
    upload_history for its twin, give the same running total."""
    freezer.move_to(START)
    first = _daily("2026-11-26T00:00:00+00:00")
    live = add_sensor(hass, "daily_energy", "4000", first, "utility_meter")
    twin = add_sensor(hass, "twin_daily_energy", "4000", first)
    await async_wait_recording_done(hass)
    mock_config_entry.add_to_hass(hass)
    add_running_meter(hass, mock_config_entry, live, device="Live", start_value=50.0)
    await setup_entry(hass, mock_config_entry)
    states = {offset: (value, reset) for offset, value, reset in CYCLES}
    base = START.replace(minute=0)

    for offset in range(8, 121):
        moment = base + timedelta(minutes=offset)
        await at(hass, freezer, moment)
        if offset % 5 == 0:
            do_adhoc_statistics(hass, start=moment - FIVE)
            await async_wait_recording_done(hass)
        if offset == 62:
            assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
        if offset == 100:
            await setup_entry(hass, mock_config_entry)  # gap fill: 13:15, 13:30
            await hass.async_block_till_done(wait_background_tasks=True)
        if (found := states.get(offset)) is not None:
            for entity in (live, twin):
                hass.states.async_set(entity.entity_id, found[0], _daily(found[1]))
            await async_wait_recording_done(hass)

    expected = [
        ("2026-11-26T12:15:00.000Z", 50.0),
        ("2026-11-26T12:30:00.000Z", 50.95),
        ("2026-11-26T12:45:00.000Z", 51.7),
        ("2026-11-26T13:00:00.000Z", 52.0),
        ("2026-11-26T13:15:00.000Z", 52.3),
        ("2026-11-26T13:30:00.000Z", 52.55),
        ("2026-11-26T13:45:00.000Z", 53.3),
        ("2026-11-26T14:00:00.000Z", 53.3),
    ]
    assert sorted(readings(sandbox, "Live")) == expected

    add_running_meter(hass, mock_config_entry, twin, device="Twin", start_value=50.0)
    response = await hass.services.async_call(
        DOMAIN,
        SERVICE_UPLOAD_HISTORY,
        {"start": base, "end": base + timedelta(hours=2), "meters": [twin.entity_id]},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    await hass.async_block_till_done()
    assert readings(sandbox, "Twin") == expected
