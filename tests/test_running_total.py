"""Chargers and counters that restart from zero: a reading that only goes up.

A meter with the reading source "running total" delivers its start value plus
everything its sensor counted since, across resets, by Home Assistant's
statistics rule. The sensors here have the shapes of real ones: wallbox's
``added_energy`` (kWh, total_increasing, back to 0 at each charging session),
peblar's ``energy_session`` (Wh), a utility_meter daily cycle (``total`` with
``last_reset``). The clock is frozen; ticks fire on the quarter hours; readings
travel to the sandbox over HTTP.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    SOURCE_USER,
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

from custom_components.zevvy.const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_READING_SOURCE,
    CONF_REGISTER_REF,
    CONF_START_VALUE,
    DOMAIN,
    SOURCE_RUNNING_TOTAL,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.meters import meter_title, source_data
from custom_components.zevvy.pipeline import ReadingPipeline
from zevvy_sandbox import ZevvySandbox

START = datetime(2026, 11, 26, 12, 7, tzinfo=UTC)
Q0 = datetime(2026, 11, 26, 12, 15, tzinfo=UTC)

KWH_SESSION = {"unit_of_measurement": "kWh", "state_class": "total_increasing"}
WH_SESSION = {"unit_of_measurement": "Wh", "state_class": "total_increasing"}


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def add_sensor(
    hass: HomeAssistant,
    name: str,
    value: str,
    attributes: dict[str, Any],
    platform: str = "test",
) -> er.RegistryEntry:
    """Register a sensor and set its first state."""
    entity = er.async_get(hass).async_get_or_create(
        "sensor", platform, f"uid_{name}", suggested_object_id=name
    )
    hass.states.async_set(entity.entity_id, value, attributes)
    return entity


def add_running_meter(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    entity: er.RegistryEntry,
    *,
    device: str,
    start_value: float = 0.0,
    start_at: datetime = Q0,
) -> str:
    """Add a running-total meter subentry for ``entity``; return its id."""
    subentry = ConfigSubentry(
        data={
            CONF_ENTITY_REGISTRY_ID: entity.id,
            CONF_ENTITY_ID: entity.entity_id,
            CONF_DEVICE_REF: device,
            CONF_REGISTER_REF: "Energy",
            **source_data(SOURCE_RUNNING_TOTAL, start_value, int(start_at.timestamp())),
        },
        subentry_type=SUBENTRY_TYPE_METER,
        title=meter_title(device, "Energy"),
        unique_id=entity.id,
    )
    hass.config_entries.async_add_subentry(entry, subentry)
    return subentry.subentry_id


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> ReadingPipeline:
    """Set up (or reload) the entry; return its pipeline."""
    if entry.entry_id not in {e.entry_id for e in hass.config_entries.async_entries()}:
        entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    pipeline: ReadingPipeline = entry.runtime_data.pipeline
    return pipeline


async def at(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, moment: datetime
) -> None:
    """Move the clock to ``moment`` and run what is due (ticks, uploads).

    State changes made before are handled first (time passes in between).
    """
    await hass.async_block_till_done()
    freezer.move_to(moment)
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


def readings(
    sandbox: ZevvySandbox, device: str, register: str = "Energy"
) -> list[tuple[str, float]]:
    return [(r.read_at, r.value) for r in sandbox.readings(device, register)]


def minute(value: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, 26, hour, value, tzinfo=UTC)


async def test_wallbox_sessions_give_a_reading_that_only_goes_up(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Sessions restart at 0, the sensor is unavailable in between, resets to a
    small value and resets while the integration is stopped: zevvy receives the
    start value plus the energy charged, never less than before."""
    freezer.move_to(START)
    charger = add_sensor(hass, "wallbox_added_energy", "3.0", KWH_SESSION)
    mock_config_entry.add_to_hass(hass)
    add_running_meter(
        hass, mock_config_entry, charger, device="Wallbox", start_value=100.0
    )
    pipeline = await setup_entry(hass, mock_config_entry)
    script: list[tuple[datetime, str]] = [
        (minute(10), "4.0"),  # before the meter's start: not counted
        (minute(20), "6.0"),  # +2
        (minute(25), "0.0"),  # a new session: +0
        (minute(28), "1.5"),  # +1.5
        (minute(35), "unavailable"),
        (minute(40), "0.3"),  # a new session, starts at 0.3: +0.3
        (minute(50), "2.0"),  # +1.7
    ]
    for moment, value in script:
        await at(hass, freezer, moment)
        hass.states.async_set(charger.entity_id, value, KWH_SESSION)
    await at(hass, freezer, minute(0, 13))

    # Stopped; meanwhile a new session began and counted 0.4 kWh.
    await at(hass, freezer, minute(2, 13))
    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await at(hass, freezer, minute(5, 13))
    hass.states.async_set(charger.entity_id, "0.4", KWH_SESSION)
    await at(hass, freezer, minute(10, 13))
    pipeline = await setup_entry(hass, mock_config_entry)
    await at(hass, freezer, minute(12, 13))
    hass.states.async_set(charger.entity_id, "1.0", KWH_SESSION)  # +0.6
    await at(hass, freezer, minute(15, 13))

    assert readings(sandbox, "Wallbox") == [
        (_stamp(minute(15)), 100.0),
        (_stamp(minute(30)), 103.5),
        (_stamp(minute(45)), 103.8),
        (_stamp(minute(0, 13)), 105.5),
        (_stamp(minute(15, 13)), 106.5),
    ]
    assert pipeline.outbox.held_count == 0
    assert not [
        issue
        for (domain, _), issue in ir.async_get(hass).issues.items()
        if domain == DOMAIN
    ]


