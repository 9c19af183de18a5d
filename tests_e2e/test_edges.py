"""Delivery at the edges, with a real Home Assistant process and the real sandbox.

- `kill -9` of Home Assistant right after a quarter-hour tick and a token refresh,
  and right after zevvy stored a tick's readings: after the restart every reading
  is there exactly once, and the login still works.
- One register answering 404 while four others deliver every quarter hour.
- The clock jumping 25 minutes over quarter hours: no reading is stamped with a
  value read later than its quarter hour.

Home Assistant's clock runs under libfaketime: a start puts it a few seconds
before a quarter hour, and jump_clock moves it on while it runs (as a machine
waking from suspend sees it), so no test waits for real quarter hours.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from .harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    QUARTER,
    HomeAssistantProcess,
    RestFlow,
    SandboxProcess,
    next_quarter,
    suggested_values,
    wait_for,
)
from .test_real_process import (
    formula_kwh,
    read_at,
    set_manual_meter,
    stored,
    wait_for_state,
)

# Seconds between a start of Home Assistant and the quarter hour it then reads.
LEAD = 15
# Seconds within which a quarter hour's readings count as on time.
ON_TIME = 10


def add_zevvy_with(
    home_assistant: HomeAssistantProcess, sandbox: SandboxProcess, entities: list[str]
) -> dict[str, tuple[str, str]]:
    """Add zevvy with these meters (suggested references accepted).

    Returns each entity's (device reference, register reference).
    """
    flow = RestFlow(home_assistant, "zevvy")
    result = flow.submit(
        {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "advanced": {"issuer": sandbox.issuer, "api_url": sandbox.api_url},
        }
    )
    assert result["type"] == "progress", result
    sandbox.admin(
        "POST",
        "approve",
        {"user_code": result["description_placeholders"]["user_code"]},
    )
    result = flow.wait_past_progress()
    assert result["step_id"] == "meters", result
    result = flow.submit({"entities": entities})
    references: dict[str, tuple[str, str]] = {}
    while result["type"] == "form" and result["step_id"] == "meter_names":
        # The UI shows these prefilled; the user accepts them.
        values = suggested_values(result)
        entity_id = result["description_placeholders"]["entity_id"]
        references[entity_id] = (values["device_ref"], values["register_ref"])
        result = flow.submit(values)
        if result["type"] == "form" and result["step_id"] == "meter_start":
            # A running total's start value, in a step of its own: 0.
            result = flow.submit(suggested_values(result))
    assert result["type"] == "create_entry", result
    assert set(references) == set(entities), references
    wait_for(
        lambda: home_assistant.config_entries("zevvy")[0]["state"] == "loaded",
        timeout=30,
        message="the zevvy entry to load",
    )
    return references


def websocket(home_assistant: HomeAssistantProcess, command: dict[str, Any]) -> Any:
    """Send one command over Home Assistant's WebSocket API; return its result."""

    async def run() -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{home_assistant.url}/api/websocket") as socket_,
        ):
            await socket_.receive_json()  # auth_required
            await socket_.send_json(
                {"type": "auth", "access_token": home_assistant.token}
            )
            assert (await socket_.receive_json())["type"] == "auth_ok"
            await socket_.send_json({"id": 1, **command})
            answer = await socket_.receive_json()
            assert answer["success"], answer
            return answer["result"]

    with ThreadPoolExecutor(1) as executor:
        return executor.submit(
            lambda: asyncio.run(asyncio.wait_for(run(), timeout=30))
        ).result()


def zevvy_issues(home_assistant: HomeAssistantProcess) -> list[dict[str, Any]]:
    """Return zevvy's repair issues (Settings > Repairs)."""
    issues: list[dict[str, Any]] = websocket(
        home_assistant, {"type": "repairs/list_issues"}
    )["issues"]
    return [issue for issue in issues if issue["domain"] == "zevvy"]


