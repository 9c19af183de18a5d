"""Actions: upload_now and send_reading, against the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import json
from pathlib import Path
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState, ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.zevvy.api import Reading
from custom_components.zevvy.const import (
    CONF_API_URL,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_ISSUER,
    CONF_REFRESH_TOKEN,
    DOMAIN,
)
from custom_components.zevvy.outbox import Destination, manual_key
from zevvy_sandbox import ZevvySandbox

from .conftest import METER_ENTITY_ID, METER_SUBENTRY_ID

START = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)
EXCEPTIONS = json.loads(
    (
        Path(__file__).parents[1] / "custom_components/zevvy/translations/en.json"
    ).read_text()
)["exceptions"]


@pytest.fixture
async def entry(
    hass: HomeAssistant,
    meter_config_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
) -> MockConfigEntry:
    """The entry with one meter, set up at 12:05 UTC."""
    freezer.move_to(START)
    meter_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(meter_config_entry.entry_id)
    await hass.async_block_till_done()
    return meter_config_entry


def _other_entry(sandbox: ZevvySandbox) -> MockConfigEntry:
    """A second account of the sandbox."""
    tokens = sandbox.issue_tokens(sub="other-account", username="other")
    return MockConfigEntry(
        domain=DOMAIN,
        title="other",
        unique_id="other-account",
        data={
            CONF_CLIENT_ID: sandbox.config.client_id,
            CONF_CLIENT_SECRET: sandbox.config.client_secret,
            CONF_ISSUER: sandbox.issuer,
            CONF_API_URL: sandbox.api_url,
            CONF_REFRESH_TOKEN: tokens.refresh_token,
        },
    )


async def _call(
    hass: HomeAssistant, service: str, data: dict[str, Any], response: bool = True
) -> dict[str, Any] | None:
    return await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=response
    )


async def _tick(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, moment: datetime
) -> None:
    freezer.move_to(moment)
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


def _check_translation(err: HomeAssistantError, key: str) -> None:
    """The error is translated, and its placeholders fill the English text."""
    assert err.translation_domain == DOMAIN
    assert err.translation_key == key
    message = EXCEPTIONS[key]["message"]
    assert "{" not in message.format(**(err.translation_placeholders or {}))


# --- upload_now ---------------------------------------------------------------


async def test_upload_now_sends_waiting_readings(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Readings kept back by an outage go out now; the response counts them."""
    sandbox.inject_fault(status=503, count=1)
    await _tick(hass, freezer, START + timedelta(minutes=10))
    assert sandbox.readings() == []

    response = await _call(hass, "upload_now", {})

    assert response == {"sent": 1, "waiting": 0, "held": 0, "parked": 0, "rejected": 0}
    assert [(r.read_at, r.value) for r in sandbox.readings("Grid", "Import")] == [
        ("2026-11-26T12:15:00.000Z", 1234.5)
    ]


