"""zevvy.upload_history answers what the outbox kept, not what its bound dropped.

The recorder runs for real (in-memory SQLite), with statistics imported as in
test_history.py; readings travel to the sandbox over HTTP.
"""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import Recorder
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy.outbox import policy as outbox_policy
from zevvy_sandbox import ZevvySandbox

from .test_history import (
    NOW,
    _add_meter,
    _import,
    _rows,
    _setup,
    _stamp,
    _upload_history,
    _value,
    mock_recorder_before_hass,  # noqa: F401 (the recorder's fixture)
)


async def test_upload_history_counts_readings_the_bound_dropped(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Eight quarter hours into an outbox that keeps five: the three oldest are
    dropped, and the answer says so instead of counting them as queued."""
    freezer.move_to(NOW)
    mock_config_entry.add_to_hass(hass)
    entity_id, _ = _add_meter(hass, mock_config_entry, "a")
    hour = NOW.replace(minute=0)
    start = hour - timedelta(hours=2)
    await _import(
        hass,
        entity_id,
        short=_rows(start - timedelta(minutes=5), hour, timedelta(minutes=5)),
    )
    pipeline = await _setup(hass, mock_config_entry)
    sandbox.inject_fault(status=503, count=1000)  # nothing leaves meanwhile

    with patch.object(outbox_policy, "OUTBOX_MAX_READINGS", 5):
        response = await _upload_history(
            hass, config_entry_id=mock_config_entry.entry_id, start=start
        )

    meter = response["meters"][entity_id]
    assert meter["quarter_hour_readings"] == 9  # 10:00 .. 12:00
    assert (meter["queued"], meter["held"], meter.get("dropped")) == (5, 0, 4)
    assert (response["queued"], response["dropped"]) == (5, 4)
    assert pipeline.outbox.pending_count == 5

    sandbox.clear_faults()
    await pipeline.async_send_now()
    expected = [hour - timedelta(minutes=15 * i) for i in range(4, -1, -1)]
    assert [r.read_at for r in sandbox.readings("Device a", "Energy")] == [
        _stamp(moment) for moment in expected
    ]
    assert [r.value for r in sandbox.readings("Device a", "Energy")] == [
        _value(moment) for moment in expected
    ]
