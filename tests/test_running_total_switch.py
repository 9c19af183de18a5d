"""A meter register switched to a running total that continues zevvy's series.

A ``total`` sensor with ``last_reset`` (a daily or per-session counter) is first
read as a meter register; it starts a new cycle, its reading drops and is held,
and the user switches the meter to a running total that keeps zevvy's last
reading (the repair's "switch to running total", or *Change meter*). The running
total counts from that reading's quarter hour, by the cycle the sensor was in
then: live ticks, gap fill and ``upload_history`` give the same numbers. Both
ways discard the held readings (their issue goes) and fill the quarter hours
since that reading from the statistics.

With the recorder (in-memory SQLite, 5-minute statistics compiled by Home
Assistant's own code) and without it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import Recorder
from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.config_entries import SOURCE_RECONFIGURE, ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
)

from custom_components.zevvy.const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_READING_SOURCE,
    CONF_REGISTER_REF,
    CONF_START_VALUE,
    DOMAIN,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.meters import meter_title
from custom_components.zevvy.services import SERVICE_UPLOAD_HISTORY
from zevvy_sandbox import ZevvySandbox

from .test_running_total import (
    START,
    _stamp,
    add_running_meter,
    add_sensor,
    at,
    minute,
    readings,
    setup_entry,
)

FIVE = timedelta(minutes=5)
DAY = "2026-11-26T00:00:00+00:00"
NEW_CYCLE = "2026-11-26T12:25:00+00:00"

# A new cycle's values after zevvy's 12:15 reading of 5.0: far below it, or
# almost as far (above 90 % of it).
LOW = ("0.5", "1.0", "1.5")
HIGH = ("4.6", "4.7", "4.8")

# (minute after 12:00, value, last_reset): 5.0 at 12:15 (zevvy's last reading
# before the switch), 6.0, then (``new_cycle``) a new cycle at 12:25.
Script = list[tuple[int, str, str]]


def _cycle(last_reset: str) -> dict[str, Any]:
    return {
        "unit_of_measurement": "kWh",
        "state_class": "total",
        "last_reset": last_reset,
    }


def _script(new_cycle: bool, high: bool) -> Script:
    """The sensor's states after 12:07 (4.0 in the day's cycle)."""
    script: Script = [(10, "5.0", DAY), (20, "6.0", DAY)]
    if new_cycle:
        # A new cycle at 12:25 (its first value 0.0): 1.0 at 12:30 (held back
        # as a drop), then (``high``) 5.5, past zevvy's last reading.
        script += [(25, "0.0", NEW_CYCLE), (28, "1.0", NEW_CYCLE)]
        if high:
            script += [(32, "5.5", NEW_CYCLE)]
    else:
        script += [(28, "6.5", DAY)]  # the same cycle goes on
    last_reset = NEW_CYCLE if new_cycle else DAY
    now = _current(new_cycle, high)
    # Before and while the integration is stopped (12:57-13:10), and after.
    script += [
        (40, f"{now + 0.5:.1f}", last_reset),
        (52, f"{now + 1.0:.1f}", last_reset),
        (65, f"{now + 2.0:.1f}", last_reset),
        (78, f"{now + 2.5:.1f}", last_reset),
    ]
    return script


def _current(new_cycle: bool, high: bool) -> float:
    """The sensor's value at the switch (12:33)."""
    return (5.5 if high else 1.0) if new_cycle else 6.5


def _expected(new_cycle: bool, high: bool) -> list[tuple[str, float]]:
    """zevvy's series: 5.0 at 12:15, then 5.0 plus everything counted since."""
    # What the sensor counted from 12:15: the rest of the old cycle (6.0 - 5.0)
    # and the new cycle in full; or, in the same cycle, the difference.
    if new_cycle:
        at_1230, at_switch = 5.0 + 1.0 + 1.0, 5.0 + 1.0 + _current(True, high)
    else:
        at_1230 = at_switch = _current(False, high)
    return [
        (_stamp(minute(15)), 5.0),
        (_stamp(minute(30)), round(at_1230, 3)),
        (_stamp(minute(45)), round(at_switch + 0.5, 3)),
        (_stamp(minute(0, 13)), round(at_switch + 1.0, 3)),
        (_stamp(minute(15, 13)), round(at_switch + 2.0, 3)),
    ]