async def test_upload_now_counts_rejected_readings(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Readings zevvy refused are counted as "rejected" (and, for automations
    written before, as "parked")."""
    sandbox.inject_fault(status=503, count=1)
    await _tick(hass, freezer, START + timedelta(minutes=10))
    sandbox.inject_fault(status=422, count=1)

    response = await _call(hass, "upload_now", {})

    assert response == {"sent": 0, "waiting": 0, "held": 0, "parked": 1, "rejected": 1}


async def test_upload_now_takes_no_reading_between_quarter_hours(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """At 12:05 there is no quarter-hour reading: nothing is invented."""
    response = await _call(hass, "upload_now", {"config_entry_id": entry.entry_id})
    assert response == {"sent": 0, "waiting": 0, "held": 0, "parked": 0, "rejected": 0}
    assert sandbox.readings() == []
    # Without asking for a response.
    assert await _call(hass, "upload_now", {}, response=False) is None


async def test_upload_now_all_accounts(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    sandbox: ZevvySandbox,
) -> None:
    """Without an account, every loaded account uploads."""
    other = _other_entry(sandbox)
    other.add_to_hass(hass)
    assert await hass.config_entries.async_setup(other.entry_id)
    await hass.async_block_till_done()
    moment = datetime(2026, 11, 26, 11, 45, tzinfo=UTC)
    for item in (entry, other):
        item.runtime_data.outbox.add(
            Destination("ref:a/b", "a", "b"), [Reading(moment, 1.0)]
        )

    response = await _call(hass, "upload_now", {})

    assert response == {"sent": 2, "waiting": 0, "held": 0, "parked": 0, "rejected": 0}
    # zevvy saw the same reading twice: the second was already present.
    assert len(sandbox.readings("a", "b")) == 1


async def test_upload_now_unreachable(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """zevvy unreachable: translated error; the reading is kept."""
    entry.runtime_data.outbox.add(
        Destination("ref:a/b", "a", "b"),
        [Reading(datetime(2026, 11, 26, 11, 45, tzinfo=UTC), 1.0)],
    )
    sandbox.inject_fault(status=503, count=1)
    with pytest.raises(HomeAssistantError) as err:
        await _call(hass, "upload_now", {})
    _check_translation(err.value, "upload_failed")
    assert entry.runtime_data.outbox.pending_count == 1


async def test_upload_now_unknown_and_unloaded_entries(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """Unknown id, an entry not loaded, and no loaded entry at all."""
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "upload_now", {"config_entry_id": "nope"})
    _check_translation(err.value, "entry_not_found")

    other = _other_entry(sandbox)
    other.add_to_hass(hass)
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "upload_now", {"config_entry_id": other.entry_id})
    _check_translation(err.value, "entry_not_loaded")

    assert await hass.config_entries.async_unload(entry.entry_id)
    # A meter of an account that is not loaded.
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "send_reading", {"meter": METER_ENTITY_ID, "value": 1})
    _check_translation(err.value, "entry_not_loaded")
    assert entry.state is ConfigEntryState.NOT_LOADED
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "upload_now", {})
    _check_translation(err.value, "no_loaded_entry")


# --- send_reading ---------------------------------------------------------------


async def test_send_reading_for_meter(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """By the meter's entity: its references, now's quarter hour, kWh.

    The answer's time has the offset of Home Assistant's time zone.
    """
    await hass.config.async_set_time_zone("Europe/Zurich")
    # Subentries of another kind are no meters.
    hass.config_entries.async_add_subentry(
        entry, ConfigSubentry(data={}, subentry_type="other", title="x", unique_id="x")
    )
    with pytest.raises(ServiceValidationError):
        await _call(hass, "send_reading", {"meter": "sensor.unknown", "value": 1})

    response = await _call(
        hass,
        "send_reading",
        {"meter": METER_ENTITY_ID, "value": 1_234_600, "unit": "Wh"},
    )

    assert response == {
        "device_ref": "Grid",
        "register_ref": "Import",
        "read_at": "2026-11-26T13:00:00+01:00",
        "value": 1234.6,
        "unit": "kWh",
        "value_kwh": 1234.6,
        "status": "queued",
        "delivered": True,
        "waiting": 0,
    }
    assert [(r.read_at, r.value) for r in sandbox.readings("Grid", "Import")] == [
        ("2026-11-26T12:00:00.000Z", 1234.6)
    ]
    # The meter's queue: its last delivered reading moved.
    last = entry.runtime_data.outbox.last_delivered(METER_SUBENTRY_ID)
    assert last == Reading(datetime(2026, 11, 26, 12, tzinfo=UTC), 1234.6)


async def test_send_reading_for_the_meter_picked_as_device(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """The action's picker offers zevvy's meter devices: the device's meter
    gets the reading; the account's own device is no meter."""
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    meter = next(device for device in devices if device.model == "Meter")
    account = next(device for device in devices if device.model != "Meter")
    assert meter.name == "Grid \u2013 Import"

    response = await _call(hass, "send_reading", {"meter": meter.id, "value": 1300})

    assert response is not None
    assert (response["device_ref"], response["register_ref"]) == ("Grid", "Import")
    assert [r.value for r in sandbox.readings("Grid", "Import")] == [1300.0]
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "send_reading", {"meter": account.id, "value": 1300})
    _check_translation(err.value, "unknown_meter")


