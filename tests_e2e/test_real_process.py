"""A real Home Assistant process and the real sandbox, driven through REST.

Home Assistant runs `hass -c <copy of config/> --skip-pip`; the test onboards it,
adds zevvy through the config flow API exactly as the frontend does, approves the
login on the sandbox's admin API and chooses meters.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import time
from typing import Any

from .harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    QUARTER,
    HomeAssistantProcess,
    RestFlow,
    SandboxProcess,
    next_quarter,
    schema_fields,
    suggested_values,
    wait_for,
)

# Meters the test chooses and the references it expects the flow to suggest:
# template sensors without a device get their name and "Energy".
CHOSEN_METERS = {
    "sensor.apartment_1": ("Apartment 1", "Energy"),
    "sensor.apartment_3": ("Apartment 3", "Energy"),
    "sensor.manual_meter": ("Manual meter", "Energy"),
}


def add_zevvy(
    home_assistant: HomeAssistantProcess,
    sandbox: SandboxProcess,
    chosen: dict[str, tuple[str, str]] = CHOSEN_METERS,
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the zevvy config flow to the end; return the created entry result.

    ``chosen``: the meters and the references the flow should suggest;
    ``sources``: the reading source it should suggest for some of them (the
    user accepts every suggestion).
    """
    flow = RestFlow(home_assistant, "zevvy")
    assert flow.result["type"] == "form", flow.result
    assert flow.result["step_id"] == "user"
    assert schema_fields(flow.result) == ["client_id", "client_secret", "advanced"]

    result = flow.submit(
        {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "advanced": {"issuer": sandbox.issuer, "api_url": sandbox.api_url},
        }
    )
    assert result["type"] == "progress", result
    assert result["step_id"] == "login"
    placeholders = result["description_placeholders"]
    user_code = placeholders["user_code"]
    assert placeholders["url"].startswith(f"{sandbox.url}/device")
    assert user_code in placeholders["url"]
    assert user_code in sandbox.pending()

    sandbox.admin("POST", "approve", {"user_code": user_code})
    result = flow.wait_past_progress()

    assert result["type"] == "form", result
    assert result["step_id"] == "meters"
    suggested = suggested_values(result)["entities"]
    # Preselected: the Energy dashboard's meters (config/.storage_seed/energy).
    assert set(suggested) == {
        "sensor.grid_import",
        "sensor.grid_export",
        "sensor.pv_system",
        "sensor.apartment_1",
        "sensor.apartment_2",
        "sensor.apartment_3",
        "sensor.ev_charger",
    }
    # Offered with a warning, not preselected: restarts at 0 every session.
    assert (
        "sensor.ev_charger_session" in result["description_placeholders"]["resetting"]
    )
    result = flow.submit({"entities": list(chosen)})
    seen: dict[str, tuple[str, str]] = {}
    while result["type"] == "form" and result["step_id"] == "meter_names":
        values = suggested_values(result)
        entity_id = result["description_placeholders"]["entity_id"]
        expected_source = (sources or {}).get(entity_id, "sensor")
        assert values["reading_source"] == expected_source, (entity_id, values)
        # The UI shows these prefilled; the user accepts them.
        pair = (values["device_ref"], values["register_ref"])
        seen[pair[0]] = pair
        result = flow.submit(values)
        if expected_source == "running_total":
            # A running total's start value, in a step of its own: 0.
            assert result["step_id"] == "meter_start", result
            assert suggested_values(result) == {"start_value": 0.0}
            result = flow.submit(suggested_values(result))
    assert sorted(seen.values()) == sorted(chosen.values())

    assert result["type"] == "create_entry", result
    assert result["title"] == "demo"
    return result


def formula_kwh(entity_id: str, moment: datetime) -> float:
    """Return a simulated meter's reading (config/configuration.yaml) in kWh."""
    hours = (moment.timestamp() - 1767225600) / 3600
    if entity_id == "sensor.apartment_1":
        return 4210.5 + hours * 0.42
    if entity_id == "sensor.apartment_3":
        return (1934000 + hours * 270) / 1000  # the sensor is in Wh
    raise AssertionError(entity_id)


def read_at(moment: datetime) -> str:
    """Return zevvy's readAt text of a moment."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def stored(sandbox: SandboxProcess) -> dict[tuple[str, str, str], float]:
    """Return the sandbox's readings by (device, register, readAt); no duplicates."""
    readings = sandbox.readings()
    keyed = {
        (r["device_ref"], r["register_ref"], r["read_at"]): r["value"] for r in readings
    }
    assert len(keyed) == len(readings), f"duplicate readings: {readings}"
    return keyed