def _register_meter(
    hass: HomeAssistant, entry: MockConfigEntry, entity: er.RegistryEntry
) -> str:
    subentry = ConfigSubentry(
        data={
            CONF_ENTITY_REGISTRY_ID: entity.id,
            CONF_ENTITY_ID: entity.entity_id,
            CONF_DEVICE_REF: "Counter",
            CONF_REGISTER_REF: "Energy",
        },
        subentry_type=SUBENTRY_TYPE_METER,
        title=meter_title("Counter", "Energy"),
        unique_id=entity.id,
    )
    hass.config_entries.async_add_subentry(entry, subentry)
    return subentry.subentry_id


async def _switch(
    hass: HomeAssistant, entry: MockConfigEntry, key: str, how: str
) -> None:
    """Switch the meter to a running total that keeps zevvy's last reading."""
    if how == "repair":
        issue_id = f"reading_held_{entry.entry_id}_{key}"
        assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
        assert await async_setup_component(hass, "repairs", {})
        manager = repairs_flow_manager(hass)
        assert manager is not None
        result = await manager.async_init(DOMAIN, data={"issue_id": issue_id})
        result = await manager.async_configure(
            result["flow_id"], {"next_step_id": "running_total"}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
    else:
        result = await hass.config_entries.subentries.async_init(
            (entry.entry_id, SUBENTRY_TYPE_METER),
            context={"source": SOURCE_RECONFIGURE, "subentry_id": key},
        )
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"],
            {
                CONF_DEVICE_REF: "Counter",
                CONF_REGISTER_REF: "Energy",
                CONF_READING_SOURCE: "running_total",
            },
        )
        assert result["step_id"] == "reconfigure_start"
        # Kept at zevvy's last reading (suggested).
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"],
            {
                CONF_START_VALUE: float(result["description_placeholders"]["last"]),
                CONF_REGISTER_REF: "Energy",
            },
        )
        assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    # Either way the held readings (the sensor's values after it restarted)
    # are discarded: no reading waits as a drop, no issue stays.
    issue_id = f"reading_held_{entry.entry_id}_{key}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    assert entry.runtime_data.outbox.held_count == 0


SHAPES = [
    pytest.param(True, False, "repair", id="new_cycle-repair"),
    pytest.param(True, True, "repair", id="new_cycle_past_last-repair"),
    pytest.param(True, False, "change", id="new_cycle-change_meter"),
    pytest.param(True, True, "change", id="new_cycle_past_last-change_meter"),
    pytest.param(False, False, "change", id="middle_of_cycle-change_meter"),
]


