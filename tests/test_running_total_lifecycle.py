"""A running total across the life of Home Assistant and of its sensor.

Home Assistant stops or the entry is unloaded between two quarter hours (the
running total's latest state is written), and the charger's entity id is
renamed in the entity registry (the running total follows it). No recorder: what
is not written or not followed is lost for good.
"""

from __future__ import annotations

from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import (
    EVENT_HOMEASSISTANT_FINAL_WRITE,
    EVENT_HOMEASSISTANT_STOP,
)
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy.const import DOMAIN
from zevvy_sandbox import ZevvySandbox

from .test_running_total import (
    KWH_SESSION,
    START,
    _stamp,
    add_running_meter,
    add_sensor,
    at,
    minute,
    readings,
    setup_entry,
)


def _stored_state(
    hass_storage: dict[str, Any], entry: MockConfigEntry, key: str
) -> dict[str, Any]:
    stored = hass_storage[f"{DOMAIN}.{entry.entry_id}.outbox"]["data"]
    state: dict[str, Any] = stored["meter_states"][key]
    return state


async def _charge_after_a_tick(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> tuple[er.RegistryEntry, str]:
    """A charger (3.0 kWh in its session) counted from 12:15 at 100.0 charges
    1.5 kWh after the 12:15 tick; return it and its meter's subentry id."""
    freezer.move_to(START)
    charger = add_sensor(hass, "wallbox_added_energy", "3.0", KWH_SESSION)
    entry.add_to_hass(hass)
    key = add_running_meter(hass, entry, charger, device="Wallbox", start_value=100.0)
    await setup_entry(hass, entry)
    await at(hass, freezer, minute(15))
    await at(hass, freezer, minute(20))
    hass.states.async_set(charger.entity_id, "4.0", KWH_SESSION)
    await at(hass, freezer, minute(25))
    hass.states.async_set(charger.entity_id, "4.5", KWH_SESSION)
    await at(hass, freezer, minute(27))
    return charger, key


async def test_unload_writes_the_latest_running_state(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Unloaded at 12:27 after 1.5 kWh were charged; meanwhile a new session
    charges 1.0 kWh. After the start the reading includes both sessions."""
    charger, key = await _charge_after_a_tick(hass, mock_config_entry, freezer)
    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    stored = _stored_state(hass_storage, mock_config_entry, key)
    assert (stored["value"], stored["counted"]) == (4.5, 1.5)

    await at(hass, freezer, minute(35))
    hass.states.async_set(charger.entity_id, "0.0", KWH_SESSION)  # a new session
    await at(hass, freezer, minute(38))
    hass.states.async_set(charger.entity_id, "1.0", KWH_SESSION)
    await at(hass, freezer, minute(40))
    await setup_entry(hass, mock_config_entry)
    await at(hass, freezer, minute(45))
    assert readings(sandbox, "Wallbox") == [
        (_stamp(minute(15)), 100.0),
        (_stamp(minute(45)), 102.5),
    ]


async def test_home_assistant_stop_writes_the_latest_running_state(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Home Assistant stops at 12:27 (no unload): its final write holds the
    1.5 kWh charged since the 12:15 tick."""
    _charger, key = await _charge_after_a_tick(hass, mock_config_entry, freezer)
    hass.set_state(CoreState.stopping)
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    hass.set_state(CoreState.final_write)
    hass.bus.async_fire(EVENT_HOMEASSISTANT_FINAL_WRITE)
    await hass.async_block_till_done()
    stored = _stored_state(hass_storage, mock_config_entry, key)
    assert (stored["value"], stored["counted"]) == (4.5, 1.5)
    hass.set_state(CoreState.running)


@pytest.mark.parametrize("reload", [False, True], ids=["live", "reload"])
async def test_renamed_charger_keeps_counting(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
    reload: bool,
) -> None:
    """The charger's entity id is renamed in the entity registry at 12:16, then
    two sessions charge 2.0 and 1.5 kWh (and the entry is reloaded after
    them): the 12:30 reading has both."""
    freezer.move_to(START)
    charger = add_sensor(hass, "wallbox_added_energy", "3.0", KWH_SESSION)
    mock_config_entry.add_to_hass(hass)
    add_running_meter(
        hass, mock_config_entry, charger, device="Wallbox", start_value=100.0
    )
    await setup_entry(hass, mock_config_entry)
    await at(hass, freezer, minute(15))
    await at(hass, freezer, minute(16))
    new_id = "sensor.garage_charger_energy"
    er.async_get(hass).async_update_entity(charger.entity_id, new_entity_id=new_id)
    # What the entity platform does on a rename: the state moves to the new id.
    hass.states.async_remove(charger.entity_id)
    hass.states.async_set(new_id, "3.0", KWH_SESSION)
    script = [(18, "0.0"), (20, "2.0"), (22, "0.0"), (25, "1.5")]
    for moment, value in script:
        await at(hass, freezer, minute(moment))
        hass.states.async_set(new_id, value, KWH_SESSION)
    if reload:
        await at(hass, freezer, minute(27))
        assert await hass.config_entries.async_reload(mock_config_entry.entry_id)
        await hass.async_block_till_done()
    await at(hass, freezer, minute(30))
    assert readings(sandbox, "Wallbox") == [
        (_stamp(minute(15)), 100.0),
        (_stamp(minute(30)), 103.5),
    ]


async def test_clock_set_back_keeps_the_sessions_it_sees(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """At 12:28 the clock is set back to 11:50: the charger's states are
    stamped before the last one the running total saw. Two sessions (2.0 and
    1.5 kWh) in that half hour still count, once."""
    charger, _key = await _charge_after_a_tick(hass, mock_config_entry, freezer)
    await at(hass, freezer, minute(28))
    freezer.move_to(minute(50, 11))
    script = [(52, "0.0"), (55, "2.0"), (58, "0.0"), (59, "1.5")]
    for moment, value in script:
        await at(hass, freezer, minute(moment, 11))
        hass.states.async_set(charger.entity_id, value, KWH_SESSION)
    # The clock is right again.
    await at(hass, freezer, minute(29))
    hass.states.async_set(charger.entity_id, "2.0", KWH_SESSION)
    await at(hass, freezer, minute(30))
    assert readings(sandbox, "Wallbox") == [
        (_stamp(minute(15)), 100.0),
        (_stamp(minute(30)), 105.5),
    ]


async def test_running_state_stored_before_anchors_loads(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A running state written by the previous version (no ``anchor``) loads
    and keeps counting."""
    freezer.move_to(minute(17))
    charger = add_sensor(hass, "wallbox_added_energy", "4.0", KWH_SESSION)
    mock_config_entry.add_to_hass(hass)
    key = add_running_meter(
        hass, mock_config_entry, charger, device="Wallbox", start_value=100.0
    )
    storage_key = f"{DOMAIN}.{mock_config_entry.entry_id}.outbox"
    hass_storage[storage_key] = {
        "version": 1,
        "minor_version": 1,
        "key": storage_key,
        "data": {
            "queues": {},
            "overflow_dropped": 0,
            "meter_states": {
                key: {
                    "value": 4.0,
                    "last_reset": None,
                    "counted": 1.0,
                    "seen": minute(16).timestamp(),
                    "known_from": minute(8).timestamp(),
                    "marks": [[int(minute(15).timestamp()), 0.0]],
                    "start_at": int(minute(15).timestamp()),
                    "start_counted": 0.0,
                }
            },
        },
    }
    await setup_entry(hass, mock_config_entry)
    await at(hass, freezer, minute(20))
    hass.states.async_set(charger.entity_id, "5.5", KWH_SESSION)
    await at(hass, freezer, minute(30))
    assert readings(sandbox, "Wallbox") == [(_stamp(minute(30)), 102.5)]


async def test_a_meter_added_while_the_charger_reports_counts_its_session_once(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The charger starts a new session and reports twice (0.5, then 1.0 kWh)
    just as another meter is added (the entry changes before Home Assistant
    handed the two states over): the new session counts once, 1.0 kWh."""
    charger, _key = await _charge_after_a_tick(hass, mock_config_entry, freezer)
    other = add_sensor(hass, "other_added_energy", "1.0", KWH_SESSION)
    hass.states.async_set(charger.entity_id, "0.5", KWH_SESSION)
    hass.states.async_set(charger.entity_id, "1.0", KWH_SESSION)
    add_running_meter(hass, mock_config_entry, other, device="Other")
    await at(hass, freezer, minute(30))
    assert readings(sandbox, "Wallbox") == [
        (_stamp(minute(15)), 100.0),
        (_stamp(minute(30)), 102.5),  # 1.5 in the old session, 1.0 in the new
    ]