def set_manual_meter(home_assistant: HomeAssistantProcess, value: float) -> None:
    """Type a reading into the manual meter's input_number."""
    home_assistant.api(
        "POST",
        "services/input_number/set_value",
        {"entity_id": "input_number.manual_meter_reading", "value": value},
    )
    wait_for(
        lambda: (state := home_assistant.state("sensor.manual_meter"))
        and float(state["state"]) == value,
        timeout=10,
        message="the manual meter's new state",
    )


def wait_for_state(
    home_assistant: HomeAssistantProcess, entity_id: str, expected: str
) -> None:
    """Wait until an entity shows a state."""
    wait_for(
        lambda: (state := home_assistant.state(entity_id))
        and state["state"] == expected,
        timeout=15,
        message=f"{entity_id} to be {expected}",
    )


def bulk_create_statuses(sandbox: SandboxProcess) -> list[int]:
    """Return the statuses of every bulk-create request so far."""
    return [
        r["status"]
        for r in sandbox.admin("GET", "requests")
        if r["path"].endswith("/_bulk_create")
    ]


# Seconds between a start of Home Assistant and the quarter hour it then reads.
LEAD = 20


def test_delivery_exactly_once_across_outage_and_restarts(
    home_assistant: HomeAssistantProcess, sandbox: SandboxProcess
) -> None:
    """Readings of two quarter hours arrive exactly once despite 503s and restarts.

    Home Assistant's clock (libfaketime) is moved to LEAD seconds before a quarter
    hour on restarts, so the test sees real quarter-hour ticks within seconds.
    """
    add_zevvy(home_assistant, sandbox)
    wait_for(
        lambda: home_assistant.config_entries("zevvy")[0]["state"] == "loaded",
        timeout=30,
        message="the zevvy entry to load",
    )
    assert stored(sandbox) == {}

    # --- Quarter hour 1: zevvy answers. -------------------------------------
    set_manual_meter(home_assistant, 1234.567)
    first = next_quarter(home_assistant.now())
    home_assistant.restart(clock=first - timedelta(seconds=LEAD))
    wait_for(
        lambda: len(stored(sandbox)) == len(CHOSEN_METERS),
        timeout=LEAD + 60,
        message="the first quarter hour's readings",
    )
    readings = stored(sandbox)
    assert set(readings) == {
        (device, register, read_at(first))
        for device, register in CHOSEN_METERS.values()
    }
    assert readings[("Manual meter", "Energy", read_at(first))] == 1234.567
    # The simulated meters' templates follow the clock minute by minute.
    for entity_id in ("sensor.apartment_1", "sensor.apartment_3"):
        device, register = CHOSEN_METERS[entity_id]
        value = readings[(device, register, read_at(first))]
        assert abs(value - formula_kwh(entity_id, first)) < 0.01, (entity_id, value)
        assert value == round(value, 3)

    # The outbox writes confirmations with a delay of a second; a stop right
    # after a delivery may lose that and cost a resend (answered 409).
    time.sleep(2)

    # --- Quarter hour 2: zevvy fails, uploads fail, Home Assistant restarts. --
    sandbox.admin("POST", "faults", {"status": 503, "count": 10000, "target": "api"})
    set_manual_meter(home_assistant, 1300.5)
    second = first + QUARTER
    home_assistant.restart(clock=second - timedelta(seconds=LEAD))
    wait_for(
        lambda: home_assistant.now() > second + timedelta(seconds=1)
        and 503 in bulk_create_statuses(sandbox),
        timeout=LEAD + 60,
        message="an upload attempt of the second quarter hour",
    )
    response = home_assistant.call_service("zevvy", "upload_now")
    assert response.status_code >= 400, response.text
    home_assistant.restart()
    response = home_assistant.call_service("zevvy", "upload_now")
    assert response.status_code >= 400, response.text
    assert len(stored(sandbox)) == len(CHOSEN_METERS)
    # The account device's entities tell the user.
    wait_for_state(home_assistant, "sensor.zevvy_readings_waiting", "3")
    wait_for_state(home_assistant, "binary_sensor.zevvy_connection", "off")

    # --- zevvy is back: everything waiting arrives, once. --------------------
    sandbox.admin("DELETE", "faults")
    response = home_assistant.call_service("zevvy", "upload_now")
    assert response.ok, response.text
    assert response.json()["service_response"]["waiting"] == 0
    readings = stored(sandbox)
    assert set(readings) == {
        (device, register, read_at(moment))
        for moment in (first, second)
        for device, register in CHOSEN_METERS.values()
    }
    assert readings[("Manual meter", "Energy", read_at(second))] == 1300.5
    for entity_id in ("sensor.apartment_1", "sensor.apartment_3"):
        device, register = CHOSEN_METERS[entity_id]
        value = readings[(device, register, read_at(second))]
        assert abs(value - formula_kwh(entity_id, second)) < 0.01, (entity_id, value)
    wait_for_state(home_assistant, "sensor.zevvy_readings_waiting", "0")
    wait_for_state(home_assistant, "binary_sensor.zevvy_connection", "on")
    # A reading sent again would have been answered 409: none was.
    assert 409 not in bulk_create_statuses(sandbox)
    assert not home_assistant.errors_in_log("custom_components.zevvy")
    assert not home_assistant.deprecations_in_log()