async def test_daily_cycle_with_last_reset(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A ``total`` sensor (Wh) that starts a new cycle at midnight (new
    ``last_reset``): the new cycle's first value counts in full."""
    day1 = "2026-11-26T00:00:00+00:00"
    day2 = "2026-11-27T00:00:00+00:00"

    def daily(last_reset: str) -> dict[str, Any]:
        return {
            "unit_of_measurement": "Wh",
            "state_class": "total",
            "last_reset": last_reset,
        }

    freezer.move_to(datetime(2026, 11, 26, 23, 37, tzinfo=UTC))
    counter = add_sensor(hass, "daily_energy", "5000", daily(day1), "utility_meter")
    mock_config_entry.add_to_hass(hass)
    add_running_meter(
        hass,
        mock_config_entry,
        counter,
        device="Daily",
        start_at=datetime(2026, 11, 26, 23, 45, tzinfo=UTC),
    )
    await setup_entry(hass, mock_config_entry)
    script = [
        (minute(50, 23), "5600", day1),  # +0.6
        (minute(55, 23), "5800", day1),  # +0.2
        (datetime(2026, 11, 27, 0, 5, tzinfo=UTC), "150", day2),  # new cycle +0.15
        (datetime(2026, 11, 27, 0, 10, tzinfo=UTC), "400", day2),  # +0.25
    ]
    for moment, value, last_reset in script:
        await at(hass, freezer, moment)
        hass.states.async_set(counter.entity_id, value, daily(last_reset))
    await at(hass, freezer, datetime(2026, 11, 27, 0, 15, tzinfo=UTC))

    assert readings(sandbox, "Daily") == [
        ("2026-11-26T23:45:00.000Z", 0.0),
        ("2026-11-27T00:00:00.000Z", 0.8),
        ("2026-11-27T00:15:00.000Z", 1.2),
    ]


def _suggested(result: Any) -> dict[str, Any]:
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


@pytest.mark.parametrize(
    ("platform", "unique_id", "attributes", "translation_key", "source"),
    [
        # wallbox: per charging session, no word says so
        ("wallbox", "added_energy-123", KWH_SESSION, "added_energy", "running_total"),
        # peblar: the translation key says session
        ("peblar", "abc_energy_session", WH_SESSION, "energy_session", "running_total"),
        ("peblar", "abc_energy_total", WH_SESSION, "energy_total", "sensor"),
        # tesla_wall_connector's session energy
        ("tesla_wall_connector", "x", WH_SESSION, "session_energy_wh", "running_total"),
        # ohme's energy is per session
        ("ohme", "ohme_energy", WH_SESSION, None, "running_total"),
        # a utility_meter helper restarts every cycle
        ("utility_meter", "um_daily", KWH_SESSION, None, "running_total"),
        # a total with last_reset
        (
            "template",
            "t",
            {**KWH_SESSION, "state_class": "total", "last_reset": "2026-11-26"},
            None,
            "running_total",
        ),
        ("template", "grid", KWH_SESSION, None, "sensor"),
    ],
)
async def test_add_meter_suggests_running_total_for_restarting_sensors(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
    platform: str,
    unique_id: str,
    attributes: dict[str, Any],
    translation_key: str | None,
    source: str,
) -> None:
    """Chargers' session sensors, daily counters and utility meters are suggested
    as running totals; a meter register as the sensor's value."""
    freezer.move_to(START)
    entity = er.async_get(hass).async_get_or_create(
        "sensor", platform, unique_id, translation_key=translation_key
    )
    hass.states.async_set(entity.entity_id, "2.5", attributes)
    await hass.config.async_set_time_zone("Europe/Zurich")
    await setup_entry(hass, mock_config_entry)
    result = await hass.config_entries.subentries.async_init(
        (mock_config_entry.entry_id, SUBENTRY_TYPE_METER),
        context={"source": SOURCE_USER},
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_ENTITY_ID: entity.entity_id}
    )
    assert result["step_id"] == "references"
    assert _suggested(result)[CONF_READING_SOURCE] == source
    assert result["description_placeholders"]["suggested"] == source
    # Accepted: a running total asks its start value, a register creates.
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], _suggested(result)
    )
    if source == "running_total":
        assert result["step_id"] == "start"
        assert result["description_placeholders"]["start"] == "2026-11-26 13:15"
        assert _suggested(result) == {CONF_START_VALUE: 0.0}
    else:
        assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_add_charger_as_running_total_from_its_own_count(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Adding a wallbox with the charger's own meter reading as start value:
    zevvy receives it at the next quarter hour, then the energy charged on top."""
    freezer.move_to(START)
    charger = add_sensor(hass, "garage_added_energy", "7.2", KWH_SESSION, "wallbox")
    await setup_entry(hass, mock_config_entry)
    result = await hass.config_entries.subentries.async_init(
        (mock_config_entry.entry_id, SUBENTRY_TYPE_METER),
        context={"source": SOURCE_USER},
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_ENTITY_ID: charger.entity_id}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            CONF_DEVICE_REF: "Garage",
            CONF_REGISTER_REF: "Energy",
            CONF_READING_SOURCE: "running_total",
        },
    )
    assert result["step_id"] == "start"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_START_VALUE: 1234.5}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await at(hass, freezer, minute(12))
    hass.states.async_set(charger.entity_id, "8.0", KWH_SESSION)  # before start
    await at(hass, freezer, minute(15))
    await at(hass, freezer, minute(20))
    hass.states.async_set(charger.entity_id, "0.0", KWH_SESSION)  # new session
    await at(hass, freezer, minute(25))
    hass.states.async_set(charger.entity_id, "2.25", KWH_SESSION)
    await at(hass, freezer, minute(30))
    assert readings(sandbox, "Garage") == [
        (_stamp(minute(15)), 1234.5),
        (_stamp(minute(30)), 1236.75),
    ]


async def _deliver_session_values(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> tuple[er.RegistryEntry, str]:
    """A session sensor chosen as a meter register delivers 5.0 at 12:15 and
    6.0 at 12:30; return it and its meter's subentry id."""
    freezer.move_to(START)
    charger = add_sensor(hass, "charger_energy", "5.0", KWH_SESSION)
    entry.add_to_hass(hass)
    subentry = ConfigSubentry(
        data={
            CONF_ENTITY_REGISTRY_ID: charger.id,
            CONF_ENTITY_ID: charger.entity_id,
            CONF_DEVICE_REF: "Charger",
            CONF_REGISTER_REF: "Energy",
        },
        subentry_type=SUBENTRY_TYPE_METER,
        title=meter_title("Charger", "Energy"),
        unique_id=charger.id,
    )
    hass.config_entries.async_add_subentry(entry, subentry)
    await setup_entry(hass, entry)
    await at(hass, freezer, minute(15))
    hass.states.async_set(charger.entity_id, "6.0", KWH_SESSION)
    await at(hass, freezer, minute(30))
    return charger, subentry.subentry_id


async def test_register_that_drops_switches_to_running_total_in_repairs(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A session sensor chosen as a meter register drops at the next session:
    the repair offers the switch to a running total, which continues zevvy's
    series from the last reading with everything charged since."""
    charger, key = await _deliver_session_values(hass, mock_config_entry, freezer)
    hass.states.async_set(charger.entity_id, "0.0", KWH_SESSION)  # new session
    await at(hass, freezer, minute(33))
    hass.states.async_set(charger.entity_id, "1.0", KWH_SESSION)
    await at(hass, freezer, minute(45))
    issue_id = f"reading_held_{mock_config_entry.entry_id}_{key}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None

    assert await async_setup_component(hass, "repairs", {})
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result = await manager.async_init(DOMAIN, data={"issue_id": issue_id})
    assert result["menu_options"] == ["replaced", "discard", "running_total"]
    result = await manager.async_configure(
        result["flow_id"], {"next_step_id": "running_total"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    assert mock_config_entry.subentries[key].data[CONF_READING_SOURCE] == (
        "running_total"
    )

    await at(hass, freezer, minute(50))
    hass.states.async_set(charger.entity_id, "1.5", KWH_SESSION)
    await at(hass, freezer, minute(0, 13))
    assert readings(sandbox, "Charger") == [
        (_stamp(minute(15)), 5.0),
        (_stamp(minute(30)), 6.0),
        (_stamp(minute(0, 13)), 7.5),
    ]


@pytest.mark.parametrize(
    ("start_value", "expected"),
    [
        # Kept at the last reading: zevvy's series continues with what was
        # charged since (a new session of 2.0 kWh).
        (None, 8.0),
        # A new start value: the running total starts there at 12:45.
        (100.0, 100.0),
    ],
)
async def test_reconfigure_switches_to_running_total(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
    start_value: float | None,
    expected: float,
) -> None:
    """Reconfigure: the source switches to a running total, continuing zevvy's
    series from its last reading or from a new start value."""
    await hass.config.async_set_time_zone("Europe/Zurich")
    charger, key = await _deliver_session_values(hass, mock_config_entry, freezer)
    hass.states.async_set(charger.entity_id, "0.0", KWH_SESSION)
    await at(hass, freezer, minute(35))
    hass.states.async_set(charger.entity_id, "2.0", KWH_SESSION)
    result = await hass.config_entries.subentries.async_init(
        (mock_config_entry.entry_id, SUBENTRY_TYPE_METER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": key},
    )
    assert _suggested(result)[CONF_READING_SOURCE] == "sensor"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            CONF_DEVICE_REF: "Charger",
            CONF_REGISTER_REF: "Energy",
            CONF_READING_SOURCE: "running_total",
        },
    )
    assert result["step_id"] == "reconfigure_start"
    assert result["description_placeholders"]["last"] == "6.000"
    assert result["description_placeholders"]["last_at"] == "2026-11-26 13:30"
    assert _suggested(result) == {CONF_START_VALUE: 6.0, CONF_REGISTER_REF: "Energy"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {CONF_START_VALUE: start_value or 6.0, CONF_REGISTER_REF: "Energy"},
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    await at(hass, freezer, minute(45))
    assert readings(sandbox, "Charger")[-1] == (_stamp(minute(45)), expected)

    # And back to the sensor's value: zevvy gets what the sensor shows.
    result = await hass.config_entries.subentries.async_init(
        (mock_config_entry.entry_id, SUBENTRY_TYPE_METER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": key},
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            CONF_DEVICE_REF: "Charger",
            CONF_REGISTER_REF: "Sessions",
            CONF_READING_SOURCE: "sensor",
        },
    )
    assert result["reason"] == "reconfigure_successful"
    await at(hass, freezer, minute(0, 13))
    assert readings(sandbox, "Charger", "Sessions") == [(_stamp(minute(0, 13)), 2.0)]


async def test_reconfigure_start_new_series_under_a_new_register(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The start step offers the register name itself (flows have no back
    button): a lower start value under a new name is a new series, not a drop."""
    charger, key = await _deliver_session_values(hass, mock_config_entry, freezer)
    result = await hass.config_entries.subentries.async_init(
        (mock_config_entry.entry_id, SUBENTRY_TYPE_METER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": key},
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {
            CONF_DEVICE_REF: "Charger",
            CONF_REGISTER_REF: "Energy",
            CONF_READING_SOURCE: "running_total",
        },
    )
    assert result["step_id"] == "reconfigure_start"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_START_VALUE: 0.0, CONF_REGISTER_REF: " . "}
    )
    assert result["errors"] == {CONF_REGISTER_REF: "invalid_reference"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_START_VALUE: 0.0, CONF_REGISTER_REF: "Sessions"}
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    await at(hass, freezer, minute(45))
    assert readings(sandbox, "Charger", "Sessions") == [(_stamp(minute(45)), 0.0)]
    assert mock_config_entry.runtime_data.outbox.held_count == 0


async def test_late_tick_files_the_total_of_its_quarter_hour(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A tick that runs late (after the charger reported again) still delivers
    the running total as it was at the quarter hour."""
    freezer.move_to(START)
    charger = add_sensor(hass, "late_session_energy", "3.0", KWH_SESSION)
    mock_config_entry.add_to_hass(hass)
    add_running_meter(hass, mock_config_entry, charger, device="Late")
    await setup_entry(hass, mock_config_entry)
    await at(hass, freezer, minute(15))
    await at(hass, freezer, minute(29))
    hass.states.async_set(charger.entity_id, "4.0", KWH_SESSION)
    # The event loop was busy: the charger reports 9.0 before the tick runs.
    freezer.move_to(minute(30) + timedelta(seconds=20))
    hass.states.async_set(charger.entity_id, "9.0", KWH_SESSION)
    await hass.async_block_till_done()
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    await at(hass, freezer, minute(45))
    assert readings(sandbox, "Late") == [
        (_stamp(minute(15)), 0.0),
        (_stamp(minute(30)), 1.0),
        (_stamp(minute(45)), 6.0),
    ]


def _session(last_reset: str) -> dict[str, Any]:
    """A charging session's energy as a template sensor gives it (kWh, total)."""
    return {
        "unit_of_measurement": "kWh",
        "state_class": "total",
        "last_reset": last_reset,
    }


async def _set_after(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    seconds: float,
    entity_id: str,
    value: str,
    last_reset: str,
) -> None:
    """Set a state ``seconds`` later, without firing the time (no tick runs)."""
    await hass.async_block_till_done()
    freezer.tick(timedelta(seconds=seconds))
    hass.states.async_set(entity_id, value, _session(last_reset))
    await hass.async_block_till_done()


async def test_session_whose_value_falls_before_its_last_reset_loses_nothing(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A template sensor renders a session's energy and its ``last_reset`` one
    after the other: when a session starts, the value falls to 0 a moment
    before the new ``last_reset`` follows (the end-to-end test's EV charger
    session, whose session started on a quarter hour once in CI). The session
    before still counts in full and the new one from 0: no reading goes down
    or is missing. (Home Assistant's statistics ``sum`` loses the session
    before: a decrease, then a new cycle.)"""
    old, new = "2026-11-26T08:00:00+00:00", "2026-11-26T12:30:00+00:00"
    freezer.move_to(START)
    charger = add_sensor(hass, "ev_session", "10.0", _session(old), "template")
    mock_config_entry.add_to_hass(hass)
    add_running_meter(hass, mock_config_entry, charger, device="EV session")
    await setup_entry(hass, mock_config_entry)
    await at(hass, freezer, minute(15))
    await at(hass, freezer, minute(20))
    hass.states.async_set(charger.entity_id, "11.0", _session(old))  # +1.0
    await at(hass, freezer, minute(30))
    # The new session, on the quarter hour: its value, then its last_reset.
    await _set_after(hass, freezer, 0.19, charger.entity_id, "0.0", old)
    await _set_after(hass, freezer, 0.17, charger.entity_id, "0.0", new)
    await at(hass, freezer, minute(40))
    hass.states.async_set(charger.entity_id, "0.5", _session(new))  # +0.5
    await at(hass, freezer, minute(45))
    # The next session: its value falls just before a quarter hour, and its
    # last_reset (the quarter hour) comes just after it, before a late tick.
    hass.states.async_set(charger.entity_id, "2.0", _session(new))  # +1.5
    freezer.move_to(minute(59) + timedelta(seconds=59.8))
    hass.states.async_set(charger.entity_id, "0.0", _session(new))
    await hass.async_block_till_done()
    freezer.move_to(minute(0, 13) + timedelta(seconds=0.3))
    hass.states.async_set(
        charger.entity_id, "0.0", _session("2026-11-26T13:00:00+00:00")
    )
    await at(hass, freezer, minute(0, 13) + timedelta(seconds=1))

    assert readings(sandbox, "EV session") == [
        (_stamp(minute(15)), 0.0),
        (_stamp(minute(30)), 1.0),
        (_stamp(minute(45)), 1.5),
        (_stamp(minute(0, 13)), 3.0),
    ]


async def test_meter_starting_between_a_fall_and_its_last_reset(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A session's value falls just before the meter's first quarter hour and
    its new last_reset comes just after it: the meter counts from its start,
    what the new session charged since (not the session before as well)."""
    old, new = "2026-11-26T08:00:00+00:00", "2026-11-26T12:15:00+00:00"
    freezer.move_to(START)
    charger = add_sensor(hass, "start_session", "10.0", _session(old), "template")
    mock_config_entry.add_to_hass(hass)
    add_running_meter(
        hass, mock_config_entry, charger, device="Start session", start_value=7.0
    )
    await setup_entry(hass, mock_config_entry)
    freezer.move_to(minute(14) + timedelta(seconds=59.8))
    hass.states.async_set(charger.entity_id, "0.0", _session(old))
    await at(hass, freezer, minute(15))
    await _set_after(hass, freezer, 0.3, charger.entity_id, "0.0", new)
    await at(hass, freezer, minute(20))
    hass.states.async_set(charger.entity_id, "1.0", _session(new))  # +1.0
    await at(hass, freezer, minute(30))
    assert readings(sandbox, "Start session") == [
        (_stamp(minute(15)), 7.0),
        (_stamp(minute(30)), 8.0),
    ]


async def test_fall_long_before_a_new_cycle_counts_as_home_assistant_counts_it(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A ``total`` sensor whose value falls within its cycle, and whose next
    cycle begins later (its last_reset more than a minute after the fall):
    the fall is a decrease, as Home Assistant counts it, not the new cycle's
    start (the reading goes down and is held back)."""
    old, new = "2026-11-26T08:00:00+00:00", "2026-11-26T12:35:00+00:00"
    freezer.move_to(START)
    meter = add_sensor(hass, "net_session", "10.0", _session(old), "template")
    mock_config_entry.add_to_hass(hass)
    add_running_meter(
        hass, mock_config_entry, meter, device="Net session", start_value=20.0
    )
    pipeline = await setup_entry(hass, mock_config_entry)
    await at(hass, freezer, minute(15))
    await at(hass, freezer, minute(20))
    hass.states.async_set(meter.entity_id, "4.0", _session(old))  # -6.0
    await at(hass, freezer, minute(30))
    await at(hass, freezer, minute(36))
    hass.states.async_set(meter.entity_id, "1.0", _session(new))  # +1.0
    await at(hass, freezer, minute(45))
    assert readings(sandbox, "Net session") == [(_stamp(minute(15)), 20.0)]
    # 14.0 at 12:30 and 15.0 at 12:45: held back, below 20.0.
    assert pipeline.outbox.held_count == 2


async def test_small_dip_is_held_like_home_assistant_counts_it(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Home Assistant's rule: a value less than 10 % below the one before is no
    restart but a decrease (and a negative value is ignored). The running total
    goes down, and that reading is held back with a repair like any drop."""
    freezer.move_to(START)
    charger = add_sensor(hass, "dip_session_energy", "10.0", KWH_SESSION)
    mock_config_entry.add_to_hass(hass)
    key = add_running_meter(
        hass, mock_config_entry, charger, device="Dip", start_value=50.125
    )
    pipeline = await setup_entry(hass, mock_config_entry)
    await at(hass, freezer, minute(15))
    await at(hass, freezer, minute(20))
    hass.states.async_set(charger.entity_id, "-1.0", KWH_SESSION)  # ignored
    await at(hass, freezer, minute(22))
    hass.states.async_set(charger.entity_id, "9.5", KWH_SESSION)  # a dip: -0.5
    await at(hass, freezer, minute(30))
    assert readings(sandbox, "Dip") == [(_stamp(minute(15)), 50.125)]
    assert pipeline.outbox.held_count == 1
    issue_id = f"reading_held_{mock_config_entry.entry_id}_{key}"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["value"] == "49.625"


async def test_meter_whose_start_passed_unseen_counts_from_its_first_state(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A running total whose start is before anything known of its sensor (its
    state was lost, and no recorder to replay) starts at the first quarter hour
    it can tell, with a warning."""
    freezer.move_to(START)
    charger = add_sensor(hass, "lost_session_energy", "3.0", KWH_SESSION)
    mock_config_entry.add_to_hass(hass)
    add_running_meter(
        hass,
        mock_config_entry,
        charger,
        device="Lost",
        start_value=20.0,
        start_at=minute(0),
    )
    await setup_entry(hass, mock_config_entry)
    await at(hass, freezer, minute(10))
    hass.states.async_set(charger.entity_id, "3.5", KWH_SESSION)
    await at(hass, freezer, minute(15))
    assert readings(sandbox, "Lost") == [(_stamp(minute(15)), 20.0)]
    assert "state at the meter's start is unknown" in caplog.text


async def test_outbox_stored_before_running_totals_loads_and_keeps_them(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """An outbox written by an older version (no running-total states) loads
    with its readings; afterwards the running total is kept in the same file."""
    freezer.move_to(START)
    charger = add_sensor(hass, "old_session_energy", "1.0", KWH_SESSION)
    mock_config_entry.add_to_hass(hass)
    key = add_running_meter(hass, mock_config_entry, charger, device="Old")
    hass_storage[f"{DOMAIN}.{mock_config_entry.entry_id}.outbox"] = {
        "version": 1,
        "minor_version": 1,
        "key": f"{DOMAIN}.{mock_config_entry.entry_id}.outbox",
        "data": {
            "queues": {
                "ref:Manual/Energy": {
                    "device": "Manual",
                    "register": "Energy",
                    "last": None,
                    "pending": {"t": [int(minute(0).timestamp())], "v": [5.0]},
                    "held": None,
                    "parked": None,
                    "parked_message": None,
                }
            },
            "overflow_dropped": 0,
        },
    }
    await setup_entry(hass, mock_config_entry)
    await at(hass, freezer, minute(12))
    hass.states.async_set(charger.entity_id, "1.5", KWH_SESSION)
    await at(hass, freezer, minute(15))
    await at(hass, freezer, minute(20))
    hass.states.async_set(charger.entity_id, "2.5", KWH_SESSION)
    await at(hass, freezer, minute(30))
    assert readings(sandbox, "Manual") == [(_stamp(minute(0)), 5.0)]
    assert readings(sandbox, "Old") == [
        (_stamp(minute(15)), 0.0),
        (_stamp(minute(30)), 1.0),
    ]
    await hass.config_entries.async_unload(mock_config_entry.entry_id)
    stored = hass_storage[f"{DOMAIN}.{mock_config_entry.entry_id}.outbox"]["data"]
    assert stored["meter_states"][key]["value"] == 2.5
