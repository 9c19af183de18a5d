"""Tests for the zevvy config flow: device-flow login, reauth, reconfigure.

Every flow runs against the sandbox over real HTTP; the sandbox polls at 0.05 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import json
from pathlib import Path
import time
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult, FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy.api import (
    ZevvyAuth,
    ZevvyConnectionError,
    ZevvyError,
    ZevvySlowDown,
    auth as api_auth,
)
from custom_components.zevvy.config_flow import SECTION_ADVANCED, _normalize_url
from custom_components.zevvy.const import (
    CONF_API_URL,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_ISSUER,
    CONF_REFRESH_TOKEN,
    DEFAULT_API_URL,
    DEFAULT_ISSUER,
    DOMAIN,
)
from zevvy_sandbox import ZevvySandbox

OTHER_SUB = "0b7e4a3c-1f2d-4e5a-8b9c-7d6e5f4a3b2c"


ABORTS = json.loads(
    (
        Path(__file__).parents[1] / "custom_components/zevvy/translations/en.json"
    ).read_text()
)["config"]["abort"]

# Stands for the `closed_port_url` fixture in parameters (known only in the test).
CLOSED_PORT_URL = "closed-port-url"


def user_input(sandbox: ZevvySandbox, **changes: Any) -> dict[str, Any]:
    """Return the user form filled in for the sandbox, with `changes` applied."""
    values: dict[str, Any] = {
        CONF_CLIENT_ID: sandbox.config.client_id,
        CONF_CLIENT_SECRET: sandbox.config.client_secret,
        CONF_ISSUER: sandbox.issuer,
        CONF_API_URL: sandbox.api_url,
        **changes,
    }
    form: dict[str, Any] = {
        SECTION_ADVANCED: {
            CONF_ISSUER: values.pop(CONF_ISSUER),
            CONF_API_URL: values.pop(CONF_API_URL),
        }
    }
    form.update({key: value for key, value in values.items() if value is not None})
    return form


def section_options(result: FlowResult, name: str = SECTION_ADVANCED) -> Any:
    """Return the options of a section of a form's schema."""
    for key, value in result["data_schema"].schema.items():
        if key == name:
            return value.options
    raise AssertionError(f"no section {name}")


