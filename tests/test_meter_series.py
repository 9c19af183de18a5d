"""Waiting readings when a meter is renamed or starts a new series.

A reading belongs to the series it was made for: readings made before a switch
of the reading source that starts a new series on a new register go to the
register they were made for, and the drop check never compares the two series.
A plain rename (the same series under new names) takes the waiting readings
to the new names at once. Through Change meter (subentry reconfigure), the
sandbox over HTTP and the freezer's clock.
"""

from __future__ import annotations

from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_RECONFIGURE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy.const import (
    CONF_DEVICE_REF,
    CONF_READING_SOURCE,
    CONF_REGISTER_REF,
    CONF_START_VALUE,
    DOMAIN,
    SUBENTRY_TYPE_METER,
)
from zevvy_sandbox import ZevvySandbox

from .test_drop_precision import START, Meter, _quarter

# zevvy answers 503 to every request meanwhile (an outage).
OUTAGE = 1000


@pytest.fixture
def meter(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
    sandbox: ZevvySandbox,
) -> Meter:
    """A meter ("Dev" / "Energy"), its entry added (not set up), 12:05 UTC."""
    freezer.move_to(START)
    mock_config_entry.add_to_hass(hass)
    return Meter(hass, mock_config_entry, freezer, sandbox)


async def _change_meter(
    hass: HomeAssistant, meter: Meter, user_input: dict[str, Any]
) -> dict[str, Any]:
    result = await hass.config_entries.subentries.async_init(
        (meter.entry.entry_id, SUBENTRY_TYPE_METER),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": meter.key},
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], user_input
    )
    flow: dict[str, Any] = dict(result)
    return flow


async def _upload_now(hass: HomeAssistant) -> None:
    await hass.services.async_call(DOMAIN, "upload_now", {}, blocking=True)
    await hass.async_block_till_done()


def _values(sandbox: ZevvySandbox, register: str) -> list[tuple[str, float]]:
    return [(r.read_at[11:16], r.value) for r in sandbox.readings("Dev", register)]


async def test_a_new_series_on_a_new_register_keeps_the_old_series(
    hass: HomeAssistant, meter: Meter, sandbox: ZevvySandbox
) -> None:
    """Readings wait during an outage; the meter switches to a running total
    from 0 on a renamed register (as README advises for a new series).

    The waiting sensor readings go to the old register they were made for; the
    running total's readings go to the new one and are not held as drops.
    """
    meter.show("1000000", "Wh")
    pipeline = await meter.setup()
    sandbox.inject_fault(status=503, count=OUTAGE)
    await meter.tick(15)
    meter.show("1000250", "Wh")
    await meter.tick(30)
    assert pipeline.outbox.pending_count == 2

    result = await _change_meter(
        hass,
        meter,
        {
            CONF_DEVICE_REF: "Dev",
            CONF_REGISTER_REF: "Energy total",
            CONF_READING_SOURCE: "running_total",
        },
    )
    assert result["step_id"] == "reconfigure_start"
    result = dict(
        await hass.config_entries.subentries.async_configure(
            result["flow_id"],
            {CONF_START_VALUE: 0.0, CONF_REGISTER_REF: "Energy total"},
        )
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()

    sandbox.clear_faults()
    meter.freezer.move_to(_quarter(40))
    meter.show("1000400", "Wh")
    await meter.tick(45)  # the running total's start: 0.0
    meter.freezer.move_to(_quarter(50))
    meter.show("1000650", "Wh")
    await meter.tick(60)
    await _upload_now(hass)

    assert _values(sandbox, "Energy") == [("12:15", 1000.0), ("12:30", 1000.25)]
    # The running total from 0, then what the sensor counted since 12:45 (its
    # changes at 12:40 and 12:50 come right before the ticks).
    total = [value for _, value in _values(sandbox, "Energy total")]
    assert [time for time, _ in _values(sandbox, "Energy total")] == ["12:45", "13:00"]
    assert total[0] == 0.0
    assert total[1] == 0.25  # 12:50 - 12:45: 1000.65 - 1000.4
    assert pipeline.outbox.held_count == 0
    assert pipeline.outbox.pending_count == 0


async def test_a_renamed_meter_sends_waiting_readings_to_its_new_names_at_once(
    hass: HomeAssistant, meter: Meter, sandbox: ZevvySandbox
) -> None:
    """A plain rename (the same sensor, no new series): the readings waiting
    go to the new names, also when sent before the next quarter hour."""
    meter.show("1000000", "Wh")
    pipeline = await meter.setup()
    sandbox.inject_fault(status=503, count=OUTAGE)
    await meter.tick(15)
    meter.show("1000250", "Wh")
    await meter.tick(30)
    assert pipeline.outbox.pending_count == 2

    result = await _change_meter(
        hass, meter, {CONF_DEVICE_REF: "Dev", CONF_REGISTER_REF: "Main"}
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    sandbox.clear_faults()
    await _upload_now(hass)  # before the 12:45 tick

    assert _values(sandbox, "Energy") == []
    assert _values(sandbox, "Main") == [("12:15", 1000.0), ("12:30", 1000.25)]
    assert pipeline.outbox.pending_count == 0


@pytest.mark.parametrize("new_series", [False, True])
async def test_a_meter_changed_while_its_account_is_not_loaded(
    hass: HomeAssistant, meter: Meter, sandbox: ZevvySandbox, new_series: bool
) -> None:
    """Changed while the account was unloaded: when it loads, the waiting
    readings go where they belong before anything is sent (the send at start)."""
    meter.show("1000000", "Wh")
    pipeline = await meter.setup()
    sandbox.inject_fault(status=503, count=OUTAGE)
    await meter.tick(15)
    assert pipeline.outbox.pending_count == 1
    assert await hass.config_entries.async_unload(meter.entry.entry_id)
    await hass.async_block_till_done()

    changed = {CONF_DEVICE_REF: "Dev", CONF_REGISTER_REF: "Main"}
    if new_series:
        changed[CONF_READING_SOURCE] = "running_total"
    result = await _change_meter(hass, meter, changed)
    if new_series:
        result = dict(
            await hass.config_entries.subentries.async_configure(
                result["flow_id"], {CONF_START_VALUE: 0.0, CONF_REGISTER_REF: "Main"}
            )
        )
    assert result["reason"] == "reconfigure_successful"
    sandbox.clear_faults()
    await meter.setup()  # sends what waits at once

    old, new = ("Energy", "Main") if new_series else ("Main", "Energy")
    assert _values(sandbox, old) == [("12:15", 1000.0)]
    assert _values(sandbox, new) == []