class TestWithRecorder:
    """Live ticks, gap fill and upload_history agree after the switch."""

    @pytest.fixture
    def mock_recorder_before_hass(self, async_test_recorder: Any) -> None:
        """Prepare the recorder's database before hass (recorder_mock needs it)."""

    @pytest.mark.parametrize(("new_cycle", "high", "how"), SHAPES)
    async def test_switch_counts_from_the_cycle_at_the_last_reading(
        self,
        recorder_mock: Recorder,
        hass: HomeAssistant,
        mock_config_entry: MockConfigEntry,
        sandbox: ZevvySandbox,
        freezer: FrozenDateTimeFactory,
        new_cycle: bool,
        high: bool,
        how: str,
    ) -> None:
        """The counter's last reading at zevvy is 5.0 (12:15); the switch at
        12:33 continues from it with the energy counted since, by the cycle the
        counter was in at 12:15, never the old cycle counted again; a twin added
        afterwards gets the same series from upload_history."""
        freezer.move_to(START)
        counter = add_sensor(hass, "daily_counter", "4.0", _cycle(DAY), "template")
        twin = add_sensor(hass, "twin_counter", "4.0", _cycle(DAY), "template")
        await async_wait_recording_done(hass)
        mock_config_entry.add_to_hass(hass)
        key = _register_meter(hass, mock_config_entry, counter)
        await setup_entry(hass, mock_config_entry)
        states = {o: (v, r) for o, v, r in _script(new_cycle, high)}
        base = START.replace(minute=0)
        for offset in range(8, 81):
            moment = base + timedelta(minutes=offset)
            await at(hass, freezer, moment)
            if offset % 5 == 0:
                do_adhoc_statistics(hass, start=moment - FIVE)
                await async_wait_recording_done(hass)
            if offset == 33:
                await _switch(hass, mock_config_entry, key, how)
            if offset == 57:
                assert await hass.config_entries.async_unload(
                    mock_config_entry.entry_id
                )
            if offset == 70:
                await setup_entry(hass, mock_config_entry)  # gap fill: 13:00
                await hass.async_block_till_done(wait_background_tasks=True)
            if (found := states.get(offset)) is not None:
                for entity in (counter, twin):
                    hass.states.async_set(entity.entity_id, found[0], _cycle(found[1]))
                await async_wait_recording_done(hass)

        # 12:30 (held as a drop before the switch) from the statistics, like
        # the quarter hours the integration was stopped.
        expected = _expected(new_cycle, high)
        assert readings(sandbox, "Counter") == expected

        # The same series from upload_history, for a twin that continues at
        # the same reading: 5.0 at 12:15 (6.5 at 12:30 in the same cycle).
        start_at = minute(15) if new_cycle else minute(30)
        expected = [r for r in expected if r[0] >= _stamp(start_at)]
        add_running_meter(
            hass,
            mock_config_entry,
            twin,
            device="Twin",
            start_value=expected[0][1],
            start_at=start_at,
        )
        response = await hass.services.async_call(
            DOMAIN,
            SERVICE_UPLOAD_HISTORY,
            {
                "start": base,
                "end": base + timedelta(hours=2),
                "meters": [twin.entity_id],
            },
            blocking=True,
            return_response=True,
        )
        assert response is not None
        await hass.async_block_till_done()
        assert readings(sandbox, "Twin") == expected