def suggested_values(result: FlowResult) -> dict[str, Any]:
    """Return the suggested values of a form, sections as nested dicts."""

    def walk(schema: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key, value in schema.schema.items():
            if hasattr(value, "options") and hasattr(value, "schema"):
                values[str(key)] = walk(value.schema)
            elif key.description and "suggested_value" in key.description:
                values[str(key)] = key.description["suggested_value"]
        return values

    return walk(result["data_schema"])


async def start_login(hass: HomeAssistant, sandbox: ZevvySandbox) -> FlowResult:
    """Open the user form, submit the sandbox credentials; return the progress."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(sandbox)
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    return result


async def finish_progress(hass: HomeAssistant, result: FlowResult) -> FlowResult:
    """Wait for the login task to end, then get the step after the progress."""
    await hass.async_block_till_done()
    return await hass.config_entries.flow.async_configure(result["flow_id"])


async def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait until `condition()` is true, at most `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def token_requests(sandbox: ZevvySandbox) -> int:
    """Count the requests to the token endpoint."""
    return sum(1 for request in sandbox.requests if request.path.endswith("/token"))


async def test_full_flow(hass: HomeAssistant, sandbox: ZevvySandbox) -> None:
    """The user enters the client, approves on zevvy, and the entry is created."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    assert section_options(result) == {"collapsed": True}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(sandbox)
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    assert result["step_id"] == "login"
    assert result["progress_action"] == "wait_for_approval"
    placeholders = result["description_placeholders"]
    assert sandbox.pending_user_codes() == [placeholders["user_code"]]
    assert placeholders["verification_uri"] == f"{sandbox.url}/device"
    assert placeholders["url"].startswith(f"{sandbox.url}/device?")
    assert placeholders["user_code"] in placeholders["url"]
    assert placeholders["minutes"] == "10"

    sandbox.approve(placeholders["user_code"])
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "demo"
    refresh_token = result["data"][CONF_REFRESH_TOKEN]
    assert refresh_token
    assert result["data"] == {
        CONF_CLIENT_ID: sandbox.config.client_id,
        CONF_CLIENT_SECRET: sandbox.config.client_secret,
        CONF_ISSUER: sandbox.issuer,
        CONF_API_URL: sandbox.api_url,
        CONF_REFRESH_TOKEN: refresh_token,
    }
    entry = result["result"]
    assert entry.unique_id == sandbox.config.sub
    assert entry.options == {}
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert not hass.config_entries.flow.async_progress()


async def test_pending_then_success(hass: HomeAssistant, sandbox: ZevvySandbox) -> None:
    """The flow keeps polling while the user has not decided yet."""
    result = await start_login(hass, sandbox)
    await wait_until(lambda: token_requests(sandbox) >= 3)
    assert all(
        request.status == 400
        for request in sandbox.requests
        if request.path.endswith("/token")
    )
    flow = hass.config_entries.flow.async_get(result["flow_id"])
    assert flow["step_id"] == "login"

    sandbox.approve(result["description_placeholders"]["user_code"])
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_slow_down(hass: HomeAssistant, sandbox: ZevvySandbox) -> None:
    """On slow_down the flow polls less often, then succeeds."""
    outcomes: list[str] = []
    original = ZevvyAuth.poll_token

    async def spy(self: ZevvyAuth, device_code: str) -> Any:
        try:
            tokens = await original(self, device_code)
        except ZevvyError as err:
            outcomes.append(type(err).__name__)
            raise
        outcomes.append("tokens")
        return tokens

    with (
        patch.object(ZevvyAuth, "poll_token", spy),
        patch.object(api_auth, "SLOW_DOWN_INCREMENT", 0.3),
    ):
        result = await start_login(hass, sandbox)
        (code,) = sandbox.device_codes()
        # The server now wants 0.3 s between polls; the client polls every 0.05 s.
        code.interval = 0.3
        await wait_until(lambda: ZevvySlowDown.__name__ in outcomes)
        sandbox.approve(result["description_placeholders"]["user_code"])
        result = await finish_progress(hass, result)

    assert result["type"] is FlowResultType.CREATE_ENTRY
    # One slow_down was enough: the client kept to the longer interval.
    assert outcomes.count(ZevvySlowDown.__name__) == 1
    assert outcomes[-1] == "tokens"


async def test_access_denied(hass: HomeAssistant, sandbox: ZevvySandbox) -> None:
    """Refusing the login on zevvy's page ends the flow."""
    result = await start_login(hass, sandbox)
    sandbox.deny(result["description_placeholders"]["user_code"])
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "access_denied"
    assert not hass.config_entries.async_entries(DOMAIN)


async def test_expired_then_restart(hass: HomeAssistant, sandbox: ZevvySandbox) -> None:
    """An expired code leads to a form that starts over with a new code."""
    sandbox.config.code_lifetime = 0.3
    result = await start_login(hass, sandbox)
    assert result["description_placeholders"]["minutes"] == "1"
    first_code = result["description_placeholders"]["user_code"]

    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "expired"
    assert result["errors"] == {}

    # Starting over while zevvy is unreachable shows an error on the form.
    sandbox.config.code_lifetime = 600.0
    sandbox.inject_fault(status=503, count=1, target="any")
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "expired"
    assert result["errors"] == {"base": "cannot_connect"}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    new_code = result["description_placeholders"]["user_code"]
    assert new_code != first_code
    assert result["description_placeholders"]["minutes"] == "10"
    sandbox.approve(new_code)
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({CONF_CLIENT_SECRET: "wrong-secret"}, "invalid_auth"),
        ({CONF_CLIENT_ID: "unknown-client"}, "invalid_auth"),
        ({CONF_ISSUER: CLOSED_PORT_URL}, "cannot_connect"),
    ],
    ids=["wrong_secret", "wrong_client_id", "unreachable"],
)
async def test_user_step_errors(
    hass: HomeAssistant,
    sandbox: ZevvySandbox,
    closed_port_url: str,
    changes: dict[str, Any],
    error: str,
) -> None:
    """Errors are shown on the form; the user can correct them and go on."""
    changes = {
        key: closed_port_url if value == CLOSED_PORT_URL else value
        for key, value in changes.items()
    }
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(sandbox, **changes)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {"base": error}
    # What the user typed stays in the form.
    values = suggested_values(result)
    assert values[CONF_CLIENT_ID] == user_input(sandbox, **changes)[CONF_CLIENT_ID]
    assert values[SECTION_ADVANCED] == user_input(sandbox, **changes)[SECTION_ADVANCED]

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(sandbox)
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    sandbox.approve(result["description_placeholders"]["user_code"])
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_user_step_unknown_error(
    hass: HomeAssistant, sandbox: ZevvySandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error is logged and shown as `unknown`; a retry works."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    with patch.object(
        ZevvyAuth, "request_device_authorization", side_effect=RuntimeError("boom")
    ):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], user_input(sandbox)
        )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "unknown"}
    assert "Unexpected error while starting the zevvy login" in caplog.text
    assert sandbox.config.client_secret not in caplog.text

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(sandbox)
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    sandbox.approve(result["description_placeholders"]["user_code"])
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    "changes",
    [
        {CONF_ISSUER: "http://iam.example.ch/realms/zevvy"},
        {CONF_API_URL: "http://api.example.ch"},
        {CONF_API_URL: "ftp://127.0.0.1/api"},
        {CONF_ISSUER: "iam.zevvy.org/realms/zevvy-prod"},
        {CONF_ISSUER: "https://"},
        {CONF_API_URL: "http://[::1"},
    ],
)
async def test_invalid_url(
    hass: HomeAssistant, sandbox: ZevvySandbox, changes: dict[str, Any]
) -> None:
    """Non-HTTPS addresses (except the local sandbox) are refused before any request."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(sandbox, **changes)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {SECTION_ADVANCED: "invalid_url"}
    # The section opens so that the user sees the address to correct.
    assert section_options(result) == {"collapsed": False}
    assert not sandbox.requests

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(sandbox)
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    sandbox.approve(result["description_placeholders"]["user_code"])
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" https://iam.zevvy.org/realms/zevvy-prod/ ", DEFAULT_ISSUER),
        (DEFAULT_API_URL, DEFAULT_API_URL),
        ("http://localhost:8765/realms/zevvy", "http://localhost:8765/realms/zevvy"),
        ("http://127.0.0.1:8765/api/", "http://127.0.0.1:8765/api"),
        ("http://192.168.1.5/api", None),
        ("http://localhost.example.ch/api", None),
        ("https:///path", None),
        ("mailto:zevvy@example.ch", None),
        ("", None),
    ],
)
def test_normalize_url(value: str, expected: str | None) -> None:
    """HTTPS everywhere; plain HTTP only for localhost and 127.0.0.1."""
    assert _normalize_url(value) == expected


async def test_default_servers(hass: HomeAssistant) -> None:
    """Without changes under Advanced, the flow talks to zevvy's production servers."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    with patch.object(
        ZevvyAuth, "request_device_authorization", side_effect=ZevvyConnectionError
    ):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"],
            {
                CONF_CLIENT_ID: "client",
                CONF_CLIENT_SECRET: "secret",
                SECTION_ADVANCED: {},
            },
        )
    assert result["errors"] == {"base": "cannot_connect"}
    assert suggested_values(result)[SECTION_ADVANCED] == {
        CONF_ISSUER: DEFAULT_ISSUER,
        CONF_API_URL: DEFAULT_API_URL,
    }
    hass.config_entries.flow.async_abort(result["flow_id"])