def set_charging_session(home_assistant: HomeAssistantProcess, kwh: float) -> None:
    """Let the simulated charger report the energy of its current session."""
    home_assistant.api(
        "POST",
        "services/input_number/set_value",
        {"entity_id": "input_number.charging_session_energy", "value": kwh},
    )
    wait_for(
        lambda: (state := home_assistant.state("sensor.charging_session"))
        and float(state["state"]) == kwh,
        timeout=10,
        message="the charging session's new state",
    )


# The EV charger session's sessions (config/configuration.yaml): every 4 hours
# from 2026-01-01 00:00 UTC.
EV_SESSIONS_FROM = datetime(2026, 1, 1, tzinfo=UTC)
EV_SESSION = timedelta(hours=4)


def next_ev_session(moment: datetime) -> datetime:
    """Return the start of the EV charger session after the one at moment."""
    return moment + EV_SESSION - (moment - EV_SESSIONS_FROM) % EV_SESSION


def test_charging_sessions_become_a_reading_that_only_goes_up(
    home_assistant: HomeAssistantProcess, sandbox: SandboxProcess
) -> None:
    """A charger's session energy (back to 0 at every session) and a per-session
    total with last_reset become running totals: zevvy receives readings that
    only go up, and the charging session's equal the energy charged.

    The EV charger session starts a new session on the first quarter hour, as
    a template sensor does it: its value falls to 0, then its last_reset
    follows in a second state change (once left to the time of day, this
    failed in CI: the session before was counted as a decrease).
    """
    chargers = {
        "sensor.charging_session": ("Charging session", "Energy"),
        "sensor.ev_charger_session": ("EV charger session", "Energy"),
    }
    running = dict.fromkeys(chargers, "running_total")
    # Home Assistant's clock to 7.5 minutes before the quarter hour an EV
    # charger session starts on (the test's first), never back.
    lead = timedelta(minutes=7, seconds=30)
    session_start = next_ev_session(home_assistant.now() + lead)
    home_assistant.restart(clock=session_start - lead)
    set_charging_session(home_assistant, 2.5)  # a session before the meter
    add_zevvy(home_assistant, sandbox, chargers, running)
    wait_for(
        lambda: home_assistant.config_entries("zevvy")[0]["state"] == "loaded",
        timeout=30,
        message="the zevvy entry to load",
    )
    # The meters start at the next quarter hour with their start value, 0.
    first = next_quarter(home_assistant.now())
    assert first == session_start
    home_assistant.restart(clock=first - timedelta(seconds=LEAD))
    wait_for(
        lambda: len(stored(sandbox)) == 2,
        timeout=LEAD + 60,
        message="the first quarter hour's readings",
    )
    assert stored(sandbox)[("Charging session", "Energy", read_at(first))] == 0.0

    # Sessions: 1.25 kWh and 1.75 kWh in one, then a new one at 0.5 kWh; and a
    # restart of Home Assistant in between.
    wait_for(
        lambda: home_assistant.now() > first + timedelta(seconds=2),
        timeout=LEAD + 10,
        message="the first quarter hour to pass",
    )
    set_charging_session(home_assistant, 0.0)
    set_charging_session(home_assistant, 1.25)
    home_assistant.restart()
    set_charging_session(home_assistant, 3.0)
    set_charging_session(home_assistant, 0.5)
    second = first + QUARTER
    home_assistant.restart(clock=second - timedelta(seconds=LEAD))
    wait_for(
        lambda: len(stored(sandbox)) == 4,
        timeout=LEAD + 60,
        message="the second quarter hour's readings",
    )
    readings = stored(sandbox)
    assert readings[("Charging session", "Energy", read_at(second))] == 3.5
    # 2.75 kWh an hour (config/configuration.yaml), sampled once a minute.
    ev_first = readings[("EV charger session", "Energy", read_at(first))]
    ev_second = readings[("EV charger session", "Energy", read_at(second))]
    assert ev_first == 0.0
    assert 0.6 < ev_second < 0.8, ev_second
    assert not home_assistant.errors_in_log("custom_components.zevvy")
    assert not home_assistant.deprecations_in_log()