class TestWithoutRecorder:
    """Without the recorder only the current state is known at the switch."""

    @pytest.mark.parametrize(
        ("new_cycle", "high", "expected"),
        [
            # The old cycle's last 1.0 kWh is unknown; the new cycle counts.
            pytest.param(True, False, 6.5, id="new_cycle"),
            pytest.param(True, True, 11.0, id="new_cycle_past_last"),
            pytest.param(False, False, 7.0, id="middle_of_cycle"),
        ],
    )
    async def test_switch_without_recorder_counts_the_cycle_since(
        self,
        hass: HomeAssistant,
        mock_config_entry: MockConfigEntry,
        sandbox: ZevvySandbox,
        freezer: FrozenDateTimeFactory,
        new_cycle: bool,
        high: bool,
        expected: float,
    ) -> None:
        """The counter's ``last_reset`` tells whether it is still in the cycle
        of zevvy's last reading: the same cycle counts from that reading, a
        new one in full (never counted twice, never left out)."""
        freezer.move_to(START)
        counter = add_sensor(hass, "daily_counter", "4.0", _cycle(DAY), "template")
        mock_config_entry.add_to_hass(hass)
        key = _register_meter(hass, mock_config_entry, counter)
        await setup_entry(hass, mock_config_entry)
        states = {o: (v, r) for o, v, r in _script(new_cycle, high)}
        for offset in range(8, 46):
            await at(hass, freezer, minute(offset))
            if offset == 33:
                await _switch(hass, mock_config_entry, key, "change")
            if (found := states.get(offset)) is not None:
                hass.states.async_set(counter.entity_id, found[0], _cycle(found[1]))
        assert readings(sandbox, "Counter")[-1] == (_stamp(minute(45)), expected)

    @pytest.mark.parametrize(
        ("early", "switch_at", "reset_at", "values", "last"),
        [
            # The old cycle ends at 5.0 (zevvy's last reading, 12:15); the new
            # cycle, whose last_reset is 12:15, counts in full: 5.0 + 1.5.
            pytest.param(
                False, 22, 15, LOW, (45, 6.5), id="new_cycle_after_the_reading"
            ),
            pytest.param(
                False, 33, 15, LOW, (45, 6.5), id="new_cycle_after_the_reading-held"
            ),
            # The device's clock runs ahead: the new cycle's first state
            # (0.2) came before 12:15, so zevvy's 12:15 reading is that
            # cycle's: it counts from 0.2 on (1.5 at 12:40).
            pytest.param(
                True, 22, 15, LOW, (45, 1.5), id="new_cycle_before_the_reading"
            ),
            # The device reports its reset late (soak seeds 1843, 1100): the
            # new cycle's last_reset (12:10) is before zevvy's 12:15 reading,
            # which still had the old cycle's 5.0; the new cycle reads below
            # it, so it began after that reading: 5.0 + 1.5, or 5.0 + 4.8
            # when it had counted almost as far by the switch.
            pytest.param(False, 22, 10, LOW, (45, 6.5), id="reset_reported_late"),
            pytest.param(False, 33, 10, LOW, (45, 6.5), id="reset_reported_late-held"),
            pytest.param(
                False, 22, 10, HIGH, (45, 9.8), id="reset_reported_late-counted_far"
            ),
            # A last_reset more than an hour before zevvy's reading: that
            # reading was of this cycle, which went down since (a decrease,
            # held back like any drop; nothing counted twice).
            pytest.param(False, 22, -120, LOW, (15, 5.0), id="cycle_long_before"),
        ],
    )
    async def test_switch_at_the_start_of_a_cycle(
        self,
        hass: HomeAssistant,
        mock_config_entry: MockConfigEntry,
        sandbox: ZevvySandbox,
        freezer: FrozenDateTimeFactory,
        early: bool,
        switch_at: int,
        reset_at: int,
        values: tuple[str, str, str],
        last: tuple[int, float],
    ) -> None:
        """zevvy's last reading is at (or within the hour after) the quarter
        hour a new cycle's ``last_reset`` names (midnight for a daily
        counter): the reading is the cycle that was on the sensor then, the
        old one's end unless the new cycle's first state came before it; the
        switch counts on from there, the series never drops."""
        cycle = (minute(0) + timedelta(minutes=reset_at)).isoformat()
        freezer.move_to(START)
        counter = add_sensor(hass, "daily_counter", "4.0", _cycle(DAY), "template")
        mock_config_entry.add_to_hass(hass)
        key = _register_meter(hass, mock_config_entry, counter)
        await setup_entry(hass, mock_config_entry)
        entity_id = counter.entity_id
        await at(hass, freezer, minute(10))
        hass.states.async_set(entity_id, "5.0", _cycle(DAY))
        if early:
            await at(hass, freezer, minute(14) + timedelta(seconds=59))
            hass.states.async_set(entity_id, "0.2", _cycle(cycle))
        script = dict(zip((17, 28, 40), values, strict=True))
        for offset in range(15, 46):
            await at(hass, freezer, minute(offset))
            if offset == switch_at:
                await _switch(hass, mock_config_entry, key, "change")
            if (value := script.get(offset)) is not None and (not early or offset > 17):
                hass.states.async_set(entity_id, value, _cycle(cycle))
        first = 0.2 if early else 5.0
        series = readings(sandbox, "Counter")
        assert series[0] == (_stamp(minute(15)), first)
        assert series[-1] == (_stamp(minute(last[0])), last[1])
        assert [value for _at, value in series] == sorted(
            value for _at, value in series
        )