def _connected_with_another_client(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    hass.config_entries.async_update_entry(
        entry, data={**entry.data, CONF_CLIENT_ID: "another-api-client"}
    )


async def test_already_configured(
    hass: HomeAssistant, sandbox: ZevvySandbox, mock_config_entry: MockConfigEntry
) -> None:
    """Logging in to an account that is already set up (through another API
    client: the same client stops before the login) aborts."""
    mock_config_entry.add_to_hass(hass)
    _connected_with_another_client(hass, mock_config_entry)
    result = await start_login(hass, sandbox)
    sandbox.approve(result["description_placeholders"]["user_code"])
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1


async def test_second_account(
    hass: HomeAssistant, sandbox: ZevvySandbox, mock_config_entry: MockConfigEntry
) -> None:
    """A different zevvy account becomes a second entry."""
    mock_config_entry.add_to_hass(hass)
    _connected_with_another_client(hass, mock_config_entry)
    result = await start_login(hass, sandbox)
    sandbox.approve(
        result["description_placeholders"]["user_code"],
        sub=OTHER_SUB,
        username="other",
    )
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "other"
    assert result["result"].unique_id == OTHER_SUB
    await hass.async_block_till_done()


async def test_connection_lost_while_waiting(
    hass: HomeAssistant, sandbox: ZevvySandbox
) -> None:
    """A failure of the identity server while polling aborts `cannot_connect`."""
    result = await start_login(hass, sandbox)
    sandbox.inject_fault(drop=True, count=1, target="token")
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "cannot_connect"


async def test_client_rejected_while_waiting(
    hass: HomeAssistant, sandbox: ZevvySandbox
) -> None:
    """A client secret revoked while polling aborts `invalid_auth`."""
    result = await start_login(hass, sandbox)
    sandbox.config.client_secret = "rotated-in-the-web-app"
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_auth"


async def test_unexpected_error_while_waiting(
    hass: HomeAssistant, sandbox: ZevvySandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected client error after the approval aborts `unknown`, logged."""
    result = await start_login(hass, sandbox)
    with patch.object(
        ZevvyAuth, "async_account", side_effect=ZevvyError("Something new")
    ):
        sandbox.approve(result["description_placeholders"]["user_code"])
        result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "unknown"
    assert "Unexpected error while waiting for the zevvy login" in caplog.text


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"opaque_access_tokens": True},
        {"opaque_access_tokens": True, "id_tokens": False},
    ],
    ids=["jwt", "opaque_with_id_token", "opaque_with_userinfo"],
)
async def test_login_with_opaque_access_tokens(
    hass: HomeAssistant, sandbox: ZevvySandbox, settings: dict[str, Any]
) -> None:
    """The account comes from the access token, else the ID token or userinfo."""
    sandbox.configure(**settings)
    result = await start_login(hass, sandbox)
    sandbox.approve(result["description_placeholders"]["user_code"])
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "demo"
    assert result["result"].unique_id == sandbox.config.sub
    await hass.async_block_till_done()
    assert result["result"].state is ConfigEntryState.LOADED


async def test_login_without_account(
    hass: HomeAssistant, sandbox: ZevvySandbox
) -> None:
    """A provider that names no account at all: a clear, translated abort."""
    sandbox.configure(opaque_access_tokens=True, id_tokens=False, userinfo=False)
    result = await start_login(hass, sandbox)
    sandbox.approve(result["description_placeholders"]["user_code"])
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_account"
    assert "openid" in ABORTS["no_account"]
    assert not hass.config_entries.async_entries(DOMAIN)


async def test_userinfo_unreachable(hass: HomeAssistant, sandbox: ZevvySandbox) -> None:
    """userinfo failing after the approval aborts `cannot_connect`."""
    sandbox.configure(opaque_access_tokens=True, id_tokens=False)
    result = await start_login(hass, sandbox)
    sandbox.inject_fault(status=503, count=1, target="userinfo")
    sandbox.approve(result["description_placeholders"]["user_code"])
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "cannot_connect"


async def test_flow_removed_while_waiting(
    hass: HomeAssistant, sandbox: ZevvySandbox
) -> None:
    """Closing the dialog stops polling; no task is left behind."""
    result = await start_login(hass, sandbox)
    flow = hass.config_entries.flow._progress[result["flow_id"]]
    task = flow._login_task
    assert task is not None
    assert not task.done()
    await wait_until(lambda: token_requests(sandbox) >= 1)

    hass.config_entries.flow.async_abort(result["flow_id"])
    await hass.async_block_till_done()
    assert task.cancelled()
    assert flow._login_task is None
    polls = token_requests(sandbox)
    await asyncio.sleep(0.2)
    assert token_requests(sandbox) == polls
    assert not hass.config_entries.flow.async_progress()


async def test_reauth_flow_removed_while_waiting(
    hass: HomeAssistant, sandbox: ZevvySandbox, init_integration: MockConfigEntry
) -> None:
    """Closing a reauthentication at the code step stops polling too."""
    result = await init_integration.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    await wait_until(lambda: token_requests(sandbox) >= 2)

    hass.config_entries.flow.async_abort(result["flow_id"])
    await hass.async_block_till_done()
    polls = token_requests(sandbox)
    await asyncio.sleep(0.3)
    assert token_requests(sandbox) == polls
    assert not hass.config_entries.flow.async_progress()


async def test_stop_while_waiting(
    hass: HomeAssistant, sandbox: ZevvySandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Home Assistant stopping with the code on screen: polling ends at once.

    Home Assistant keeps a flow that the user left open (a reauthentication
    closed from its card stays in progress) until it stops; then the login must
    not poll through the stop and be cancelled with a warning at the end.
    """
    result = await start_login(hass, sandbox)
    flow = hass.config_entries.flow._progress[result["flow_id"]]
    task = flow._login_task
    assert task is not None
    await wait_until(lambda: token_requests(sandbox) >= 1)

    await hass.async_stop()
    assert task.done()
    polls = token_requests(sandbox)
    await asyncio.sleep(0.3)
    assert token_requests(sandbox) == polls
    assert "still running" not in caplog.text


async def test_reauth(
    hass: HomeAssistant, sandbox: ZevvySandbox, init_integration: MockConfigEntry
) -> None:
    """Reauthentication runs the device flow and stores the new refresh token."""
    entry = init_integration
    old_token = entry.data[CONF_REFRESH_TOKEN]
    old_data = dict(entry.data)
    result = await entry.start_reauth_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    assert result["description_placeholders"]["account"] == "demo"

    # zevvy unreachable: the error is shown, the user can try again.
    sandbox.inject_fault(status=503, count=1, target="any")
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    sandbox.approve(result["description_placeholders"]["user_code"])
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()

    new_token = entry.data[CONF_REFRESH_TOKEN]
    assert new_token != old_token
    assert {**entry.data, CONF_REFRESH_TOKEN: None} == {
        **old_data,
        CONF_REFRESH_TOKEN: None,
    }
    assert entry.state is ConfigEntryState.LOADED
    # The reloaded entry uses the new login, not the old one's saved token.
    (grant,) = (
        grant for grant in sandbox.grants() if new_token in grant.used_refresh_tokens
    )
    assert not grant.revoked
    assert entry.runtime_data.tokens.refresh_token == grant.refresh_token


async def test_reauth_other_account(
    hass: HomeAssistant, sandbox: ZevvySandbox, init_integration: MockConfigEntry
) -> None:
    """Logging in as another account during reauth aborts and changes nothing."""
    entry = init_integration
    data = dict(entry.data)
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    sandbox.approve(result["description_placeholders"]["user_code"], sub=OTHER_SUB)
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_account_mismatch"
    assert dict(entry.data) == data


async def test_reconfigure(
    hass: HomeAssistant, sandbox: ZevvySandbox, init_integration: MockConfigEntry
) -> None:
    """Reconfigure changes the client secret and logs in again."""
    entry = init_integration
    old_token = entry.data[CONF_REFRESH_TOKEN]
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    # Prefilled except the secret, which is never sent to the browser.
    assert suggested_values(result) == {
        CONF_CLIENT_ID: sandbox.config.client_id,
        SECTION_ADVANCED: {
            CONF_ISSUER: sandbox.issuer,
            CONF_API_URL: sandbox.api_url,
        },
    }
    # Non-default servers: the Advanced section is open.
    assert section_options(result) == {"collapsed": False}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(sandbox, **{CONF_API_URL: "http://example.ch"})
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {SECTION_ADVANCED: "invalid_url"}
    assert CONF_CLIENT_SECRET not in suggested_values(result)

    sandbox.config.client_secret = "new-secret"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        user_input(
            sandbox,
            **{CONF_CLIENT_SECRET: "new-secret", CONF_API_URL: sandbox.api_url + "/"},
        ),
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    sandbox.approve(result["description_placeholders"]["user_code"])
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()

    assert entry.data[CONF_CLIENT_SECRET] == "new-secret"
    assert entry.data[CONF_API_URL] == sandbox.api_url
    assert entry.data[CONF_REFRESH_TOKEN] != old_token
    assert entry.state is ConfigEntryState.LOADED


@pytest.mark.parametrize("secret", [None, "", "   "])
async def test_reconfigure_keeps_secret(
    hass: HomeAssistant,
    sandbox: ZevvySandbox,
    init_integration: MockConfigEntry,
    secret: str | None,
) -> None:
    """An empty client secret keeps the stored one."""
    entry = init_integration
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(sandbox, **{CONF_CLIENT_SECRET: secret})
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    sandbox.approve(result["description_placeholders"]["user_code"])
    result = await finish_progress(hass, result)
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_CLIENT_SECRET] == sandbox.config.client_secret
    assert entry.state is ConfigEntryState.LOADED


async def test_reconfigure_other_account(
    hass: HomeAssistant, sandbox: ZevvySandbox, init_integration: MockConfigEntry
) -> None:
    """Reconfigure must stay on the same zevvy account."""
    entry = init_integration
    data = dict(entry.data)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input(sandbox)
    )
    sandbox.approve(result["description_placeholders"]["user_code"], sub=OTHER_SUB)
    result = await finish_progress(hass, result)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "account_mismatch"
    assert dict(entry.data) == data
