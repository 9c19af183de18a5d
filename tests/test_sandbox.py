"""Tests of the zevvy sandbox, over real HTTP."""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta
import json
from pathlib import Path
import re
import signal
import sys
import time
from typing import Any
from urllib.parse import quote

import aiohttp
from freezegun.api import FrozenDateTimeFactory
import pytest
from yarl import URL

from zevvy_sandbox import (
    SandboxConfig,
    SandboxError,
    StoredReading,
    ZevvySandbox,
)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT = {"client_id": "zevvy-sandbox", "client_secret": "sandbox-secret"}
READINGS = [
    {"readAt": "2026-11-26T14:00:00.000Z", "value": 100.5},
    {"readAt": "2026-11-26T14:15:00.000Z", "value": 101},
]


@pytest.fixture
async def session() -> Any:
    """A client session for one test."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def claims_of(token: str) -> dict[str, Any]:
    """Decode a JWT payload without verifying it, like the client does."""
    payload = token.split(".")[1]
    result: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return result


def bulk_url(sandbox: ZevvySandbox, device_ref: str, register_ref: str) -> URL:
    """Build the bulk-create URL with every reserved character escaped."""
    path = (
        f"/api/deviceRef/{quote(device_ref, safe='')}"
        f"/registerRef/{quote(register_ref, safe='')}/measurements/_bulk_create"
    )
    return URL(sandbox.url).with_path(path, encoded=True)


def basic_auth(user: str, password: str) -> str:
    """Return an HTTP Basic Authorization header value.

    Built by hand: aiohttp.BasicAuth is deprecated in newer aiohttp releases and
    their replacement does not exist in older ones.
    """
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def post_form(
    session: aiohttp.ClientSession,
    url: str,
    data: dict[str, str],
    auth: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST a form (auth: an Authorization header) and return status and JSON body."""
    headers = {"Authorization": auth} if auth else None
    async with session.post(url, data=data, headers=headers) as response:
        return response.status, await response.json()


async def start_device_flow(
    session: aiohttp.ClientSession, sandbox: ZevvySandbox, **extra: str
) -> dict[str, Any]:
    """Ask for a device code."""
    status, body = await post_form(
        session,
        f"{sandbox.issuer}/protocol/openid-connect/auth/device",
        {**CLIENT, "scope": "offline_access measurement register device", **extra},
    )
    assert status == 200, body
    return body


async def poll(
    session: aiohttp.ClientSession, sandbox: ZevvySandbox, device_code: str
) -> tuple[int, dict[str, Any]]:
    """Poll the token endpoint once."""
    return await post_form(
        session,
        f"{sandbox.issuer}/protocol/openid-connect/token",
        {**CLIENT, "grant_type": DEVICE_GRANT, "device_code": device_code},
    )


async def refresh(
    session: aiohttp.ClientSession, sandbox: ZevvySandbox, refresh_token: str
) -> tuple[int, dict[str, Any]]:
    """Use a refresh token once."""
    return await post_form(
        session,
        f"{sandbox.issuer}/protocol/openid-connect/token",
        {**CLIENT, "grant_type": "refresh_token", "refresh_token": refresh_token},
    )


async def login(
    session: aiohttp.ClientSession, sandbox: ZevvySandbox, scope: str | None = None
) -> dict[str, Any]:
    """Run the device flow with an approval through the Python API."""
    flow = await start_device_flow(session, sandbox)
    sandbox.approve(flow["user_code"], scope=scope)
    status, body = await poll(session, sandbox, flow["device_code"])
    assert status == 200, body
    return body