def login_still_works(
    home_assistant: HomeAssistantProcess, sandbox: SandboxProcess
) -> None:
    """Assert that zevvy's entry runs on the first login: no new login asked for."""
    entry = wait_for(
        lambda: (entry := home_assistant.config_entries("zevvy")[0])["state"]
        not in ("not_loaded", "setup_in_progress")
        and entry,
        timeout=30,
        message="the zevvy entry's setup",
    )
    assert entry["state"] == "loaded", entry
    # No reauthentication waiting in Settings > Devices & services.
    flows = websocket(home_assistant, {"type": "config_entries/flow/progress"})
    assert not [flow for flow in flows if flow["handler"] == "zevvy"], flows
    grants = sandbox.admin("GET", "grants")
    assert len(grants) == 1, grants
    assert not grants[0]["revoked"], grants


def refresh_count(sandbox: SandboxProcess) -> int:
    """Return how often the login's refresh token was used."""
    count: int = sandbox.admin("GET", "grants")[0]["refresh_count"]
    return count


def api_requests(sandbox: SandboxProcess) -> int:
    """Return how many API requests (uploads) reached zevvy, answered or not."""
    count: int = sandbox.admin("GET", "requests/counts")["by_target"].get("api", 0)
    return count


def test_kill_9_after_a_tick_and_refresh_loses_and_repeats_nothing(
    home_assistant: HomeAssistantProcess, sandbox: SandboxProcess
) -> None:
    """Killed right after a tick and a token refresh, or right after zevvy stored
    a tick's readings: the restarted Home Assistant delivers each reading exactly
    once and needs no new login.

    The sandbox rotates the refresh token at every refresh and ends the login when
    an old one comes back (as Keycloak does); its access tokens live 4 seconds, so
    nearly every upload starts with a refresh.
    """
    meters = add_zevvy_with(
        home_assistant,
        sandbox,
        ["sensor.apartment_1", "sensor.apartment_3", "sensor.manual_meter"],
    )
    set_manual_meter(home_assistant, 1234.567)
    sandbox.admin("PATCH", "settings", {"access_token_lifetime": 4})
    # zevvy takes a second and a half, then drops the connection: the kill below
    # comes while the upload is under way, and zevvy stores nothing of it.
    sandbox.admin(
        "POST",
        "faults",
        {"status": None, "delay": 1.5, "drop": True, "count": 1000, "target": "api"},
    )

    # --- Killed right after the tick's token refresh. ----------------------
    first = next_quarter(home_assistant.now())
    home_assistant.restart(clock=first - timedelta(seconds=LEAD))
    wait_for(
        lambda: home_assistant.now() > first - timedelta(seconds=1),
        timeout=LEAD + 5,
        message="the first quarter hour to come near",
    )
    refreshes, uploads = refresh_count(sandbox), api_requests(sandbox)
    # The moment the new access token is in use: a crash between the token
    # endpoint's answer and then loses the new refresh token in any client.
    wait_for(
        lambda: refresh_count(sandbox) > refreshes and api_requests(sandbox) > uploads,
        timeout=ON_TIME,
        interval=0.02,
        message="the tick's token refresh and upload",
    )
    home_assistant.kill()
    assert stored(sandbox) == {}
    sandbox.admin("DELETE", "faults")

    # --- Started again: the login works, the readings arrive. --------------
    second = first + QUARTER
    home_assistant.start(clock=second - timedelta(seconds=LEAD))
    login_still_works(home_assistant, sandbox)
    wait_for(
        lambda: len(stored(sandbox)) == len(meters),
        timeout=LEAD,
        message="the first quarter hour's readings after the restart",
    )
    login_still_works(home_assistant, sandbox)

    # --- Killed right after zevvy stored the second quarter hour. ----------
    # The outbox writes confirmations a second late: these are lost.
    wait_for(
        lambda: len(stored(sandbox)) == 2 * len(meters),
        timeout=LEAD + ON_TIME,
        interval=0.02,
        message="the second quarter hour's readings",
    )
    home_assistant.kill()
    home_assistant.start()
    # What zevvy has already is sent again, answered 409 and confirmed.
    wait_for_state(home_assistant, "sensor.zevvy_readings_waiting", "0")
    wait_for_state(home_assistant, "binary_sensor.zevvy_connection", "on")
    login_still_works(home_assistant, sandbox)

    readings = stored(sandbox)
    assert set(readings) == {
        (device, register, read_at(moment))
        for moment in (first, second)
        for device, register in meters.values()
    }
    manual = meters["sensor.manual_meter"]
    assert readings[(*manual, read_at(first))] == 1234.567
    assert readings[(*manual, read_at(second))] == 1234.567
    for entity_id in ("sensor.apartment_1", "sensor.apartment_3"):
        for moment in (first, second):
            value = readings[(*meters[entity_id], read_at(moment))]
            assert abs(value - formula_kwh(entity_id, moment)) < 0.01, (
                entity_id,
                moment,
                value,
            )
    assert not zevvy_issues(home_assistant)
    assert not home_assistant.errors_in_log("custom_components.zevvy")