async def test_send_reading_for_references(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """By references (trimmed), at a past time rounded down, in MWh."""
    response = await _call(
        hass,
        "send_reading",
        {
            "device_ref": " Heat pump ",
            "register_ref": "Energy",
            "value": 2.5,
            "unit": "MWh",
            "time": "2026-11-25T23:59:59+00:00",
        },
    )

    assert response is not None
    # In Home Assistant's time zone (the tests' default: US/Pacific).
    assert response["read_at"] == "2026-11-25T15:45:00-08:00"
    assert response["delivered"] is True
    assert [(r.read_at, r.value) for r in sandbox.readings("Heat pump", "Energy")] == [
        ("2026-11-25T23:45:00.000Z", 2500.0)
    ]
    assert manual_key("Heat pump", "Energy") in entry.runtime_data.outbox.keys


async def test_send_reading_local_time(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """A time without zone (the UI's picker) is Home Assistant's local time."""
    await hass.config.async_set_time_zone("Europe/Zurich")
    await _call(
        hass,
        "send_reading",
        {
            "device_ref": "a",
            "register_ref": "b",
            "value": 1,
            "time": "2026-11-26 13:04:59",
        },
    )
    assert [r.read_at for r in sandbox.readings("a", "b")] == [
        "2026-11-26T12:00:00.000Z"
    ]


async def test_send_reading_with_a_meters_references_uses_its_queue(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """References of a configured meter share its queue (and its drop check)."""
    await _call(
        hass,
        "send_reading",
        {"device_ref": "Grid", "register_ref": "Import", "value": 1000},
    )
    assert entry.runtime_data.outbox.keys == [METER_SUBENTRY_ID]
    assert entry.runtime_data.outbox.last_delivered(METER_SUBENTRY_ID) == Reading(
        datetime(2026, 11, 26, 12, tzinfo=UTC),
        1000.0,
    )


async def test_send_reading_held_and_duplicate(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A lower reading is held back; the same quarter hour twice is a duplicate."""
    await _tick(hass, freezer, START + timedelta(minutes=10))  # 12:15 delivered
    freezer.move_to(START + timedelta(minutes=26))  # 12:31, the tick not fired
    response = await _call(
        hass, "send_reading", {"meter": METER_ENTITY_ID, "value": 10}
    )
    assert response is not None
    assert response["status"] == "held"
    assert response["delivered"] is False
    assert entry.runtime_data.outbox.held_count == 1

    response = await _call(
        hass,
        "send_reading",
        {
            "meter": METER_ENTITY_ID,
            "value": 1234.5,
            "time": "2026-11-26T12:15:00+00:00",
        },
    )
    assert response is not None
    assert response["status"] == "duplicate"
    assert len(sandbox.readings("Grid", "Import")) == 1


async def test_send_reading_while_unreachable(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """zevvy down: no error (the reading is stored), delivered later."""
    sandbox.inject_fault(status=503, count=1)
    response = await _call(
        hass, "send_reading", {"device_ref": "a", "register_ref": "b", "value": 1}
    )
    assert response is not None
    assert response["status"] == "queued"
    assert response["delivered"] is False
    assert response["waiting"] == 1
    assert sandbox.readings() == []

    await _call(hass, "upload_now", {})
    assert len(sandbox.readings("a", "b")) == 1


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"value": 1}, "meter_or_references"),
        ({"device_ref": "a", "value": 1}, "meter_or_references"),
        ({"register_ref": "a", "value": 1}, "meter_or_references"),
        (
            {
                "meter": METER_ENTITY_ID,
                "device_ref": "a",
                "register_ref": "b",
                "value": 1,
            },
            "meter_or_references",
        ),
        ({"meter": "sensor.unknown", "value": 1}, "unknown_meter"),
        ({"meter": METER_ENTITY_ID, "value": 1, "unit": "W"}, "invalid_unit"),
        ({"meter": METER_ENTITY_ID, "value": -1}, "invalid_value"),
        ({"meter": METER_ENTITY_ID, "value": "nan"}, "invalid_value"),
        ({"meter": METER_ENTITY_ID, "value": "inf"}, "invalid_value"),
        ({"meter": METER_ENTITY_ID, "value": True}, "invalid_value"),
        ({"meter": METER_ENTITY_ID, "value": "12,5"}, "invalid_value"),
        ({"meter": METER_ENTITY_ID, "value": [1]}, "invalid_value"),
        ({"meter": METER_ENTITY_ID, "value": 1e300}, "value_too_large"),
        ({"meter": METER_ENTITY_ID, "value": 1e12}, "value_too_large"),
        (
            {"meter": METER_ENTITY_ID, "value": 1_000_001, "unit": "MWh"},
            "value_too_large",
        ),
        (
            {"meter": METER_ENTITY_ID, "value": 1, "time": "0001-01-01 00:00:00"},
            "time_too_old",
        ),
        (
            {"meter": METER_ENTITY_ID, "value": 1, "time": "0999-12-31T23:59:00"},
            "time_too_old",
        ),
        (
            {
                "meter": METER_ENTITY_ID,
                "value": 1,
                "time": "1999-12-31T23:59:59+00:00",
            },
            "time_too_old",
        ),
        (
            {"meter": METER_ENTITY_ID, "value": 1, "time": "2026-11-26T12:20:00+00:00"},
            "time_in_future",
        ),
        ({"device_ref": "a/b", "register_ref": "c", "value": 1}, "invalid_reference"),
        ({"device_ref": "a", "register_ref": "  ", "value": 1}, "invalid_reference"),
        ({"device_ref": " . ", "register_ref": "c", "value": 1}, "invalid_reference"),
        ({"device_ref": "a", "register_ref": "..", "value": 1}, "invalid_reference"),
        (
            {
                "config_entry_id": "nope",
                "device_ref": "a",
                "register_ref": "b",
                "value": 1,
            },
            "entry_not_found",
        ),
        (
            {"config_entry_id": "nope", "meter": METER_ENTITY_ID, "value": 1},
            "entry_not_found",
        ),
    ],
    ids=[
        "nothing",
        "device_only",
        "register_only",
        "meter_and_references",
        "unknown_meter",
        "bad_unit",
        "negative",
        "nan",
        "infinite",
        "boolean",
        "not_a_number",
        "list",
        "1e300",
        "1e12_kwh",
        "1e6_mwh_and_more",
        "year_1",
        "year_999",
        "before_2000",
        "future",
        "slash",
        "empty",
        "dot",
        "dot_dot",
        "unknown_entry",
        "unknown_entry_for_meter",
    ],
)
async def test_send_reading_invalid(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    data: dict[str, Any],
    key: str,
) -> None:
    """Wrong input: a translated validation error, nothing queued or sent."""
    sandbox.clear_requests()
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "send_reading", data)
    _check_translation(err.value, key)
    assert entry.runtime_data.outbox.pending_count == 0
    assert sandbox.readings() == []
    assert sandbox.request_counts()["total"] == 0


async def test_send_reading_largest_values(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """Up to 1,000,000,000 kWh in any unit, and numbers given as text, arrive."""
    for device, value, unit in (
        ("wh", 1e12, "Wh"),
        ("kwh", "1e9", "kWh"),
        ("mwh", 1_000_000, "MWh"),
    ):
        response = await _call(
            hass,
            "send_reading",
            {"device_ref": device, "register_ref": "r", "value": value, "unit": unit},
        )
        assert response is not None
        assert response["value_kwh"] == 1e9
        assert [r.value for r in sandbox.readings(device, "r")] == [1e9]


@pytest.mark.parametrize(
    "data",
    [
        {"start": "0001-01-01 00:00:00"},
        {"start": "2026-11-01 00:00:00", "end": "0001-01-01 00:00:00"},
        {"start": "1999-12-31 23:45:00"},
    ],
    ids=["start_year_1", "end_year_1", "start_before_2000"],
)
async def test_upload_history_refuses_old_times(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    data: dict[str, Any],
) -> None:
    """Times before 2000 are typos: a translated error, nothing sent."""
    sandbox.clear_requests()
    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "upload_history", data)
    _check_translation(err.value, "time_too_old")
    assert sandbox.request_counts()["total"] == 0


async def test_time_errors_show_local_time(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """A time in the future is named in local time."""
    await hass.config.async_set_time_zone("Europe/Zurich")
    with pytest.raises(ServiceValidationError) as err:
        await _call(
            hass,
            "send_reading",
            {"meter": METER_ENTITY_ID, "value": 1, "time": "2026-11-26T12:20:00Z"},
        )
    assert err.value.translation_placeholders == {"time": "2026-11-26 13:20"}
    assert str(err.value) == (
        "The time 2026-11-26 13:20 is in the future. A meter reading can only be "
        "sent for a time that has passed"
    )


async def test_send_reading_needs_account_with_several(
    hass: HomeAssistant, entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """Two accounts: references need the account; a meter finds its own."""
    other = _other_entry(sandbox)
    other.add_to_hass(hass)
    assert await hass.config_entries.async_setup(other.entry_id)
    await hass.async_block_till_done()
    data = {"device_ref": "a", "register_ref": "b", "value": 1}

    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "send_reading", data)
    _check_translation(err.value, "entry_required")

    await _call(hass, "send_reading", {**data, "config_entry_id": other.entry_id})
    assert other.runtime_data.outbox.keys == [manual_key("a", "b")]
    assert entry.runtime_data.outbox.keys == []

    await _call(hass, "send_reading", {"meter": METER_ENTITY_ID, "value": 1235})
    assert entry.runtime_data.outbox.keys == [METER_SUBENTRY_ID]
    # The meter is not one of the other account's.
    with pytest.raises(ServiceValidationError) as err:
        await _call(
            hass,
            "send_reading",
            {"meter": METER_ENTITY_ID, "value": 1, "config_entry_id": other.entry_id},
        )
    _check_translation(err.value, "unknown_meter")