async def bulk_create(
    session: aiohttp.ClientSession,
    url: URL,
    token: str | None,
    body: Any = READINGS,
) -> tuple[int, dict[str, Any]]:
    """POST readings and return status and JSON body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


# ---------------------------------------------------------------- identity


async def test_discovery(sandbox: ZevvySandbox, session: aiohttp.ClientSession) -> None:
    """Discovery lists the Keycloak endpoints under the issuer."""
    assert sandbox.issuer == f"{sandbox.url}/realms/zevvy"
    assert sandbox.api_url == f"{sandbox.url}/api"
    async with session.get(
        f"{sandbox.issuer}/.well-known/openid-configuration"
    ) as response:
        assert response.status == 200
        document = await response.json()
    oidc = f"{sandbox.issuer}/protocol/openid-connect"
    assert document["issuer"] == sandbox.issuer
    assert document["device_authorization_endpoint"] == f"{oidc}/auth/device"
    assert document["token_endpoint"] == f"{oidc}/token"

    async with session.get(
        f"{sandbox.url}/realms/other/.well-known/openid-configuration"
    ) as response:
        assert response.status == 404


async def test_public_url(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """A public URL replaces the announced one (HA in a container)."""
    bind_url = sandbox.url
    sandbox.config.public_url = "http://host.docker.internal:8765/"
    assert sandbox.issuer == "http://host.docker.internal:8765/realms/zevvy"
    async with session.get(
        f"{bind_url}/realms/zevvy/.well-known/openid-configuration"
    ) as response:
        document = await response.json()
    assert document["issuer"] == sandbox.issuer
    status, flow = await post_form(
        session, f"{bind_url}/realms/zevvy/protocol/openid-connect/auth/device", CLIENT
    )
    assert status == 200
    assert flow["verification_uri"] == "http://host.docker.internal:8765/device"


async def test_approve_with_the_html_form(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """A person follows verification_uri_complete and approves; the client gets tokens."""
    flow = await start_device_flow(session, sandbox)
    user_code = flow["user_code"]
    assert re.fullmatch(r"[A-Z]{4}-[A-Z]{4}", user_code)
    assert flow["verification_uri"] == f"{sandbox.url}/device"
    assert flow["verification_uri_complete"] == (
        f"{sandbox.url}/device?user_code={user_code}"
    )
    assert flow["interval"] == 0.05
    assert flow["expires_in"] == 600
    assert sandbox.pending_user_codes() == [user_code]

    async with session.get(flow["verification_uri_complete"]) as response:
        assert response.status == 200
        page = await response.text()
    assert "<title>Approve device · zevvy sandbox</title>" in page
    assert user_code in page
    assert 'value="approve"' in page
    assert 'value="deny"' in page
    assert "<script" not in page

    status, body = await poll(session, sandbox, flow["device_code"])
    assert (status, body["error"]) == (400, "authorization_pending")

    async with session.post(
        f"{sandbox.url}/device", data={"user_code": user_code, "action": "approve"}
    ) as response:
        assert response.status == 200
        page = await response.text()
    assert "Device approved" in page
    assert sandbox.pending_user_codes() == []

    await asyncio.sleep(0.05)
    status, tokens = await poll(session, sandbox, flow["device_code"])
    assert status == 200, tokens
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 300
    assert tokens["refresh_expires_in"] == 0
    assert tokens["scope"] == "offline_access measurement register device"
    claims = claims_of(tokens["access_token"])
    config = sandbox.config
    assert claims["sub"] == config.sub
    assert claims["preferred_username"] == "demo"
    assert claims["email"] == "demo@example.ch"
    assert claims["scope"] == tokens["scope"]
    # Five minutes from issue (exp is rounded up, iat down).
    assert 300 <= claims["exp"] - claims["iat"] <= 301

    # Polling again after success: invalid_grant, and the new login is revoked.
    await asyncio.sleep(0.05)
    status, body = await poll(session, sandbox, flow["device_code"])
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await refresh(session, sandbox, tokens["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")

    # The page tells a person the code cannot be used again.
    async with session.get(flow["verification_uri_complete"]) as response:
        assert response.status == 409
        assert "already approved" in await response.text()


async def test_deny_with_the_html_form(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """A person types the code (sloppily) on the form and denies."""
    flow = await start_device_flow(session, sandbox)
    async with session.get(f"{sandbox.url}/device") as response:
        assert response.status == 200
        page = await response.text()
    assert 'name="user_code"' in page
    assert 'method="post"' in page

    typed = flow["user_code"].replace("-", " ").lower()
    async with session.post(
        f"{sandbox.url}/device", data={"user_code": typed}
    ) as response:
        assert response.status == 200
        page = await response.text()
    assert flow["user_code"] in page
    assert 'value="deny"' in page

    async with session.post(
        f"{sandbox.url}/device", data={"user_code": typed, "action": "deny"}
    ) as response:
        assert response.status == 200
        assert "Access denied" in await response.text()

    status, body = await poll(session, sandbox, flow["device_code"])
    assert (status, body["error"]) == (400, "access_denied")


async def test_approve_as_another_account_with_the_form(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """The form can sign in as a different account: another sub."""
    flow = await start_device_flow(session, sandbox)
    async with session.post(
        f"{sandbox.url}/device",
        data={
            "user_code": flow["user_code"],
            "action": "approve",
            "username": "anna",
            "email": "anna@example.ch",
        },
    ) as response:
        assert "Signed in as anna" in await response.text()
    status, tokens = await poll(session, sandbox, flow["device_code"])
    assert status == 200
    claims = claims_of(tokens["access_token"])
    assert claims["preferred_username"] == "anna"
    assert claims["email"] == "anna@example.ch"
    assert claims["sub"] != sandbox.config.sub


async def test_device_page_unknown_and_expired_codes(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """Unknown and expired codes get clear messages; nothing is approved."""
    async with session.get(f"{sandbox.url}/device?user_code=ZZZZ-ZZZZ") as response:
        assert response.status == 404
        assert "Unknown code ZZZZ-ZZZZ" in await response.text()
    async with session.post(
        f"{sandbox.url}/device", data={"user_code": "ZZZZ-ZZZZ", "action": "approve"}
    ) as response:
        assert response.status == 404
        assert "Unknown code" in await response.text()
    async with session.post(f"{sandbox.url}/device", data={}) as response:
        assert response.status == 400
        assert "Enter the code" in await response.text()

    sandbox.config.code_lifetime = 0.05
    flow = await start_device_flow(session, sandbox)
    await asyncio.sleep(0.1)
    assert sandbox.pending_user_codes() == []
    async with session.post(
        f"{sandbox.url}/device",
        data={"user_code": flow["user_code"], "action": "approve"},
    ) as response:
        assert response.status == 409
        assert "expired" in await response.text()
    with pytest.raises(SandboxError, match="expired"):
        sandbox.approve(flow["user_code"])
    with pytest.raises(SandboxError, match="unknown"):
        sandbox.deny("ZZZZ-ZZZZ")
    status, body = await poll(session, sandbox, flow["device_code"])
    assert (status, body["error"]) == (400, "expired_token")


async def test_slow_down(
    sandbox: ZevvySandbox,
    session: aiohttp.ClientSession,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Polling faster than the interval answers slow_down.

    The clock is frozen and moved by hand: on a busy machine two requests can be
    further apart than an interval, and a real sleep can last longer than asked.
    """
    sandbox.config.interval = 0.3
    flow = await start_device_flow(session, sandbox)
    assert flow["interval"] == 0.3
    status, body = await poll(session, sandbox, flow["device_code"])
    assert (status, body["error"]) == (400, "authorization_pending")
    status, body = await poll(session, sandbox, flow["device_code"])
    assert (status, body["error"]) == (400, "slow_down")
    freezer.tick(timedelta(seconds=0.3))
    status, body = await poll(session, sandbox, flow["device_code"])
    assert (status, body["error"]) == (400, "authorization_pending")

    # With the RFC's increment the interval grows on every slow_down.
    sandbox.config.slow_down_increment = 0.2
    status, body = await poll(session, sandbox, flow["device_code"])
    assert body["error"] == "slow_down"
    (code,) = sandbox.device_codes()
    assert code.interval == pytest.approx(0.5)
    freezer.tick(timedelta(seconds=0.35))
    sandbox.approve(flow["user_code"])
    status, body = await poll(session, sandbox, flow["device_code"])
    assert body["error"] == "slow_down"
    assert code.interval == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("url_suffix", "data", "auth", "status", "error"),
    [
        ("auth/device", {"client_id": "zevvy-sandbox"}, None, 401, "invalid_client"),
        (
            "auth/device",
            {"client_id": "zevvy-sandbox", "client_secret": "wrong"},
            None,
            401,
            "invalid_client",
        ),
        (
            "auth/device",
            {"client_id": "other", "client_secret": "sandbox-secret"},
            None,
            401,
            "invalid_client",
        ),
        ("token", {"grant_type": "refresh_token"}, None, 401, "invalid_client"),
        (
            "token",
            {"grant_type": "refresh_token", "refresh_token": "x"},
            basic_auth("zevvy-sandbox", "wrong"),
            401,
            "invalid_client",
        ),
        (
            "token",
            {"grant_type": "refresh_token", "refresh_token": "unknown"},
            basic_auth("zevvy-sandbox", "sandbox-secret"),
            400,
            "invalid_grant",
        ),
        (
            "token",
            {**CLIENT, "grant_type": DEVICE_GRANT, "device_code": "unknown"},
            None,
            400,
            "invalid_grant",
        ),
        ("token", {**CLIENT, "grant_type": DEVICE_GRANT}, None, 400, "invalid_request"),
        ("token", {**CLIENT}, None, 400, "invalid_request"),
        (
            "token",
            {**CLIENT, "grant_type": "password"},
            None,
            400,
            "unsupported_grant_type",
        ),
        (
            "auth/device",
            {**CLIENT, "scope": "measurement admin"},
            None,
            400,
            "invalid_scope",
        ),
    ],
)
async def test_identity_errors(
    sandbox: ZevvySandbox,
    session: aiohttp.ClientSession,
    url_suffix: str,
    data: dict[str, str],
    auth: str | None,
    status: int,
    error: str,
) -> None:
    """Bad clients get 401 invalid_client, bad grants 400 with the RFC error."""
    got_status, body = await post_form(
        session, f"{sandbox.issuer}/protocol/openid-connect/{url_suffix}", data, auth
    )
    assert (got_status, body["error"]) == (status, error)
    assert body["error_description"]