def test_one_register_refused_never_delays_the_others(
    home_assistant: HomeAssistantProcess, sandbox: SandboxProcess, tmp_path: Path
) -> None:
    """One register answering 404: the four others get every quarter hour on
    time, the refused one is set aside with a repair issue and delivered once
    zevvy takes it again and the user uploads.
    """
    good = [
        "sensor.apartment_1",
        "sensor.apartment_2",
        "sensor.apartment_3",
        "sensor.grid_import",
    ]
    bad = "sensor.ev_charger"
    meters = add_zevvy_with(home_assistant, sandbox, [*good, bad])
    bad_device, bad_register = meters[bad]
    sandbox.admin(
        "POST",
        "faults",
        {
            "status": 404,
            "count": 100000,
            "target": "api",
            "device_ref": bad_device,
            "register_ref": bad_register,
            "body": {"message": "Register not found"},
        },
    )
    home_assistant.clock_file = tmp_path / "clock"
    first = next_quarter(home_assistant.now())
    home_assistant.restart(clock=first - timedelta(seconds=LEAD))

    quarters = [first, first + QUARTER, first + 2 * QUARTER]
    for index, quarter in enumerate(quarters):
        if index:
            # A quarter hour later, without waiting for it.
            home_assistant.jump_clock(
                (quarter - timedelta(seconds=5) - home_assistant.now()).total_seconds()
            )
        expected = {
            (*meters[entity_id], read_at(moment))
            for moment in quarters[: index + 1]
            for entity_id in good
        }
        wait_for(
            partial(lambda wanted: set(stored(sandbox)) == wanted, expected),
            timeout=5 + ON_TIME if index else LEAD + ON_TIME,
            message=f"the good meters' readings of {quarter} on time",
        )
        assert home_assistant.now() < quarter + timedelta(seconds=ON_TIME)

    issues = wait_for(
        lambda: [
            issue
            for issue in zevvy_issues(home_assistant)
            if (issue["translation_placeholders"] or {}).get("device") == bad_device
        ],
        timeout=10,
        message="a repair issue about the refused meter",
    )
    assert len(issues) == 1, issues
    placeholders = issues[0]["translation_placeholders"]
    assert placeholders["register"] == bad_register
    # zevvy's answer, for the user to act on.
    assert "Register not found" in " ".join(map(str, placeholders.values())), issues

    # zevvy takes the register again; the user uploads now.
    sandbox.admin("DELETE", "faults")
    response = home_assistant.call_service("zevvy", "upload_now")
    assert response.ok, response.text
    assert response.json()["service_response"]["waiting"] == 0
    assert set(stored(sandbox)) == {
        (*meters[entity_id], read_at(moment))
        for moment in quarters
        for entity_id in meters
    }
    wait_for(
        lambda: not zevvy_issues(home_assistant),
        timeout=10,
        message="the repair issue to go",
    )
    wait_for_state(home_assistant, "binary_sensor.zevvy_connection", "on")
    assert not home_assistant.errors_in_log("custom_components.zevvy")


def recorded_kwh(
    home_assistant: HomeAssistantProcess, entity_id: str, moment: datetime
) -> float:
    """Return an entity's value (in kWh) as of moment in the recorder's history."""
    start = quote((moment - timedelta(minutes=10)).isoformat())
    query = urlencode({"filter_entity_id": entity_id, "end_time": moment.isoformat()})
    history = home_assistant.api("GET", f"history/period/{start}?{query}&no_attributes")
    states = [
        state
        for state in history[0]
        if datetime.fromisoformat(state["last_changed"]) <= moment
    ]
    value = float(states[-1]["state"])
    unit = home_assistant.state(entity_id)["attributes"]["unit_of_measurement"]  # type: ignore[index]
    return value / 1000 if unit == "Wh" else value


def test_clock_jump_over_quarter_hours_files_no_later_value(
    home_assistant: HomeAssistantProcess, sandbox: SandboxProcess, tmp_path: Path
) -> None:
    """The clock jumps 25 minutes, over two quarter hours: each one zevvy gets is
    the meter's value as of that quarter hour (the recorder's), never the value
    read after the jump; the next quarter hour arrives as usual.
    """
    # The heat pump's value moves on every 10 seconds; apartment 3 is in Wh.
    meters = add_zevvy_with(
        home_assistant, sandbox, ["sensor.heat_pump", "sensor.apartment_3"]
    )
    home_assistant.clock_file = tmp_path / "clock"
    quarter = next_quarter(home_assistant.now())
    home_assistant.restart(clock=quarter - timedelta(seconds=LEAD + 20))
    # The heat pump has been read a few times since the start.
    wait_for(
        lambda: home_assistant.now() > quarter - timedelta(seconds=LEAD),
        timeout=LEAD + 20,
        message="the heat pump's first readings",
    )
    before = home_assistant.now()
    home_assistant.jump_clock(25 * 60)
    jumped = [quarter, quarter + QUARTER]
    assert home_assistant.now() < quarter + 2 * QUARTER

    # The late tick has taken its readings and sent them (or left them out).
    wait_for(
        lambda: home_assistant.now() > before + timedelta(minutes=25, seconds=8),
        timeout=15,
        message="the late tick",
    )
    wait_for_state(home_assistant, "sensor.zevvy_readings_waiting", "0")
    readings = stored(sandbox)
    allowed = {
        (*meters[entity_id], read_at(moment))
        for moment in jumped
        for entity_id in meters
    }
    assert set(readings) <= allowed, readings
    for entity_id, (device, register) in meters.items():
        # The value read after the jump: what a late tick must not file.
        now_value = float(home_assistant.state(entity_id)["state"])  # type: ignore[index]
        for moment in jumped:
            if (key := (device, register, read_at(moment))) not in readings:
                continue
            as_of = recorded_kwh(home_assistant, entity_id, moment)
            assert readings[key] == as_of, (entity_id, moment, readings[key], as_of)
            # That is the meter's value before the jump (minutes before moment).
            assert abs(as_of - formula_kwh_any(entity_id, before)) < 0.02, as_of
            later = now_value / 1000 if entity_id == "sensor.apartment_3" else now_value
            assert readings[key] != later

    # The next quarter hour comes on time, with its value.
    following = quarter + 2 * QUARTER
    home_assistant.jump_clock(
        (following - timedelta(seconds=5) - home_assistant.now()).total_seconds()
    )
    wait_for(
        lambda: all(
            (*reference, read_at(following)) in stored(sandbox)
            for reference in meters.values()
        ),
        timeout=5 + ON_TIME,
        message="the next quarter hour's readings",
    )
    readings = stored(sandbox)
    for entity_id, reference in meters.items():
        value = readings[(*reference, read_at(following))]
        assert abs(value - formula_kwh_any(entity_id, following)) < 0.02, value
    assert not home_assistant.errors_in_log("custom_components.zevvy")


def formula_kwh_any(entity_id: str, moment: datetime) -> float:
    """Return a simulated meter's reading (config/configuration.yaml) in kWh."""
    if entity_id == "sensor.heat_pump":
        hours = (moment.astimezone(UTC).timestamp() - 1767225600) / 3600
        return 6020.0 + hours * 1.2
    return formula_kwh(entity_id, moment)