async def test_token_endpoint_wants_a_form(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """A JSON body is not accepted by the token endpoint."""
    async with session.post(
        f"{sandbox.issuer}/protocol/openid-connect/token",
        json={**CLIENT, "grant_type": "refresh_token", "refresh_token": "x"},
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"


async def test_basic_auth_and_refresh_rotation(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """Refresh tokens rotate; reusing an old one revokes the whole login."""
    tokens = await login(session, sandbox)
    first = tokens["refresh_token"]
    status, body = await post_form(
        session,
        f"{sandbox.issuer}/protocol/openid-connect/token",
        {"grant_type": "refresh_token", "refresh_token": first},
        auth=basic_auth("zevvy-sandbox", "sandbox-secret"),
    )
    assert status == 200, body
    second = body["refresh_token"]
    assert second != first
    assert body["access_token"] != tokens["access_token"]

    status, body = await refresh(session, sandbox, second)
    assert status == 200
    third = body["refresh_token"]

    # Reuse of an old token: invalid_grant, and the newest one dies with it.
    status, body = await refresh(session, sandbox, first)
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await refresh(session, sandbox, third)
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_revoke_and_expire(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """The Python API revokes refresh tokens and expires access tokens."""
    tokens = await login(session, sandbox)
    url = bulk_url(sandbox, "Car", "Energy")
    sandbox.expire_access_tokens()
    status, body = await bulk_create(session, url, tokens["access_token"])
    assert status == 401
    assert body["message"]

    status, fresh = await refresh(session, sandbox, tokens["refresh_token"])
    assert status == 200
    status, _ = await bulk_create(session, url, fresh["access_token"])
    assert status == 201

    sandbox.revoke_refresh_tokens()
    status, body = await refresh(session, sandbox, fresh["refresh_token"])
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_short_access_token_lifetime(
    sandbox: ZevvySandbox,
    session: aiohttp.ClientSession,
    freezer: FrozenDateTimeFactory,
) -> None:
    """An access token stops working after its lifetime (a frozen clock moved by hand)."""
    sandbox.config.access_token_lifetime = 0.5
    tokens = await login(session, sandbox)
    assert tokens["expires_in"] == 0.5
    url = bulk_url(sandbox, "Car", "Energy")
    status, _ = await bulk_create(session, url, tokens["access_token"], READINGS[:1])
    assert status == 201
    freezer.tick(timedelta(seconds=0.5))
    status, body = await bulk_create(session, url, tokens["access_token"], READINGS[1:])
    assert (status, body["message"]) == (401, "Bearer token expired")


async def test_issue_tokens(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """Fixtures can get a login without the device flow."""
    tokens = sandbox.issue_tokens(username="bob")
    assert "refresh_token" not in repr(tokens)
    assert claims_of(tokens.access_token)["preferred_username"] == "bob"
    status, body = await refresh(session, sandbox, tokens.refresh_token)
    assert status == 200, body
    with pytest.raises(ValueError, match="Invalid scopes"):
        sandbox.issue_tokens(scope="everything")


# ---------------------------------------------------------------- measurement API


@pytest.mark.parametrize(
    ("device_ref", "register_ref"),
    [
        ("zevvy Test Device Example Charging Station", "Energy import"),
        ("Wärmepumpe Küche", "Zähler ½"),
        ("100% solar", "50%"),
        ("Apt #3", "what? really"),
        ("a/b", "c\\d"),
        ("🚗 Tesla", "⚡ kWh"),
        ("+plus & and=", "~tilde;semi,comma'"),
        ("literal %2F and %25", " padded "),
    ],
)
async def test_bulk_create_odd_names(
    sandbox: ZevvySandbox,
    session: aiohttp.ClientSession,
    device_ref: str,
    register_ref: str,
) -> None:
    """References with reserved and non-ASCII characters round-trip exactly."""
    token = sandbox.issue_tokens().access_token
    status, body = await bulk_create(
        session, bulk_url(sandbox, device_ref, register_ref), token
    )
    assert (status, body) == (201, {"created": 2})
    assert sandbox.readings() == [
        StoredReading(device_ref, register_ref, "2026-11-26T14:00:00.000Z", 100.5),
        StoredReading(device_ref, register_ref, "2026-11-26T14:15:00.000Z", 101.0),
    ]
    assert sandbox.devices() == {device_ref: [register_ref]}
    record = sandbox.requests[-1]
    assert (record.method, record.status) == ("POST", 201)


async def test_bulk_create_with_yarl_path_joining(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """yarl's own escaping (URL / segment) is understood too."""
    token = sandbox.issue_tokens().access_token
    url = (
        URL(sandbox.api_url)
        / "deviceRef"
        / "Garage 50% #2?"
        / "registerRef"
        / "Zähler 🚗"
        / "measurements"
        / "_bulk_create"
    )
    status, _ = await bulk_create(session, url, token)
    assert status == 201
    assert sandbox.devices() == {"Garage 50% #2?": ["Zähler 🚗"]}


async def test_bulk_create_conflict_is_all_or_nothing(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """One existing reading makes the whole batch fail with 409."""
    token = sandbox.issue_tokens().access_token
    url = bulk_url(sandbox, "Car", "Energy")
    status, _ = await bulk_create(session, url, token, READINGS[:1])
    assert status == 201
    batch = [
        READINGS[1],
        READINGS[0],
        {"readAt": "2026-11-26T14:30:00.000Z", "value": 1},
    ]
    status, body = await bulk_create(session, url, token, batch)
    assert status == 409
    assert "2026-11-26T14:00:00.000Z" in body["message"]
    assert len(sandbox.readings()) == 1

    # Duplicates inside one batch conflict too.
    status, _ = await bulk_create(session, url, token, [READINGS[1], READINGS[1]])
    assert status == 409
    assert len(sandbox.readings()) == 1

    # The same readAt on another register or device is fine.
    status, _ = await bulk_create(
        session, bulk_url(sandbox, "Car", "Energy export"), token, READINGS[:1]
    )
    assert status == 201
    status, _ = await bulk_create(
        session, bulk_url(sandbox, "Other", "Energy"), token, READINGS[:1]
    )
    assert status == 201
    assert [r.register_ref for r in sandbox.readings("Car")] == [
        "Energy",
        "Energy export",
    ]
    assert len(sandbox.readings(register_ref="Energy")) == 2
    assert sandbox.readings("Car", "Energy") == [
        StoredReading("Car", "Energy", "2026-11-26T14:00:00.000Z", 100.5)
    ]


async def test_bulk_create_authorization(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """No, bad or foreign tokens: 401; a token without measurement scope: 403."""
    url = bulk_url(sandbox, "Car", "Energy")
    status, body = await bulk_create(session, url, None)
    assert status == 401
    assert body["message"] == "Missing bearer token"
    status, _ = await bulk_create(session, url, "not-a-jwt")
    assert status == 401
    # A token from another sandbox (other key) is not accepted.
    async with ZevvySandbox(SandboxConfig()) as other:
        foreign = other.issue_tokens().access_token
    status, _ = await bulk_create(session, url, foreign)
    assert status == 401

    tokens = await login(session, sandbox, scope="offline_access device")
    assert tokens["scope"] == "offline_access device"
    status, body = await bulk_create(session, url, tokens["access_token"])
    assert status == 403
    assert "measurement" in body["message"]

    # Asking for fewer scopes in the device request works the same way.
    flow = await start_device_flow(session, sandbox, scope="offline_access")
    sandbox.approve(flow["user_code"])
    status, tokens = await poll(session, sandbox, flow["device_code"])
    assert tokens["scope"] == "offline_access"
    status, _ = await bulk_create(session, url, tokens["access_token"])
    assert status == 403
    assert sandbox.readings() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"readAt": "2026-11-26T14:00:00.000Z", "value": 1}, "JSON array"),
        ([], "at least one"),
        ([1], "object"),
        ([{"readAt": "2026-11-26T14:00:00Z", "value": 1}], "readAt"),
        ([{"readAt": "2026-11-26T14:00:00.000+00:00", "value": 1}], "readAt"),
        ([{"readAt": "2026-11-26 14:00:00.000Z", "value": 1}], "readAt"),
        ([{"readAt": "2026-11-26T14:00:00.000000Z", "value": 1}], "readAt"),
        ([{"readAt": "2026-13-26T14:00:00.000Z", "value": 1}], "not a date"),
        ([{"readAt": 1795000000, "value": 1}], "readAt"),
        ([{"value": 1}], "readAt"),
        ([{"readAt": "2026-11-26T14:00:00.000Z", "value": "12.5"}], "value"),
        ([{"readAt": "2026-11-26T14:00:00.000Z", "value": -0.001}], "value"),
        ([{"readAt": "2026-11-26T14:00:00.000Z", "value": True}], "value"),
        ([{"readAt": "2026-11-26T14:00:00.000Z", "value": None}], "value"),
        ([{"readAt": "2026-11-26T14:00:00.000Z"}], "value"),
        (
            [
                {"readAt": "2026-11-26T14:00:00.000Z", "value": 1},
                {"readAt": "2026-11-26T14:15:00.000Z", "value": -1},
            ],
            "[1].value",
        ),
    ],
)
async def test_bulk_create_rejects_invalid_bodies(
    sandbox: ZevvySandbox,
    session: aiohttp.ClientSession,
    body: Any,
    message: str,
) -> None:
    """Invalid bodies get 400 with a message and store nothing."""
    token = sandbox.issue_tokens().access_token
    status, answer = await bulk_create(
        session, bulk_url(sandbox, "Car", "Energy"), token, body
    )
    assert status == 400
    assert message in answer["message"]
    assert sandbox.readings() == []
    assert sandbox.devices() == {}


async def test_bulk_create_rejects_non_json(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """Broken JSON is 400, another content type 415, NaN 400."""
    token = sandbox.issue_tokens().access_token
    url = bulk_url(sandbox, "Car", "Energy")
    headers = {"Authorization": f"Bearer {token}"}
    async with session.post(
        url, data="[{", headers={**headers, "Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
    async with session.post(url, data="[]", headers=headers) as response:
        assert response.status == 415
    async with session.post(
        url,
        data='[{"readAt": "2026-11-26T14:00:00.000Z", "value": NaN}]',
        headers={**headers, "Content-Type": "application/json"},
    ) as response:
        assert response.status == 400


async def test_max_batch(sandbox: ZevvySandbox, session: aiohttp.ClientSession) -> None:
    """A configured batch limit rejects larger batches with 413 (or as configured)."""
    sandbox.configure(max_batch=1)
    token = sandbox.issue_tokens().access_token
    url = bulk_url(sandbox, "Car", "Energy")
    status, body = await bulk_create(session, url, token)
    assert status == 413
    assert "At most 1" in body["message"]
    assert sandbox.readings() == []
    status, _ = await bulk_create(session, url, token, READINGS[:1])
    assert status == 201

    sandbox.configure(max_batch_status=422)
    status, _ = await bulk_create(session, url, token, READINGS[1:] * 2)
    assert status == 422
    with pytest.raises(ValueError, match="max_batch_status"):
        sandbox.configure(max_batch_status=201)
    with pytest.raises(ValueError, match="max_batch"):
        SandboxConfig(max_batch=0)


async def test_conflict_partial_and_details(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """409 meanings: "partial" stores the new readings; details name the times."""
    token = sandbox.issue_tokens().access_token
    url = bulk_url(sandbox, "Car", "Energy")
    status, _ = await bulk_create(session, url, token, READINGS[:1])
    assert status == 201
    new = {"readAt": "2026-11-26T14:30:00.000Z", "value": 102}
    batch = [READINGS[0], READINGS[1], READINGS[0], new]

    # Default: all or nothing, and the body is only a message.
    status, body = await bulk_create(session, url, token, batch)
    assert status == 409
    assert set(body) == {"message"}
    assert len(sandbox.readings()) == 1

    sandbox.configure(conflict_details=True)
    status, body = await bulk_create(session, url, token, batch)
    assert status == 409
    assert body["conflicts"] == ["2026-11-26T14:00:00.000Z"]
    assert "nothing was created" in body["message"]
    assert len(sandbox.readings()) == 1

    sandbox.configure(conflict_mode="partial")
    # Within the batch, the second of two equal readAt conflicts with the first.
    batch = [READINGS[0], READINGS[1], READINGS[1], new]
    status, body = await bulk_create(session, url, token, batch)
    assert status == 409
    assert body["conflicts"] == [
        "2026-11-26T14:00:00.000Z",
        "2026-11-26T14:15:00.000Z",
    ]
    assert "2 created" in body["message"]
    assert [r.read_at for r in sandbox.readings("Car", "Energy")] == [
        "2026-11-26T14:00:00.000Z",
        "2026-11-26T14:15:00.000Z",
        "2026-11-26T14:30:00.000Z",
    ]
    assert sandbox.readings("Car", "Energy")[1].value == 101

    # Everything stored already: 409, nothing new.
    sandbox.configure(conflict_details=False)
    status, body = await bulk_create(session, url, token, [new])
    assert (status, set(body)) == (409, {"message"})
    assert "0 created" in body["message"]
    assert len(sandbox.readings()) == 3

    with pytest.raises(ValueError, match="conflict_mode"):
        sandbox.configure(conflict_mode="some")
    assert sandbox.config.conflict_mode == "partial"


async def test_bulk_create_value_limit_and_validation_status(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """One invalid reading refuses the whole batch, naming its index and readAt."""
    token = sandbox.issue_tokens().access_token
    url = bulk_url(sandbox, "Car", "Energy")
    batch = [
        *READINGS,
        {"readAt": "2026-11-26T14:30:00.000Z", "value": 1e12},
        {"readAt": "2026-11-26T14:45:00.000Z", "value": 102},
    ]
    status, _ = await bulk_create(session, url, token, batch)
    assert status == 201  # no limit by default
    sandbox.reset()
    token = sandbox.issue_tokens().access_token

    sandbox.configure(max_value=1e9)
    status, body = await bulk_create(session, url, token, batch)
    assert status == 400
    assert body["message"] == (
        "[2].value must be at most 1000000000; got 1000000000000.0 "
        "(readAt 2026-11-26T14:30:00.000Z)"
    )
    assert sandbox.readings() == []

    sandbox.configure(validation_status=422)
    batch[2] = {"readAt": "2026-11-26T14:30:00.000Z", "value": -5}
    status, body = await bulk_create(session, url, token, batch)
    assert status == 422
    assert body["message"] == (
        "[2].value must be a non-negative number; got -5 "
        "(readAt 2026-11-26T14:30:00.000Z)"
    )
    batch[2] = {"readAt": "2026-11-26T14:30:00Z", "value": 5}
    status, body = await bulk_create(session, url, token, batch)
    assert status == 422
    assert "[2].readAt" in body["message"]
    # A body that is no batch at all stays 400.
    status, _ = await bulk_create(session, url, token, {"readAt": "x"})
    assert status == 400
    assert sandbox.readings() == []
    batch[2] = {"readAt": "2026-11-26T14:30:00.000Z", "value": 1e9}
    status, _ = await bulk_create(session, url, token, batch)
    assert status == 201


async def test_one_reading_refused_as_invalid(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """A reading marked invalid refuses every batch holding it, like any invalid
    reading (400 or 422, its index and readAt named), until the mark is lifted;
    other registers and times are not affected."""
    token = sandbox.issue_tokens().access_token
    url = bulk_url(sandbox, "Car", "Energy")
    bad = "2026-11-26T14:15:00.000Z"
    sandbox.refuse_reading("Car", "Energy", bad)
    sandbox.refuse_reading("Car", "Energy", "2026-11-26T15:00:00.000Z", status=422)
    assert sandbox.refused_readings == {
        ("Car", "Energy", bad): 400,
        ("Car", "Energy", "2026-11-26T15:00:00.000Z"): 422,
    }
    status, body = await bulk_create(session, url, token, READINGS)
    assert status == 400
    assert body["message"] == f"[1] is not a valid measurement (readAt {bad})"
    assert sandbox.readings() == []
    # Alone, and at another index: the same refusal, naming its index.
    status, body = await bulk_create(session, url, token, READINGS[1:])
    assert (status, body["message"]) == (
        400,
        f"[0] is not a valid measurement (readAt {bad})",
    )
    # The other readings, another register, the other mark's own status.
    status, _ = await bulk_create(session, url, token, READINGS[:1])
    assert status == 201
    status, _ = await bulk_create(
        session, bulk_url(sandbox, "Car", "Solar"), token, READINGS[1:]
    )
    assert status == 201
    status, body = await bulk_create(
        session, url, token, [{"readAt": "2026-11-26T15:00:00.000Z", "value": 3}]
    )
    assert status == 422
    # Lifted: taken.
    sandbox.accept_reading("Car", "Energy", bad)
    status, _ = await bulk_create(session, url, token, READINGS[1:])
    assert status == 201
    assert [r.read_at for r in sandbox.readings("Car", "Energy")] == [
        READINGS[0]["readAt"],
        bad,
    ]
    with pytest.raises(ValueError, match="status"):
        sandbox.refuse_reading("Car", "Energy", bad, status=200)
    sandbox.reset()
    assert sandbox.refused_readings == {}


# ---------------------------------------------------------------- faults


async def test_fault_status_retry_after_and_count(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """The next N API requests get the injected status with Retry-After."""
    token = sandbox.issue_tokens().access_token
    url = bulk_url(sandbox, "Car", "Energy")
    sandbox.inject_fault(429, count=2, retry_after=7)
    for _ in range(2):
        async with session.post(
            url, json=READINGS, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "7"
            assert (await response.json())["message"]
    # Faults for the API leave the identity server alone.
    status, _ = await refresh(session, sandbox, sandbox.issue_tokens().refresh_token)
    assert status == 200
    status, _ = await bulk_create(session, url, token)
    assert status == 201
    assert sandbox.faults == []
    api_statuses = [r.status for r in sandbox.requests if r.path.startswith("/api/")]
    assert api_statuses == [429, 429, 201]


async def test_fault_drop_delay_and_targets(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """Dropped connections, slow answers and faults on the token endpoint."""
    token = sandbox.issue_tokens().access_token
    url = bulk_url(sandbox, "Car", "Energy")

    sandbox.inject_fault(drop=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await bulk_create(session, url, token)
    assert sandbox.readings() == []
    assert sandbox.requests[-1].status == 0

    sandbox.inject_fault(status=None, delay=0.2)
    started = time.monotonic()
    status, _ = await bulk_create(session, url, token, READINGS[:1])
    assert status == 201
    assert time.monotonic() - started >= 0.2

    sandbox.inject_fault(status=504, delay=0.1, target="token")
    started = time.monotonic()
    status, body = await refresh(session, sandbox, "whatever")
    assert (status, body["error"]) == (504, "server_error")
    assert time.monotonic() - started >= 0.1

    # aiohttp retries an idempotent request once when a kept-alive connection is
    # dropped, so a GET needs two drops to fail.
    sandbox.inject_fault(status=None, drop=True, target="discovery", count=2)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.get(f"{sandbox.issuer}/.well-known/openid-configuration"):
            pass

    sandbox.inject_fault(
        status=400,
        target="any",
        body={"error": "invalid_grant", "error_description": "x"},
    )
    status, body = await post_form(
        session,
        f"{sandbox.issuer}/protocol/openid-connect/auth/device",
        CLIENT,
    )
    assert (status, body) == (400, {"error": "invalid_grant", "error_description": "x"})

    sandbox.inject_fault(status=500, target="device")
    status, body = await post_form(
        session, f"{sandbox.issuer}/protocol/openid-connect/auth/device", CLIENT
    )
    assert status == 500
    status, body = await post_form(
        session, f"{sandbox.issuer}/protocol/openid-connect/auth/device", CLIENT
    )
    assert status == 200

    sandbox.inject_fault(503, count=5)
    sandbox.clear_faults()
    status, _ = await bulk_create(session, url, token, READINGS[1:])
    assert status == 201

    with pytest.raises(ValueError, match="target"):
        sandbox.inject_fault(target="nowhere")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count"):
        sandbox.inject_fault(count=0)


async def test_fault_for_one_register(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """A fault limited to one device / register leaves the others alone."""
    token = sandbox.issue_tokens().access_token
    sandbox.inject_fault(404, count=100, device_ref="Car", register_ref="Energy")
    sandbox.inject_fault(403, count=1, device_ref="Heat pump")
    status, body = await bulk_create(session, bulk_url(sandbox, "Car", "Energy"), token)
    assert status == 404
    assert body["message"] == "injected fault: HTTP 404"
    status, _ = await bulk_create(session, bulk_url(sandbox, "Car", "Solar"), token)
    assert status == 201
    status, _ = await bulk_create(session, bulk_url(sandbox, "Other", "Energy"), token)
    assert status == 201
    status, _ = await bulk_create(
        session, bulk_url(sandbox, "Heat pump", "Zähler 1"), token
    )
    assert status == 403
    status, _ = await bulk_create(
        session, bulk_url(sandbox, "Heat pump", "Zähler 1"), token
    )
    assert status == 201
    # The identity server is not touched by a register's fault.
    status, _ = await refresh(session, sandbox, sandbox.issue_tokens().refresh_token)
    assert status == 200
    status, _ = await bulk_create(session, bulk_url(sandbox, "Car", "Energy"), token)
    assert status == 404
    assert [(f.status, f.count) for f in sandbox.faults] == [(404, 98)]
    assert sandbox.readings("Car", "Energy") == []

    # The same over the admin API, with references that need escaping.
    sandbox.clear_faults()
    admin = f"{sandbox.url}/_sandbox"
    async with session.post(
        f"{admin}/faults",
        json={"status": 413, "count": 5, "register_ref": "Zähler ½/2"},
    ) as response:
        assert response.status == 200
    async with session.get(f"{admin}/faults") as response:
        faults = await response.json()
    assert [(f["device_ref"], f["register_ref"]) for f in faults] == [
        (None, "Zähler ½/2")
    ]
    status, _ = await bulk_create(
        session, bulk_url(sandbox, "Garage", "Zähler ½/2"), token
    )
    assert status == 413
    status, _ = await bulk_create(
        session, bulk_url(sandbox, "Garage", "Zähler ½"), token
    )
    assert status == 201
    async with session.post(
        f"{admin}/faults", json={"target": "token", "device_ref": "Car"}
    ) as response:
        assert response.status == 400
    with pytest.raises(ValueError, match="target 'api'"):
        sandbox.inject_fault(target="token", register_ref="Energy")


async def test_latency(sandbox: ZevvySandbox, session: aiohttp.ClientSession) -> None:
    """A standing latency delays every answer except the admin API's."""
    token = sandbox.issue_tokens().access_token
    sandbox.configure(latency=0.2)
    started = time.monotonic()
    status, _ = await bulk_create(session, bulk_url(sandbox, "Car", "Energy"), token)
    assert status == 201
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    status, _ = await refresh(session, sandbox, sandbox.issue_tokens().refresh_token)
    assert status == 200
    assert time.monotonic() - started >= 0.2
    # A fault's delay comes on top; the admin API answers at once.
    sandbox.inject_fault(503, delay=0.1)
    started = time.monotonic()
    status, _ = await bulk_create(session, bulk_url(sandbox, "Car", "Energy"), token)
    assert status == 503
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    async with session.get(f"{sandbox.url}/_sandbox/settings") as response:
        assert (await response.json())["latency"] == 0.2
    assert time.monotonic() - started < 0.2
    with pytest.raises(ValueError, match="latency"):
        sandbox.configure(latency=-0.05)


async def test_request_counts(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """Requests are counted per endpoint and per target, admin calls aside."""
    token = sandbox.issue_tokens().access_token
    for _ in range(3):
        await bulk_create(session, bulk_url(sandbox, "Car", "Energy"), token)
    await bulk_create(session, bulk_url(sandbox, "Car", "Solar ½"), token)
    await refresh(session, sandbox, "nope")
    async with session.get(sandbox.url) as response:
        assert response.status == 200
    energy = "POST /api/deviceRef/Car/registerRef/Energy/measurements/_bulk_create"
    counts = sandbox.request_counts()
    assert counts["total"] == 6
    assert counts["by_target"] == {"api": 4, "token": 1, "page": 1}
    assert counts["by_endpoint"][energy] == 3
    assert (
        counts["by_endpoint"][
            "POST /api/deviceRef/Car/registerRef/Solar ½/measurements/_bulk_create"
        ]
        == 1
    )
    async with session.get(f"{sandbox.url}/_sandbox/requests/counts") as response:
        assert await response.json() == counts
    async with session.delete(f"{sandbox.url}/_sandbox/requests") as response:
        assert response.status == 200
    assert sandbox.request_counts() == {
        "total": 0,
        "by_target": {},
        "by_endpoint": {},
    }


# ---------------------------------------------------------------- OpenID Connect


async def test_opaque_access_tokens(
    sandbox: ZevvySandbox,
    session: aiohttp.ClientSession,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Opaque access tokens are looked up on the server; they expire on the clock."""
    sandbox.configure(opaque_access_tokens=True, access_token_lifetime=60)
    tokens = await login(session, sandbox)
    access_token = tokens["access_token"]
    assert "." not in access_token
    assert len(access_token) >= 32
    assert "id_token" not in tokens  # no openid scope
    url = bulk_url(sandbox, "Car", "Energy")
    status, _ = await bulk_create(session, url, access_token, READINGS[:1])
    assert status == 201
    status, _ = await bulk_create(session, url, access_token + "x", READINGS[1:])
    assert status == 401

    # Refresh rotation and reuse revocation work as with JWTs.
    status, fresh = await refresh(session, sandbox, tokens["refresh_token"])
    assert status == 200
    assert "." not in fresh["access_token"]
    assert fresh["refresh_token"] != tokens["refresh_token"]
    freezer.tick(timedelta(seconds=60))
    status, body = await bulk_create(session, url, fresh["access_token"], READINGS[1:])
    assert (status, body["message"]) == (401, "Bearer token expired")
    status, body = await refresh(session, sandbox, tokens["refresh_token"])
    assert body["error"] == "invalid_grant"
    status, body = await refresh(session, sandbox, fresh["refresh_token"])
    assert body["error"] == "invalid_grant"
    assert sandbox.grants()[0].revoked_reason == "an old refresh token was reused"

    issued = sandbox.issue_tokens(scope="measurement")
    status, _ = await bulk_create(session, url, issued.access_token, READINGS[1:])
    assert status == 201
    sandbox.expire_access_tokens()
    status, _ = await bulk_create(session, url, issued.access_token, READINGS[1:])
    assert status == 401

    # A JWT access token's jti is no opaque token, and switching back gives JWTs.
    sandbox.configure(opaque_access_tokens=False)
    jwt = sandbox.issue_tokens().access_token
    status, _ = await bulk_create(session, url, claims_of(jwt)["jti"], READINGS[1:])
    assert status == 401
    status, _ = await bulk_create(session, url, jwt, READINGS[1:])
    assert status == 409


async def test_id_token(
    sandbox: ZevvySandbox,
    session: aiohttp.ClientSession,
    freezer: FrozenDateTimeFactory,
) -> None:
    """With the openid scope, token responses carry an ID token (unless turned off)."""
    freezer.move_to("2030-01-01T00:00:00Z")
    flow = await start_device_flow(
        session, sandbox, scope="openid offline_access measurement"
    )
    sandbox.approve(flow["user_code"])
    status, tokens = await poll(session, sandbox, flow["device_code"])
    assert status == 200
    assert tokens["scope"] == "openid offline_access measurement"
    claims = claims_of(tokens["id_token"])
    assert claims["sub"] == sandbox.config.sub
    assert claims["preferred_username"] == "demo"
    assert claims["email"] == "demo@example.ch"
    assert claims["iss"] == sandbox.issuer
    assert claims["aud"] == "zevvy-sandbox"
    assert claims["iat"] == 1893456000  # the frozen clock
    assert claims["exp"] == 1893456000 + 300

    freezer.tick(timedelta(seconds=10))
    status, fresh = await refresh(session, sandbox, tokens["refresh_token"])
    assert status == 200
    assert claims_of(fresh["id_token"])["iat"] == 1893456010

    issued = sandbox.issue_tokens(scope="openid measurement", username="eve")
    assert issued.id_token is not None
    assert claims_of(issued.id_token)["preferred_username"] == "eve"
    assert sandbox.issue_tokens().id_token is None

    sandbox.configure(id_tokens=False)
    status, fresh = await refresh(session, sandbox, fresh["refresh_token"])
    assert status == 200
    assert "id_token" not in fresh
    assert sandbox.issue_tokens(scope="openid measurement").id_token is None


async def test_userinfo(sandbox: ZevvySandbox, session: aiohttp.ClientSession) -> None:
    """Discovery names the userinfo endpoint; it answers the account's claims."""
    sandbox.configure(opaque_access_tokens=True)
    discovery = f"{sandbox.issuer}/.well-known/openid-configuration"
    async with session.get(discovery) as response:
        document = await response.json()
    userinfo = document["userinfo_endpoint"]
    assert userinfo == f"{sandbox.issuer}/protocol/openid-connect/userinfo"

    token = sandbox.issue_tokens(scope="openid offline_access measurement").access_token
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(userinfo, headers=headers) as response:
        assert response.status == 200
        assert await response.json() == {
            "sub": sandbox.config.sub,
            "preferred_username": "demo",
            "email": "demo@example.ch",
            "email_verified": True,
        }
    async with session.post(userinfo, headers=headers) as response:
        assert response.status == 200
        assert (await response.json())["sub"] == sandbox.config.sub

    async with session.get(userinfo) as response:
        assert response.status == 401
        assert (await response.json())["error"] == "invalid_token"
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    no_openid = sandbox.issue_tokens().access_token
    async with session.get(
        userinfo, headers={"Authorization": f"Bearer {no_openid}"}
    ) as response:
        assert response.status == 403
        assert (await response.json())["error"] == "insufficient_scope"
    sandbox.expire_access_tokens()
    async with session.get(userinfo, headers=headers) as response:
        assert response.status == 401

    token = sandbox.issue_tokens(scope="openid").access_token
    headers = {"Authorization": f"Bearer {token}"}
    sandbox.inject_fault(503, target="userinfo")
    async with session.get(userinfo, headers=headers) as response:
        assert response.status == 503
    async with session.get(userinfo, headers=headers) as response:
        assert response.status == 200

    sandbox.configure(userinfo=False)
    async with session.get(discovery) as response:
        assert "userinfo_endpoint" not in await response.json()
    async with session.get(userinfo, headers=headers) as response:
        assert response.status == 404


# ---------------------------------------------------------------- pages


async def test_index_page(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """The overview lists devices, registers, counts, first/last and pending codes."""
    async with session.get(sandbox.url) as response:
        assert response.status == 200
        page = await response.text()
    assert "<title>zevvy sandbox</title>" in page
    assert "No devices yet" in page

    token = sandbox.issue_tokens().access_token
    await bulk_create(session, bulk_url(sandbox, "Wärmepumpe <Küche>", "Zähler"), token)
    await bulk_create(
        session,
        bulk_url(sandbox, "Car", "Energy"),
        token,
        [{"readAt": "2026-11-26T13:45:00.000Z", "value": 5}],
    )
    flow = await start_device_flow(session, sandbox)

    async with session.get(sandbox.url) as response:
        assert response.status == 200
        page = await response.text()
    assert "Wärmepumpe &lt;Küche&gt;" in page
    assert "<Küche>" not in page
    assert "Zähler" in page
    assert "Car" in page
    assert '<td class="num">2</td>' in page
    assert "2026-11-26T14:00:00.000Z" in page
    assert "2026-11-26T14:15:00.000Z" in page
    assert "101.000" in page
    assert f'href="/device?user_code={flow["user_code"]}"' in page
    assert "demo" in page  # the active login
    assert "/api/deviceRef/Car/registerRef/Energy/measurements/_bulk_create" in page
    assert "&amp;" not in page
    assert sandbox.issuer in page


# ---------------------------------------------------------------- admin API


async def test_admin_api(sandbox: ZevvySandbox, session: aiohttp.ClientSession) -> None:
    """The JSON admin API drives the sandbox from another process."""
    admin = f"{sandbox.url}/_sandbox"
    flow = await start_device_flow(session, sandbox)
    async with session.get(f"{admin}/pending") as response:
        assert await response.json() == [flow["user_code"]]
    async with session.post(
        f"{admin}/approve", json={"user_code": flow["user_code"], "username": "eve"}
    ) as response:
        assert response.status == 200
    async with session.post(
        f"{admin}/approve", json={"user_code": flow["user_code"]}
    ) as response:
        assert response.status == 404
        assert "already approved" in (await response.json())["message"]
    status, tokens = await poll(session, sandbox, flow["device_code"])
    assert status == 200
    assert claims_of(tokens["access_token"])["preferred_username"] == "eve"

    flow = await start_device_flow(session, sandbox)
    async with session.post(
        f"{admin}/deny", json={"user_code": flow["user_code"]}
    ) as response:
        assert response.status == 200
    status, body = await poll(session, sandbox, flow["device_code"])
    assert body["error"] == "access_denied"
    async with session.post(f"{admin}/deny", json={"user_code": "NOPE"}) as response:
        assert response.status == 404

    url = bulk_url(sandbox, "Car", "Energy")
    async with session.post(
        f"{admin}/faults",
        json={"status": 503, "count": 1, "retry_after": 2.5, "target": "api"},
    ) as response:
        assert response.status == 200
    async with session.get(f"{admin}/faults") as response:
        assert [f["status"] for f in await response.json()] == [503]
    async with session.post(
        url,
        json=READINGS,
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    ) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "2.5"
    async with session.post(f"{admin}/faults", json={"target": "moon"}) as response:
        assert response.status == 400
    async with session.post(f"{admin}/faults", json={"status": 500}) as response:
        assert response.status == 200
    async with session.delete(f"{admin}/faults") as response:
        assert response.status == 200
    assert sandbox.faults == []

    status, _ = await bulk_create(session, url, tokens["access_token"])
    assert status == 201
    await bulk_create(
        session, bulk_url(sandbox, "Car", "Solar"), tokens["access_token"]
    )
    async with session.get(
        f"{admin}/readings", params={"device_ref": "Car", "register_ref": "Energy"}
    ) as response:
        assert await response.json() == [
            {
                "device_ref": "Car",
                "register_ref": "Energy",
                "read_at": "2026-11-26T14:00:00.000Z",
                "value": 100.5,
            },
            {
                "device_ref": "Car",
                "register_ref": "Energy",
                "read_at": "2026-11-26T14:15:00.000Z",
                "value": 101.0,
            },
        ]
    async with session.get(f"{admin}/readings") as response:
        assert len(await response.json()) == 4

    async with session.get(f"{admin}/requests") as response:
        requests = await response.json()
    assert {
        "method": "POST",
        "path": "/api/deviceRef/Car/registerRef/Energy/measurements/_bulk_create",
        "status": 503,
    } in requests
    assert not any(r["path"].startswith("/_sandbox") for r in requests)

    async with session.post(f"{admin}/expire") as response:
        assert response.status == 200
    status, _ = await bulk_create(session, url, tokens["access_token"])
    assert status == 401
    async with session.post(f"{admin}/revoke") as response:
        assert response.status == 200
    status, body = await refresh(session, sandbox, tokens["refresh_token"])
    assert body["error"] == "invalid_grant"

    async with session.post(
        f"{admin}/tokens", json={"scope": "measurement"}
    ) as response:
        issued = await response.json()
    assert claims_of(issued["access_token"])["scope"] == "measurement"

    async with session.post(f"{admin}/reset") as response:
        assert response.status == 200
    assert sandbox.readings() == []
    assert sandbox.requests == []
    assert sandbox.pending_user_codes() == []
    status, _ = await refresh(session, sandbox, issued["refresh_token"])
    assert status == 400
    async with session.post(f"{admin}/approve", data="{") as response:
        assert response.status == 400


async def test_admin_settings(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """Settings are read and changed at runtime through the admin API."""
    settings_url = f"{sandbox.url}/_sandbox/settings"
    async with session.get(settings_url) as response:
        settings = await response.json()
    assert settings["conflict_mode"] == "all_or_nothing"
    assert settings["conflict_details"] is False
    assert settings["max_batch"] is None
    assert settings["max_batch_status"] == 413
    assert settings["validation_status"] == 400
    assert settings["max_value"] is None
    assert settings["latency"] == 0
    assert settings["opaque_access_tokens"] is False
    assert settings["id_tokens"] is True
    assert settings["userinfo"] is True
    assert settings["interval"] == 0.05

    changes = {
        "conflict_mode": "partial",
        "conflict_details": True,
        "max_batch": 100,
        "max_batch_status": 400,
        "max_value": 1e9,
        "validation_status": 422,
        "latency": 0,
        "opaque_access_tokens": True,
        "id_tokens": False,
        "userinfo": False,
        "access_token_lifetime": 60,
    }
    async with session.patch(settings_url, json=changes) as response:
        assert response.status == 200
        settings = await response.json()
    assert {key: settings[key] for key in changes} == changes
    assert sandbox.config.access_token_lifetime == 60.0
    assert isinstance(sandbox.config.access_token_lifetime, float)
    async with session.post(settings_url, json={"latency": 0.01}) as response:
        assert response.status == 200
    assert sandbox.config.latency == 0.01

    for bad in (
        {"conflict_mode": "sometimes"},
        {"max_batch": "10"},
        {"opaque_access_tokens": 1},
        {"validation_status": 200},
        {"latency": -1},
        {"no_such_setting": 1},
        {"latency": 0, "max_batch": 0},
    ):
        async with session.patch(settings_url, json=bad) as response:
            assert response.status == 400, bad
            assert (await response.json())["message"]
    assert sandbox.config.latency == 0.01  # a refused change changes nothing
    assert sandbox.config.max_batch == 100

    async with session.get(sandbox.url) as response:
        page = await response.text()
    assert "opaque" in page
    assert "partial" in page


async def test_admin_grants_and_revoking_one(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """Logins can be inspected (current refresh token) and revoked one by one."""
    admin = f"{sandbox.url}/_sandbox"
    first = await login(session, sandbox)
    status, rotated = await refresh(session, sandbox, first["refresh_token"])
    assert status == 200
    second = sandbox.issue_tokens(username="eve")
    async with session.get(f"{admin}/grants") as response:
        grants = await response.json()
    assert [g["username"] for g in grants] == ["demo", "eve"]
    assert grants[0]["refresh_token"] == rotated["refresh_token"]
    assert grants[0]["refresh_count"] == 1
    assert grants[0]["used_refresh_tokens"] == 1
    assert grants[0]["revoked"] is False
    assert grants[1]["refresh_token"] == second.refresh_token

    async with session.post(
        f"{admin}/revoke", json={"grant_id": grants[1]["grant_id"]}
    ) as response:
        assert response.status == 200
    status, body = await refresh(session, sandbox, second.refresh_token)
    assert body["error"] == "invalid_grant"
    status, _ = await refresh(session, sandbox, rotated["refresh_token"])
    assert status == 200
    async with session.post(f"{admin}/revoke", json={"grant_id": "nope"}) as response:
        assert response.status == 404
    async with session.get(f"{admin}/grants") as response:
        grants = await response.json()
    assert [(g["revoked"], g["revoked_reason"]) for g in grants] == [
        (False, None),
        (True, "revoked through the sandbox"),
    ]


# ---------------------------------------------------------------- persistence, CLI


async def test_data_file_round_trip(
    socket_enabled: None, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Devices, readings and logins survive a restart; access tokens do not."""
    data_file = tmp_path / "sandbox.json"
    first = ZevvySandbox(SandboxConfig(interval=0.05), data_file=data_file)
    await first.start()
    try:
        tokens = await login(session, first)
        status, _ = await bulk_create(
            session, bulk_url(first, "Wärmepumpe", "Zähler ½"), tokens["access_token"]
        )
        assert status == 201
        status, rotated = await refresh(session, first, tokens["refresh_token"])
        assert status == 200
        revoked = first.issue_tokens(username="gone")
        first.revoke_refresh_tokens()
        kept = first.issue_tokens(username="kept")
    finally:
        await first.stop()
    stored = json.loads(data_file.read_text(encoding="utf-8"))
    assert stored["version"] == 1
    # Restarting the same instance does not read the file a second time.
    await first.start()
    await first.stop()
    assert len(first.readings()) == 2

    second = ZevvySandbox(SandboxConfig(interval=0.05), data_file=data_file)
    await second.start()
    try:
        assert second.readings() == first.readings()
        assert second.devices() == {"Wärmepumpe": ["Zähler ½"]}
        url = bulk_url(second, "Wärmepumpe", "Zähler ½")
        status, _ = await bulk_create(
            session,
            url,
            kept.access_token,
            [{"readAt": "2026-11-26T15:00:00.000Z", "value": 1}],
        )
        assert status == 401
        status, body = await refresh(session, second, kept.refresh_token)
        assert status == 200, body
        status, _ = await bulk_create(session, url, body["access_token"])
        assert status == 409  # the readings from before the restart are there
        status, body = await refresh(session, second, revoked.refresh_token)
        assert body["error"] == "invalid_grant"
        # Reuse detection survives the restart too.
        status, body = await refresh(session, second, tokens["refresh_token"])
        assert body["error"] == "invalid_grant"
        status, body = await refresh(session, second, rotated["refresh_token"])
        assert body["error"] == "invalid_grant"
        second.reset()
    finally:
        await second.stop()
    assert json.loads(data_file.read_text(encoding="utf-8"))["readings"] == []


async def test_data_file_errors(socket_enabled: None, tmp_path: Path) -> None:
    """A data file that is not ours is reported and left alone."""
    data_file = tmp_path / "other.json"
    data_file.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SandboxError, match="cannot read"):
        await ZevvySandbox(data_file=data_file).start()
    data_file.write_text('{"grants": [{"nope": 1}]}', encoding="utf-8")
    with pytest.raises(SandboxError, match="not a sandbox data file"):
        await ZevvySandbox(data_file=data_file).start()
    assert data_file.read_text(encoding="utf-8") == '{"grants": [{"nope": 1}]}'


async def test_start_twice_and_not_started(socket_enabled: None) -> None:
    """Misuse of the lifecycle is reported."""
    sandbox = ZevvySandbox()
    with pytest.raises(SandboxError, match="not started"):
        _ = sandbox.url
    async with sandbox:
        with pytest.raises(SandboxError, match="already started"):
            await sandbox.start()


async def test_cli_starts_prints_and_stops(
    socket_enabled: None, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """`python -m zevvy_sandbox --port 0` prints its URLs and stops on Ctrl-C."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zevvy_sandbox",
        "--port",
        "0",
        "--client-id",
        "my-client",
        "--client-secret",
        "my-secret",
        "--interval",
        "0.5",
        "--data-file",
        str(tmp_path / "data.json"),
        "--max-batch",
        "50",
        "--max-batch-status",
        "400",
        "--conflict-mode",
        "partial",
        "--conflict-details",
        "--max-value",
        "1e9",
        "--validation-status",
        "422",
        "--latency",
        "0.01",
        "--opaque-access-tokens",
        "--no-id-tokens",
        "--no-userinfo",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    assert process.stdout is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(10):
            while not lines or not lines[-1].startswith("Press Ctrl-C"):
                line = await process.stdout.readline()
                assert line, "the sandbox exited early"
                lines.append(line.decode().strip())
        output = "\n".join(lines)
        issuer = re.search(r"issuer:\s+(\S+)", output)
        assert issuer is not None
        assert re.search(r"API URL:\s+http://127\.0\.0\.1:\d+/api", output)
        assert "client id:     my-client" in output
        assert "client secret: my-secret" in output
        assert ":0/" not in output
        status, body = await post_form(
            session,
            f"{issuer[1]}/protocol/openid-connect/auth/device",
            {"client_id": "my-client", "client_secret": "my-secret"},
        )
        assert status == 200
        assert body["interval"] == 0.5
        root = issuer[1].removesuffix("/realms/zevvy")
        async with session.get(f"{root}/_sandbox/settings") as response:
            settings = await response.json()
        assert {
            key: settings[key]
            for key in (
                "max_batch",
                "max_batch_status",
                "conflict_mode",
                "conflict_details",
                "max_value",
                "validation_status",
                "latency",
                "opaque_access_tokens",
                "id_tokens",
                "userinfo",
            )
        } == {
            "max_batch": 50,
            "max_batch_status": 400,
            "conflict_mode": "partial",
            "conflict_details": True,
            "max_value": 1e9,
            "validation_status": 422,
            "latency": 0.01,
            "opaque_access_tokens": True,
            "id_tokens": False,
            "userinfo": False,
        }
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            stdout, _ = await process.communicate()
    assert process.returncode == 0
    assert b"zevvy sandbox stopped" in stdout


async def test_cli_reports_a_bad_data_file(tmp_path: Path) -> None:
    """A data file that is not the sandbox's ends the CLI with a message."""
    data_file = tmp_path / "data.json"
    data_file.write_text("[1]", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zevvy_sandbox",
        "--port",
        "0",
        "--quiet",
        "--data-file",
        str(data_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    async with asyncio.timeout(10):
        _, stderr = await process.communicate()
    assert process.returncode == 1
    assert b"cannot read" in stderr
    assert data_file.read_text(encoding="utf-8") == "[1]"


async def test_cli_refuses_impossible_settings() -> None:
    """An impossible setting ends the CLI with a usage error before listening."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zevvy_sandbox",
        "--port",
        "0",
        "--validation-status",
        "200",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    async with asyncio.timeout(10):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"validation_status must be an HTTP error status" in stderr


async def test_fault_after_the_request_was_carried_out(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """`after`: the readings are stored, then the answer is a 504 or dropped."""
    token = sandbox.issue_tokens().access_token
    url = bulk_url(sandbox, "Car", "Energy")

    sandbox.inject_fault(status=504, after=True)
    status, _ = await bulk_create(session, url, token, READINGS[:1])
    assert status == 504
    assert [r.read_at for r in sandbox.readings()] == ["2026-11-26T14:00:00.000Z"]
    # Sent again: zevvy has it.
    status, _ = await bulk_create(session, url, token, READINGS[:1])
    assert status == 409

    sandbox.inject_fault(status=None, drop=True, after=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await bulk_create(session, url, token, READINGS[1:])
    assert len(sandbox.readings()) == 2

    # Through the admin API too.
    async with session.post(
        f"{sandbox.url}/_sandbox/faults", json={"status": 502, "after": True}
    ) as response:
        assert response.status == 200
    assert sandbox.faults[0].after
