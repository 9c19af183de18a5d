"""Tests of the HA-free zevvy API client, over real HTTP against the sandbox."""

from __future__ import annotations

import ast
import asyncio
import base64
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from freezegun.api import FrozenDateTimeFactory
import pytest

from custom_components.zevvy import api
from custom_components.zevvy.api import (
    SCOPES,
    SLOW_DOWN_INCREMENT,
    Account,
    DeviceAuthorization,
    Endpoints,
    Reading,
    TokenManager,
    Tokens,
    ZevvyAccessDenied,
    ZevvyAccountError,
    ZevvyAuth,
    ZevvyAuthenticationError,
    ZevvyAuthorizationPending,
    ZevvyClient,
    ZevvyConflictError,
    ZevvyConnectionError,
    ZevvyDeviceFlowError,
    ZevvyError,
    ZevvyExpiredToken,
    ZevvyInvalidClientError,
    ZevvyLoginRefusedError,
    ZevvyMeasurementsError,
    ZevvyRateLimitError,
    ZevvyRejectedError,
    ZevvyResponseError,
    ZevvySlowDown,
    account_from_access_token,
    check_reference,
    is_valid_reference,
)
from custom_components.zevvy.api._http import get_number, parse_retry_after
from custom_components.zevvy.api.const import MAX_MESSAGE_LENGTH
from zevvy_sandbox import IssuedTokens, ZevvySandbox

START = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def make_readings(count: int, first: int = 0) -> list[Reading]:
    """Return `count` quarter-hour readings starting at slot `first`."""
    return [
        Reading(START + timedelta(minutes=15 * slot), 1000.0 + slot)
        for slot in range(first, first + count)
    ]


def read_at(slot: int) -> str:
    """Return the readAt string zevvy stores for slot `slot`."""
    return (START + timedelta(minutes=15 * slot)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def token_statuses(sandbox: ZevvySandbox) -> list[int]:
    """Return the statuses of the token endpoint requests so far."""
    return [r.status for r in sandbox.requests if r.path.endswith("/token")]


def api_statuses(sandbox: ZevvySandbox) -> list[int]:
    """Return the statuses of the measurement API requests so far."""
    return [r.status for r in sandbox.requests if r.path.startswith("/api/")]


def keycloak_endpoints(issuer: str) -> Endpoints:
    """Return the Keycloak endpoints under an issuer."""
    return Endpoints(
        device_authorization_endpoint=f"{issuer}/protocol/openid-connect/auth/device",
        token_endpoint=f"{issuer}/protocol/openid-connect/token",
    )


@dataclass
class StubServer:
    """A tiny HTTP server answering queued responses, for odd server behaviour."""

    url: str = ""
    responses: list[web.Response] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def add(
        self,
        status: int,
        body: object = None,
        *,
        text: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Queue a response: JSON `body`, or raw `text`."""
        if text is None:
            text = "" if body is None else json.dumps(body)
            content_type = "application/json"
        else:
            content_type = "text/html"
        self.responses.append(
            web.Response(
                status=status, text=text, content_type=content_type, headers=headers
            )
        )


@pytest.fixture
async def stub(socket_enabled: None) -> AsyncGenerator[StubServer]:
    """Run a stub server on a free port of 127.0.0.1."""
    server = StubServer()

    async def handler(request: web.Request) -> web.Response:
        server.paths.append(request.path)
        if not server.responses:
            return web.Response(status=404)
        return server.responses.pop(0)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncGenerator[aiohttp.ClientSession]:
    """Return an aiohttp session, closed after the test."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def auth(sandbox: ZevvySandbox, session: aiohttp.ClientSession) -> ZevvyAuth:
    """Return a ZevvyAuth for the sandbox."""
    return ZevvyAuth(
        session,
        sandbox.config.client_id,
        sandbox.config.client_secret,
        sandbox.issuer,
    )


@pytest.fixture
def issued(sandbox: ZevvySandbox) -> IssuedTokens:
    """Return tokens of a login made without the device flow."""
    return sandbox.issue_tokens()


@pytest.fixture
def rotated() -> list[str]:
    """Collect the refresh tokens the token manager reports."""
    return []


@pytest.fixture
def token_manager(
    auth: ZevvyAuth, issued: IssuedTokens, rotated: list[str]
) -> TokenManager:
    """Return a token manager holding the issued refresh token."""

    async def persist(token: str) -> None:
        rotated.append(token)

    return TokenManager(auth, issued.refresh_token, persist)


@pytest.fixture
def client(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession, token_manager: TokenManager
) -> ZevvyClient:
    """Return a client for the sandbox API."""
    return ZevvyClient(session, token_manager, sandbox.api_url)


# --------------------------------------------------------------------- discovery


@pytest.mark.parametrize("suffix", ["", "/"])
async def test_discover(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession, suffix: str
) -> None:
    """Discovery finds the endpoints (trailing slash or not) and is cached."""
    auth = ZevvyAuth(session, "id", "secret", sandbox.issuer + suffix)
    assert repr(auth) == f"ZevvyAuth(issuer={sandbox.issuer!r}, client_id='id')"
    endpoints = await auth.discover()
    assert endpoints == replace(
        keycloak_endpoints(sandbox.issuer),
        userinfo_endpoint=f"{sandbox.issuer}/protocol/openid-connect/userinfo",
        issuer=sandbox.issuer,
    )
    assert await auth.discover() is endpoints
    assert [(r.path, r.status) for r in sandbox.requests] == [
        ("/realms/zevvy/.well-known/openid-configuration", 200)
    ]


async def test_discover_uses_announced_endpoints(
    sandbox: ZevvySandbox, auth: ZevvyAuth
) -> None:
    """Endpoints announced by discovery win over the Keycloak paths."""
    sandbox.inject_fault(
        status=200,
        target="discovery",
        body={
            "device_authorization_endpoint": "https://id.example/device",
            "token_endpoint": "https://id.example/token",
        },
    )
    assert await auth.discover() == Endpoints(
        "https://id.example/device", "https://id.example/token"
    )


async def test_discover_404_falls_back_to_keycloak_paths(
    sandbox: ZevvySandbox, auth: ZevvyAuth
) -> None:
    """Discovery answering 404 falls back to Keycloak's paths, which work."""
    sandbox.inject_fault(status=404, target="discovery")
    assert await auth.discover() == keycloak_endpoints(sandbox.issuer)
    authorization = await auth.request_device_authorization()
    assert sandbox.pending_user_codes() == [authorization.user_code]


async def test_discover_incomplete_document_falls_back(
    stub: StubServer, session: aiohttp.ClientSession
) -> None:
    """Endpoints missing from the discovery document use Keycloak's paths."""
    stub.add(200, {"issuer": "x", "token_endpoint": "https://id.example/token"})
    auth = ZevvyAuth(session, "id", "secret", f"{stub.url}/realms/r/")
    endpoints = await auth.discover()
    assert endpoints == Endpoints(
        keycloak_endpoints(f"{stub.url}/realms/r").device_authorization_endpoint,
        "https://id.example/token",
        issuer="x",
    )


async def test_discover_follows_redirect(
    stub: StubServer, session: aiohttp.ClientSession
) -> None:
    """Discovery follows a redirect (e.g. http to https)."""
    stub.add(301, headers={"Location": f"{stub.url}/moved"})
    stub.add(200, {"device_authorization_endpoint": "d", "token_endpoint": "t"})
    auth = ZevvyAuth(session, "id", "secret", stub.url)
    assert await auth.discover() == Endpoints("d", "t")
    assert stub.paths == ["/.well-known/openid-configuration", "/moved"]


@pytest.mark.parametrize(
    ("status", "body", "text"),
    [
        (500, None, "Internal Server Error"),
        (403, {"error": "forbidden"}, None),
        (200, ["not", "an", "object"], None),
        (200, None, "<html>a login page</html>"),
    ],
)
async def test_discover_failures(
    stub: StubServer,
    session: aiohttp.ClientSession,
    status: int,
    body: object,
    text: str | None,
) -> None:
    """Discovery failures other than 404 are connection errors."""
    stub.add(status, body, text=text)
    auth = ZevvyAuth(session, "id", "secret", stub.url)
    with pytest.raises(ZevvyConnectionError, match="discovery"):
        await auth.discover()


@pytest.mark.parametrize(
    "fault",
    # aiohttp retries a GET once after a dropped connection: drop both.
    [{"status": 503}, {"drop": True, "count": 2}, {"status": None, "delay": 0.5}],
    ids=["503", "drop", "timeout"],
)
async def test_discover_connection_errors(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession, fault: dict[str, object]
) -> None:
    """Server errors, dropped connections and timeouts are connection errors."""
    sandbox.inject_fault(target="discovery", **fault)  # type: ignore[arg-type]
    auth = ZevvyAuth(session, "id", "secret", sandbox.issuer, request_timeout=0.2)
    with pytest.raises(ZevvyConnectionError):
        await auth.discover()


async def test_unreachable_server(
    session: aiohttp.ClientSession, closed_port_url: str
) -> None:
    """A closed port is a connection error."""
    auth = ZevvyAuth(session, "id", "secret", closed_port_url)
    with pytest.raises(ZevvyConnectionError, match="ClientConnectorError"):
        await auth.discover()


# ------------------------------------------------------------------- device flow


async def test_device_flow_pending_then_success(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """Pending polls at the interval until approval, then stop at the success."""
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 3:
            sandbox.approve(authorization.user_code)
        await asyncio.sleep(delay)

    auth = ZevvyAuth(
        session,
        sandbox.config.client_id,
        sandbox.config.client_secret,
        sandbox.issuer,
        sleep=sleep,
    )
    authorization = await auth.request_device_authorization()
    assert authorization.user_code in sandbox.pending_user_codes()
    assert authorization.interval == 0.05
    assert authorization.expires_in == 600
    assert authorization.verification_uri == f"{sandbox.url}/device"
    assert authorization.verification_uri_complete == (
        f"{sandbox.url}/device?user_code={authorization.user_code}"
    )
    assert authorization.device_code not in repr(authorization)
    assert sandbox.device_codes()[0].scope == SCOPES

    tokens = await auth.wait_for_tokens(authorization)

    assert delays == [0.05, 0.05, 0.05]
    # Two pending polls, one success, nothing after it.
    assert token_statuses(sandbox) == [400, 400, 200]
    assert account_from_access_token(tokens.access_token) == Account(
        sub=sandbox.config.sub, username="demo", email="demo@example.ch"
    )
    assert tokens.expires_in == 300
    # The login is intact (a second poll would have revoked it).
    assert not any(grant.revoked for grant in sandbox.grants())
    assert (await auth.refresh(tokens.refresh_token)).refresh_token


async def test_poll_outcomes(sandbox: ZevvySandbox, auth: ZevvyAuth) -> None:
    """poll_token raises a typed outcome for each server answer."""
    authorization = await auth.request_device_authorization()
    (code,) = sandbox.device_codes()
    with pytest.raises(ZevvyAuthorizationPending):
        await auth.poll_token(authorization.device_code)
    code.interval = 60.0  # the next poll comes too early, whatever the load
    with pytest.raises(ZevvySlowDown):
        await auth.poll_token(authorization.device_code)
    code.interval = 0.0
    sandbox.approve(authorization.user_code)
    tokens = await auth.poll_token(authorization.device_code)
    assert tokens.access_token
    with pytest.raises(ZevvyDeviceFlowError) as err:
        await auth.poll_token(authorization.device_code)
    assert type(err.value) is ZevvyDeviceFlowError
    assert authorization.device_code not in str(err.value)
    # Polling a used code again revoked the login: why wait_for_tokens stops.
    assert all(grant.revoked for grant in sandbox.grants())


async def test_slow_down_adds_five_seconds(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """slow_down adds SLOW_DOWN_INCREMENT seconds to the polling interval."""
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        (code,) = sandbox.device_codes()
        if len(delays) == 1:
            code.interval = 60.0  # this poll comes too early: slow_down
        else:
            code.interval = 0.0
            sandbox.approve(authorization.user_code)

    auth = ZevvyAuth(
        session,
        sandbox.config.client_id,
        sandbox.config.client_secret,
        sandbox.issuer,
        sleep=sleep,
    )
    authorization = await auth.request_device_authorization()
    with pytest.raises(ZevvyAuthorizationPending):
        await auth.poll_token(authorization.device_code)
    tokens = await auth.wait_for_tokens(authorization)
    assert tokens.refresh_token
    assert SLOW_DOWN_INCREMENT == 5.0
    assert delays == [0.05, 0.05 + SLOW_DOWN_INCREMENT]
    assert token_statuses(sandbox) == [400, 400, 200]


async def test_device_flow_denied(sandbox: ZevvySandbox, auth: ZevvyAuth) -> None:
    """A refused login raises ZevvyAccessDenied."""
    authorization = await auth.request_device_authorization()
    sandbox.deny(authorization.user_code)
    with pytest.raises(ZevvyAccessDenied):
        await auth.wait_for_tokens(authorization)
    assert token_statuses(sandbox) == [400]


async def test_device_flow_expired_at_server(
    sandbox: ZevvySandbox, auth: ZevvyAuth
) -> None:
    """The server's expired_token raises ZevvyExpiredToken."""
    sandbox.config.code_lifetime = 0.08
    authorization = await auth.request_device_authorization()
    assert authorization.expires_in == 0.08
    await asyncio.sleep(0.1)
    with pytest.raises(ZevvyExpiredToken, match="Device code is expired"):
        await auth.poll_token(authorization.device_code)


async def test_device_flow_expires_locally(
    sandbox: ZevvySandbox,
    session: aiohttp.ClientSession,
    freezer: FrozenDateTimeFactory,
) -> None:
    """wait_for_tokens gives up once expires_in has passed.

    The clock is frozen and each wait moves it by exactly the interval, so a busy
    machine cannot change how many polls fit into expires_in.
    """

    async def sleep(delay: float) -> None:
        freezer.tick(timedelta(seconds=delay))

    auth = ZevvyAuth(
        session,
        sandbox.config.client_id,
        sandbox.config.client_secret,
        sandbox.issuer,
        sleep=sleep,
    )
    authorization = await auth.request_device_authorization()
    short = replace(authorization, expires_in=0.12)
    with pytest.raises(ZevvyExpiredToken, match="expired before the login"):
        await auth.wait_for_tokens(short)
    # Polls at 0.05, 0.10 and 0.15 s; the last one is past expires_in.
    assert token_statuses(sandbox) == [400, 400, 400]


@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [("zevvy-sandbox", "wrong-secret"), ("other-client", "sandbox-secret")],
)
async def test_invalid_client(
    sandbox: ZevvySandbox,
    session: aiohttp.ClientSession,
    issued: IssuedTokens,
    client_id: str,
    client_secret: str,
) -> None:
    """Rejected client credentials raise ZevvyInvalidClientError everywhere."""
    auth = ZevvyAuth(session, client_id, client_secret, sandbox.issuer)
    with pytest.raises(ZevvyInvalidClientError) as err:
        await auth.request_device_authorization()
    assert "wrong-secret" not in str(err.value)
    with pytest.raises(ZevvyInvalidClientError):
        await auth.poll_token("some-device-code")
    with pytest.raises(ZevvyInvalidClientError) as err:
        await auth.refresh(issued.refresh_token)
    assert isinstance(err.value, ZevvyAuthenticationError)
    assert issued.refresh_token not in str(err.value)
    assert "wrong-secret" not in repr(auth)


async def test_unauthorized_client(sandbox: ZevvySandbox, auth: ZevvyAuth) -> None:
    """A client not allowed to use the device flow counts as invalid client."""
    sandbox.inject_fault(
        status=400,
        target="device",
        body={
            "error": "unauthorized_client",
            "error_description": "Client is not allowed to initiate the device flow",
        },
    )
    with pytest.raises(ZevvyInvalidClientError, match="not allowed"):
        await auth.request_device_authorization()


async def test_wrong_realm(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """An issuer without OAuth endpoints is a connection error."""
    auth = ZevvyAuth(session, "id", "secret", f"{sandbox.url}/realms/nope")
    with pytest.raises(ZevvyConnectionError, match="issuer"):
        await auth.request_device_authorization()


async def test_device_authorization_defaults(
    stub: StubServer, session: aiohttp.ClientSession
) -> None:
    """Missing or unusable optional fields get RFC 8628 defaults."""
    auth = ZevvyAuth(session, "id", "secret", stub.url)
    stub.add(404)  # discovery
    stub.add(
        200,
        {
            "device_code": "dc",
            "user_code": "ABCD-EFGH",
            "verification_uri": "https://id.example/device",
            "interval": "inf",
            "expires_in": True,
        },
    )
    authorization = await auth.request_device_authorization()
    assert authorization == DeviceAuthorization(
        device_code="dc",
        user_code="ABCD-EFGH",
        verification_uri="https://id.example/device",
        verification_uri_complete="https://id.example/device",
        expires_in=600.0,
        interval=5.0,
    )
    stub.add(
        200,
        {
            "device_code": "dc",
            "user_code": "ABCD-EFGH",
            "verification_uri": "https://id.example/device",
            "interval": "2",
            "expires_in": "x",
        },
    )
    authorization = await auth.request_device_authorization()
    assert (authorization.interval, authorization.expires_in) == (2.0, 600.0)
    stub.add(200, {"device_code": "dc", "verification_uri": "https://x"})
    with pytest.raises(ZevvyResponseError, match="Incomplete"):
        await auth.request_device_authorization()
    stub.add(400, {"error": "invalid_scope", "error_description": "Bad scope"})
    with pytest.raises(ZevvyResponseError, match="Bad scope") as err:
        await auth.request_device_authorization()
    assert err.value.status == 400
    assert stub.paths[1:] == ["/protocol/openid-connect/auth/device"] * 4


async def test_poll_unknown_error(sandbox: ZevvySandbox, auth: ZevvyAuth) -> None:
    """An unexpected OAuth error is a response error."""
    sandbox.inject_fault(
        status=400,
        target="token",
        body={"error": "invalid_request", "error_description": "Missing thing"},
    )
    with pytest.raises(ZevvyResponseError, match="Missing thing") as err:
        await auth.poll_token("device-code")
    assert err.value.status == 400
    assert err.value.message == "Missing thing"


# ----------------------------------------------------------------------- refresh


async def test_refresh_rotates(
    sandbox: ZevvySandbox, auth: ZevvyAuth, issued: IssuedTokens
) -> None:
    """Refresh returns the rotated refresh token; the old one is dead."""
    tokens = await auth.refresh(issued.refresh_token)
    assert tokens.refresh_token != issued.refresh_token
    assert tokens.expires_in == 300
    assert account_from_access_token(tokens.access_token).sub == sandbox.config.sub
    assert tokens.access_token not in repr(tokens)
    assert tokens.refresh_token not in repr(tokens)
    with pytest.raises(ZevvyAuthenticationError, match="log in again") as err:
        await auth.refresh(issued.refresh_token)
    assert type(err.value) is ZevvyAuthenticationError
    assert issued.refresh_token not in str(err.value)


async def test_refresh_without_rotation_keeps_token(
    sandbox: ZevvySandbox, auth: ZevvyAuth, issued: IssuedTokens
) -> None:
    """A token response without a refresh token keeps the old one.

    A lifetime of 0 would mean refreshing on every call: Keycloak's default is used.
    """
    sandbox.inject_fault(
        status=200,
        target="token",
        body={"access_token": issued.access_token, "expires_in": 0},
    )
    tokens = await auth.refresh(issued.refresh_token)
    assert tokens == Tokens(issued.access_token, issued.refresh_token, 300.0)


async def test_refresh_response_without_access_token(
    sandbox: ZevvySandbox, auth: ZevvyAuth, issued: IssuedTokens
) -> None:
    """A token response without an access token is a response error."""
    sandbox.inject_fault(status=200, target="token", body={"token_type": "Bearer"})
    with pytest.raises(ZevvyResponseError, match="lacks"):
        await auth.refresh(issued.refresh_token)


async def test_refresh_error_message_is_redacted(
    sandbox: ZevvySandbox, auth: ZevvyAuth, issued: IssuedTokens
) -> None:
    """Secrets echoed by the server are removed from exception messages."""
    secret = sandbox.config.client_secret
    sandbox.inject_fault(
        status=400,
        target="token",
        body={
            "error": "invalid_request",
            "error_description": f"bad {issued.refresh_token} for {secret}",
        },
    )
    with pytest.raises(ZevvyResponseError) as err:
        await auth.refresh(issued.refresh_token)
    assert err.value.message == "bad **REDACTED** for **REDACTED**"
    assert issued.refresh_token not in str(err.value)
    assert secret not in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("Bad\n  gateway  text", "Bad gateway text"), ("", "HTTP 400")],
)
async def test_error_without_json(
    stub: StubServer, session: aiohttp.ClientSession, text: str, message: str
) -> None:
    """Error bodies that are not JSON still give a message."""
    stub.add(404)
    stub.add(400, text=text)
    auth = ZevvyAuth(session, "id", "secret", stub.url)
    with pytest.raises(ZevvyResponseError) as err:
        await auth.refresh("refresh")
    assert err.value.message == message


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"status": 503}, ZevvyConnectionError),
        ({"status": 429, "retry_after": 3}, ZevvyRateLimitError),
        ({"drop": True}, ZevvyConnectionError),
    ],
)
async def test_refresh_transient_errors(
    sandbox: ZevvySandbox,
    auth: ZevvyAuth,
    issued: IssuedTokens,
    fault: dict[str, object],
    error: type[ZevvyError],
) -> None:
    """Transient token endpoint failures are connection errors."""
    sandbox.inject_fault(target="token", **fault)  # type: ignore[arg-type]
    with pytest.raises(error) as err:
        await auth.refresh(issued.refresh_token)
    assert isinstance(err.value, ZevvyConnectionError)
    # The token was not used up: it still works.
    assert await auth.refresh(issued.refresh_token)


# ----------------------------------------------------------------- token manager


async def test_token_manager_concurrent_callers_share_one_refresh(
    sandbox: ZevvySandbox, auth: ZevvyAuth, issued: IssuedTokens
) -> None:
    """Ten concurrent callers cause exactly one refresh; rotation is reported."""
    events: list[tuple[str, str]] = []

    async def persist(token: str) -> None:
        # Writing takes a while: the new access token waits for it.
        await asyncio.sleep(0.01)
        events.append(("persist", token))

    manager = TokenManager(auth, issued.refresh_token, persist)
    results = await asyncio.gather(
        *(manager.async_get_access_token() for _ in range(10))
    )
    events.append(("use", results[0]))
    assert len(set(results)) == 1
    assert token_statuses(sandbox) == [200]
    assert manager.refresh_token != issued.refresh_token
    assert events == [("persist", manager.refresh_token), ("use", results[0])]
    account = manager.account
    assert account == Account(sandbox.config.sub, "demo", "demo@example.ch")
    assert account.title == "demo"
    # Still valid: no further refresh.
    assert await manager.async_get_access_token() == results[0]
    assert token_statuses(sandbox) == [200]
    assert issued.refresh_token not in repr(manager)
    assert manager.refresh_token not in repr(manager)


async def test_token_manager_refreshes_before_expiry(
    sandbox: ZevvySandbox, token_manager: TokenManager, rotated: list[str]
) -> None:
    """The access token is renewed shortly before it expires."""
    sandbox.config.access_token_lifetime = 0.4
    first = await token_manager.async_get_access_token()
    # Margin: min(TOKEN_REFRESH_MARGIN, lifetime / 2) = 0.2 s.
    assert await token_manager.async_get_access_token() == first
    await asyncio.sleep(0.25)
    second = await token_manager.async_get_access_token()
    assert second != first
    assert token_statuses(sandbox) == [200, 200]
    assert len(rotated) == 2
    assert rotated[0] != rotated[1] == token_manager.refresh_token


async def test_token_manager_without_callback(
    sandbox: ZevvySandbox, auth: ZevvyAuth, issued: IssuedTokens
) -> None:
    """Rotation works without a callback; force refresh renews."""
    manager = TokenManager(auth, issued.refresh_token, refresh_margin=0)
    first = await manager.async_get_access_token()
    second = await manager.async_force_refresh()
    assert first != second
    # A rejected token that was already replaced causes no refresh.
    assert await manager.async_force_refresh(first) == second
    assert token_statuses(sandbox) == [200, 200]
    assert await manager.async_force_refresh(second) != second
    assert token_statuses(sandbox) == [200, 200, 200]


async def test_token_manager_concurrent_force_refresh(
    sandbox: ZevvySandbox, token_manager: TokenManager
) -> None:
    """Concurrent forced refreshes share one refresh."""
    await token_manager.async_get_access_token()
    results = await asyncio.gather(
        *(token_manager.async_force_refresh() for _ in range(5))
    )
    assert len(set(results)) == 1
    assert token_statuses(sandbox) == [200, 200]


async def test_token_manager_invalid_grant_is_final(
    sandbox: ZevvySandbox, token_manager: TokenManager
) -> None:
    """After invalid_grant the refresh token is never presented again."""
    sandbox.revoke_refresh_tokens()
    results = await asyncio.gather(
        *(token_manager.async_get_access_token() for _ in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, ZevvyAuthenticationError) for r in results)
    with pytest.raises(ZevvyAuthenticationError):
        await token_manager.async_force_refresh()
    assert token_statuses(sandbox) == [400]


async def test_token_manager_shares_connection_errors(
    sandbox: ZevvySandbox, token_manager: TokenManager
) -> None:
    """Callers waiting for a failing refresh get its error; the next call retries."""
    sandbox.inject_fault(status=503, target="token")
    results = await asyncio.gather(
        *(token_manager.async_get_access_token() for _ in range(4)),
        return_exceptions=True,
    )
    assert all(type(r) is ZevvyConnectionError for r in results)
    assert token_statuses(sandbox) == [503]
    assert await token_manager.async_get_access_token()
    assert token_statuses(sandbox) == [503, 200]


async def test_token_manager_unreadable_access_token(
    sandbox: ZevvySandbox, token_manager: TokenManager, issued: IssuedTokens
) -> None:
    """An access token that is not a JWT leaves the account unknown."""
    sandbox.inject_fault(
        status=200,
        target="token",
        body={"access_token": "opaque", "refresh_token": "new", "expires_in": 60},
    )
    assert await token_manager.async_get_access_token() == "opaque"
    assert token_manager.account is None
    assert token_manager.refresh_token == "new"


async def test_token_manager_waits_for_a_failed_save(
    sandbox: ZevvySandbox, auth: ZevvyAuth, issued: IssuedTokens
) -> None:
    """A new refresh token that could not be saved: its access token is not used."""
    saved: list[str] = []

    async def persist(token: str) -> None:
        if not saved:
            saved.append("failed")
            raise OSError("disk full")
        saved.append(token)

    manager = TokenManager(auth, issued.refresh_token, persist)
    with pytest.raises(OSError, match="disk full"):
        await manager.async_get_access_token()
    # The next caller refreshes with the new (unsaved) token and saves that.
    assert await manager.async_get_access_token()
    assert saved == ["failed", manager.refresh_token]
    assert not any(grant.revoked for grant in sandbox.grants())


# ----------------------------------------------------------------------- account


@pytest.mark.parametrize(
    ("settings", "sources"),
    [
        ({}, []),
        ({"opaque_access_tokens": True}, []),
        ({"opaque_access_tokens": True, "id_tokens": False}, ["userinfo"]),
    ],
    ids=["jwt", "opaque_with_id_token", "opaque_with_userinfo"],
)
async def test_account_of_a_login(
    sandbox: ZevvySandbox,
    auth: ZevvyAuth,
    settings: dict[str, Any],
    sources: list[str],
) -> None:
    """The account comes from the access token, the ID token or userinfo."""
    sandbox.configure(**settings)
    issued = sandbox.issue_tokens(scope=SCOPES)
    tokens = await auth.refresh(issued.refresh_token)
    sandbox.clear_requests()
    account = await auth.async_account(tokens)
    assert account == Account(sandbox.config.sub, "demo", "demo@example.ch")
    assert [request.path.rsplit("/", 1)[1] for request in sandbox.requests] == sources


async def test_account_id_token_for_another_client_is_ignored(
    sandbox: ZevvySandbox, auth: ZevvyAuth
) -> None:
    """An ID token for another audience or issuer names no account."""
    sandbox.configure(opaque_access_tokens=True)
    tokens = await auth.refresh(sandbox.issue_tokens(scope=SCOPES).refresh_token)
    assert auth.account_from_tokens(tokens) is not None
    other_client = sandbox.issue_tokens(scope=SCOPES, client_id="someone-else")
    assert other_client.id_token is not None
    other_issuer = sandbox.issue_tokens(scope=SCOPES)
    assert other_issuer.id_token is not None
    header, payload, signature = other_issuer.id_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["iss"] = "https://evil.example/realms/zevvy"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode()
    for id_token in (other_client.id_token, f"{header}.{forged}.{signature}"):
        assert auth.account_from_tokens(replace(tokens, id_token=id_token)) is None


async def test_account_unknown(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> None:
    """Opaque tokens, no ID token, no userinfo (or no openid): no account."""

    def new_auth() -> ZevvyAuth:
        # Discovery is cached: a new ZevvyAuth sees changed sandbox settings.
        return ZevvyAuth(
            session,
            sandbox.config.client_id,
            sandbox.config.client_secret,
            sandbox.issuer,
        )

    sandbox.configure(opaque_access_tokens=True, id_tokens=False)
    auth = new_auth()
    without_openid = await auth.refresh(sandbox.issue_tokens().refresh_token)
    with pytest.raises(ZevvyAccountError):
        await auth.async_account(without_openid)  # userinfo: 403
    sandbox.configure(userinfo=False)
    auth = new_auth()
    tokens = await auth.refresh(sandbox.issue_tokens(scope=SCOPES).refresh_token)
    with pytest.raises(ZevvyAccountError):
        await auth.async_account(tokens)
    # userinfo down: a connection error, not "no account".
    sandbox.configure(userinfo=True)
    auth = new_auth()
    sandbox.inject_fault(status=503, target="userinfo")
    with pytest.raises(ZevvyConnectionError):
        await auth.async_account(tokens)


# ------------------------------------------------------------------ access token


def _jwt(payload: str) -> str:
    return f"eyJhbGciOiJub25lIn0.{payload}.sig"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "opaque",
        "a..b",
        _jwt("!!!!"),
        _jwt("bm90IGpzb24"),  # "not json"
        _jwt("WzEsMl0"),  # [1,2]
        _jwt("eyJlbWFpbCI6ImFAYi5jIn0"),  # {"email":"a@b.c"}
        _jwt("eyJzdWIiOjF9"),  # {"sub":1}
        _jwt("_w"),  # invalid UTF-8
    ],
)
def test_account_from_malformed_token(token: str) -> None:
    """Malformed access tokens raise ZevvyError."""
    with pytest.raises(ZevvyError):
        account_from_access_token(token)


def test_account_from_token_and_title() -> None:
    """Claims are read with and without padding; the title falls back."""
    # {"sub":"s1","preferred_username":"anna"} has a payload needing padding.
    payload = "eyJzdWIiOiJzMSIsInByZWZlcnJlZF91c2VybmFtZSI6ImFubmEifQ"
    assert len(payload) % 4
    account = account_from_access_token(_jwt(payload))
    assert account == Account("s1", "anna", None)
    assert account.title == "anna"
    assert Account("s1", None, "a@b.c").title == "a@b.c"
    assert Account("s1", None, None).title == "s1"


# ------------------------------------------------------------------- bulk create


@pytest.mark.parametrize(
    ("device_ref", "register_ref"),
    [
        ("zevvy Test Device Example Charging Station", "Energy import"),
        ("Wohnung 3. OG Zähler", "Bezug Ü"),
        ("100% #1 ?query&x=y", "a+b;c=d,e"),
        ("Ladestation 🚗⚡", "%2F encoded-looking %41"),
    ],
)
async def test_bulk_create_odd_names(
    sandbox: ZevvySandbox, client: ZevvyClient, device_ref: str, register_ref: str
) -> None:
    """References with odd characters arrive exactly as given."""
    await client.bulk_create(device_ref, register_ref, make_readings(2))
    assert api_statuses(sandbox) == [201]
    stored = sandbox.readings(device_ref, register_ref)
    assert [(r.read_at, r.value) for r in stored] == [
        (read_at(0), 1000.0),
        (read_at(1), 1001.0),
    ]
    assert sandbox.devices() == {device_ref: [register_ref]}


async def test_bulk_create_url_escaping(
    client: ZevvyClient, sandbox: ZevvySandbox
) -> None:
    """The URL carries the references as single escaped path segments."""
    url = client.bulk_create_url("a %#?ü😀", "r")
    assert url.raw_path == (
        "/api/deviceRef/a%20%25%23%3F%C3%BC%F0%9F%98%80/registerRef/r"
        "/measurements/_bulk_create"
    )
    assert str(url).startswith(sandbox.api_url)
    assert repr(client) == f"ZevvyClient(api_url={sandbox.api_url!r})"


async def test_bulk_create_api_url_with_trailing_slash(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession, token_manager: TokenManager
) -> None:
    """A trailing slash on the API URL does no harm."""
    client = ZevvyClient(session, token_manager, sandbox.api_url + "/")
    await client.bulk_create("d", "r", make_readings(1))
    assert api_statuses(sandbox) == [201]
    assert sandbox.requests[-1].path == (
        "/api/deviceRef/d/registerRef/r/measurements/_bulk_create"
    )


async def test_bulk_create_payload(sandbox: ZevvySandbox, client: ZevvyClient) -> None:
    """readAt is UTC with milliseconds; values are rounded to Wh."""
    zurich = ZoneInfo("Europe/Zurich")
    readings = [
        Reading(datetime(2026, 11, 26, 15, 15, 0, 123456, tzinfo=zurich), 12.3456789),
        Reading(datetime(2026, 7, 1, 2, 0, tzinfo=zurich), 7),
    ]
    await client.bulk_create("d", "r", readings)
    assert [(r.read_at, r.value) for r in sandbox.readings()] == [
        ("2026-11-26T14:15:00.123Z", 12.346),
        ("2026-07-01T00:00:00.000Z", 7.0),
    ]


async def test_bulk_create_one_request(
    sandbox: ZevvySandbox, client: ZevvyClient
) -> None:
    """The readings given go out in one request, in order.

    Splitting by MAX_BATCH is the sender's job (test_delivery), which confirms
    each request on its own.
    """
    await client.bulk_create("d", "r", make_readings(7))
    assert api_statuses(sandbox) == [201]
    assert [r.read_at for r in sandbox.readings()] == [read_at(i) for i in range(7)]


async def test_bulk_create_nothing(sandbox: ZevvySandbox, client: ZevvyClient) -> None:
    """No readings: no request."""
    await client.bulk_create("d", "r", [])
    assert sandbox.requests == []


@pytest.mark.parametrize("details", [False, True])
async def test_bulk_create_all_present(
    sandbox: ZevvySandbox, client: ZevvyClient, details: bool
) -> None:
    """Readings zevvy has: one request, a conflict naming them if zevvy does."""
    sandbox.configure(conflict_details=details)
    await client.bulk_create("d", "r", make_readings(4))
    sandbox.clear_requests()
    with pytest.raises(ZevvyConflictError, match="already exist") as err:
        await client.bulk_create("d", "r", make_readings(4))
    assert api_statuses(sandbox) == [409]
    assert err.value.status == 409
    if details:
        assert err.value.conflicts == tuple(r.read_at for r in make_readings(4))
    else:
        assert err.value.conflicts is None
    assert len(sandbox.readings()) == 4


async def test_bulk_create_partly_present(
    sandbox: ZevvySandbox, client: ZevvyClient
) -> None:
    """A server that stores the new readings still answers 409 (partial)."""
    sandbox.configure(conflict_mode="partial", conflict_details=True)
    await client.bulk_create("d", "r", [make_readings(1, 1)[0]])
    with pytest.raises(ZevvyConflictError) as err:
        await client.bulk_create("d", "r", make_readings(3))
    assert err.value.conflicts == (make_readings(1, 1)[0].read_at,)
    assert sorted(r.read_at for r in sandbox.readings()) == [
        read_at(i) for i in range(3)
    ]


async def test_bulk_create_conflict_bodies(
    stub: StubServer, session: aiohttp.ClientSession
) -> None:
    """Only aware readAt strings of a conflicts list count; anything else is no list."""
    stub.add(404)  # discovery
    stub.add(
        200, {"access_token": "opaque-access", "refresh_token": "b", "expires_in": 300}
    )
    stub.add(
        409,
        {"conflicts": ["2026-11-26T14:00:00.000Z", 5, "soon", "2026-11-26T14:15"]},
    )
    stub.add(409, {"conflicts": "2026-11-26T14:00:00.000Z"})
    stub.add(409, text="Conflict")
    auth = ZevvyAuth(session, "id", "secret", stub.url)
    client = ZevvyClient(session, TokenManager(auth, "refresh"), stub.url)
    found = []
    for _ in range(3):
        with pytest.raises(ZevvyConflictError) as err:
            await client.bulk_create("d", "r", make_readings(1))
        found.append(err.value.conflicts)
    assert found == [(datetime(2026, 11, 26, 14, 0, tzinfo=UTC),), None, None]


async def test_bulk_create_refreshes_after_401(
    sandbox: ZevvySandbox, client: ZevvyClient, rotated: list[str]
) -> None:
    """A rejected access token is refreshed once and the batch resent."""
    await client.bulk_create("d", "r", make_readings(1))
    sandbox.expire_access_tokens()
    sandbox.clear_requests()
    await client.bulk_create("d", "r", make_readings(1, 1))
    assert [(r.path.rsplit("/", 1)[-1], r.status) for r in sandbox.requests] == [
        ("_bulk_create", 401),
        ("token", 200),
        ("_bulk_create", 201),
    ]
    assert len(rotated) == 2


async def test_bulk_create_concurrent_401_refresh_once(
    sandbox: ZevvySandbox, client: ZevvyClient
) -> None:
    """Concurrent uploads rejected with 401 share one refresh."""
    await client.bulk_create("d", "r0", make_readings(1))
    sandbox.expire_access_tokens()
    sandbox.clear_requests()
    await asyncio.gather(
        *(client.bulk_create("d", f"r{i}", make_readings(1)) for i in range(1, 5))
    )
    assert len(sandbox.readings()) == 5
    assert token_statuses(sandbox) == [200]
    assert sorted(api_statuses(sandbox)) == [201] * 4 + [401] * 4


async def test_bulk_create_401_twice(
    sandbox: ZevvySandbox, client: ZevvyClient, issued: IssuedTokens
) -> None:
    """A second 401 right after a refresh: the API refuses a working login.

    Not an authentication error (that would start a new login): the token
    endpoint renewed the login a moment ago.
    """
    sandbox.inject_fault(status=401, count=2)
    with pytest.raises(ZevvyLoginRefusedError) as err:
        await client.bulk_create("d", "r", make_readings(1))
    assert not isinstance(err.value, ZevvyAuthenticationError)
    assert err.value.status == 401
    assert issued.access_token not in str(err.value)
    assert api_statuses(sandbox) == [401, 401]
    assert token_statuses(sandbox) == [200, 200]


async def test_bulk_create_403(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession, auth: ZevvyAuth
) -> None:
    """A token without the measurement scope gets 403: a response error."""
    issued = sandbox.issue_tokens(scope="offline_access device")
    client = ZevvyClient(
        session, TokenManager(auth, issued.refresh_token), sandbox.api_url
    )
    with pytest.raises(ZevvyMeasurementsError, match="measurement") as err:
        await client.bulk_create("d", "r", make_readings(1))
    assert type(err.value) is ZevvyMeasurementsError
    assert err.value.status == 403


async def test_bulk_create_rejected(sandbox: ZevvySandbox, client: ZevvyClient) -> None:
    """400 carries the server's message."""
    with pytest.raises(ZevvyRejectedError, match="non-negative") as err:
        await client.bulk_create("d", "r", [Reading(START, -1.0)])
    assert err.value.status == 400
    assert "value must be a non-negative number" in err.value.message


async def test_bulk_create_422_long_message(
    sandbox: ZevvySandbox, client: ZevvyClient
) -> None:
    """422 is a rejection too; long messages are cut."""
    sandbox.inject_fault(status=422, body={"message": "x" * 5000})
    with pytest.raises(ZevvyRejectedError) as err:
        await client.bulk_create("d", "r", make_readings(1))
    assert err.value.status == 422
    assert len(err.value.message) == MAX_MESSAGE_LENGTH
    assert err.value.message.endswith("…")


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, ZevvyMeasurementsError), (413, ZevvyMeasurementsError), (302, None)],
)
async def test_bulk_create_unexpected_status(
    sandbox: ZevvySandbox,
    client: ZevvyClient,
    status: int,
    error: type[ZevvyResponseError] | None,
) -> None:
    """Other 4xx are about the request or register; anything else a response error."""
    sandbox.inject_fault(status=status, body={"detail": "No such route"})
    with pytest.raises(ZevvyResponseError, match="No such route") as err:
        await client.bulk_create("d", "r", make_readings(1))
    assert type(err.value) is (error or ZevvyResponseError)
    assert err.value.status == status


@pytest.mark.parametrize(("retry_after", "expected"), [(7, 7.0), (None, None)])
async def test_bulk_create_rate_limited(
    sandbox: ZevvySandbox,
    client: ZevvyClient,
    retry_after: float | None,
    expected: float | None,
) -> None:
    """429 raises ZevvyRateLimitError with the Retry-After delay."""
    sandbox.inject_fault(status=429, retry_after=retry_after)
    with pytest.raises(ZevvyRateLimitError) as err:
        await client.bulk_create("d", "r", make_readings(1))
    assert err.value.retry_after == expected
    assert isinstance(err.value, ZevvyConnectionError)


async def test_bulk_create_rate_limited_http_date(
    stub: StubServer, session: aiohttp.ClientSession, freezer: FrozenDateTimeFactory
) -> None:
    """Retry-After as an HTTP date is turned into seconds."""
    freezer.move_to(START)
    when = START + timedelta(seconds=120)
    stub.add(404)  # discovery
    stub.add(
        200, {"access_token": "opaque-access", "refresh_token": "b", "expires_in": 300}
    )
    stub.add(
        429,
        text="Too many",
        headers={"Retry-After": format_datetime(when, usegmt=True)},
    )
    auth = ZevvyAuth(session, "id", "secret", stub.url)
    client = ZevvyClient(session, TokenManager(auth, "refresh"), stub.url)
    with pytest.raises(ZevvyRateLimitError, match="Too many") as err:
        await client.bulk_create("d", "r", make_readings(1))
    assert err.value.retry_after == 120


async def test_bulk_create_success_bodies(
    stub: StubServer, session: aiohttp.ClientSession
) -> None:
    """Any 2xx answer means zevvy has the readings, whatever its body says."""
    stub.add(404)  # discovery
    stub.add(
        200, {"access_token": "opaque-access", "refresh_token": "b", "expires_in": 300}
    )
    stub.add(201, {"created": 1})
    stub.add(201)
    stub.add(200, {"created": 7})
    stub.add(201, {"created": [2]})
    auth = ZevvyAuth(session, "id", "secret", stub.url)
    client = ZevvyClient(session, TokenManager(auth, "refresh"), stub.url)
    for _ in range(4):
        await client.bulk_create("d", "r", make_readings(3))
    assert stub.paths.count("/deviceRef/d/registerRef/r/measurements/_bulk_create") == 4
    assert stub.responses == []


@pytest.mark.parametrize(
    "fault",
    [{"status": 500}, {"status": 503, "retry_after": 5}, {"drop": True}],
    ids=["500", "503", "drop"],
)
async def test_bulk_create_transient_errors(
    sandbox: ZevvySandbox, client: ZevvyClient, fault: dict[str, object]
) -> None:
    """5xx and dropped connections are connection errors, not rate limits."""
    sandbox.inject_fault(**fault)  # type: ignore[arg-type]
    with pytest.raises(ZevvyConnectionError) as err:
        await client.bulk_create("d", "r", make_readings(1))
    assert type(err.value) is ZevvyConnectionError
    assert sandbox.readings() == []


async def test_bulk_create_timeout(
    sandbox: ZevvySandbox, session: aiohttp.ClientSession, token_manager: TokenManager
) -> None:
    """A slow API is a connection error after request_timeout."""
    client = ZevvyClient(session, token_manager, sandbox.api_url, request_timeout=0.1)
    sandbox.inject_fault(status=None, delay=0.5)
    with pytest.raises(ZevvyConnectionError, match="Timeout"):
        await client.bulk_create("d", "r", make_readings(1))


@pytest.mark.parametrize(
    ("device_ref", "register_ref"),
    [("a/b", "r"), ("d", "x/y"), ("", "r"), ("d", "  "), (".", "r"), ("d", "..")],
)
async def test_bulk_create_bad_refs(
    sandbox: ZevvySandbox, client: ZevvyClient, device_ref: str, register_ref: str
) -> None:
    """Empty references, slashes and dot segments are refused before sending."""
    with pytest.raises(ValueError, match="ref must not"):
        await client.bulk_create(device_ref, register_ref, make_readings(1))
    assert sandbox.requests == []


@pytest.mark.parametrize(
    ("reference", "error"),
    [
        ("", "reference must not be empty"),
        (" \t", "reference must not be empty"),
        ("a/b", "reference must not contain '/'"),
        (".", "reference must not be '.' or '..'"),
        ("..", "reference must not be '.' or '..'"),
        ("...", None),
        (" . ", None),
        ("100% #1 ?x&y;z", None),
        ("Zähler 🔌", None),
    ],
)
def test_reference_rule(reference: str, error: str | None) -> None:
    """One rule says which references reach zevvy intact as a URL path segment."""
    assert is_valid_reference(reference) is (error is None)
    if error is None:
        assert check_reference(reference) == reference
    else:
        with pytest.raises(ValueError, match=f"^{error}$"):
            check_reference(reference)


@pytest.mark.parametrize(
    "reading",
    [
        Reading(datetime(2026, 11, 26, 12, 0), 1.0),  # noqa: DTZ001
        Reading(START, float("nan")),
        Reading(START, float("inf")),
    ],
)
async def test_bulk_create_bad_readings(
    sandbox: ZevvySandbox, client: ZevvyClient, reading: Reading
) -> None:
    """Naive times and non-finite values are refused before sending."""
    with pytest.raises(ValueError, match="must be"):
        await client.bulk_create("d", "r", [reading])
    assert sandbox.requests == []


# --------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("7", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("inf", None),
        ("soon", None),
        ("Wed, 26 Nov 2025 14:15:00 GMT", 0.0),
        ("Wed, 26 Nov 2025 14:15:00 -0000", 0.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    """Retry-After is seconds or an HTTP date; unusable values are None."""
    assert parse_retry_after(header) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"n": 300}, 300.0),
        ({"n": "1.5"}, 1.5),
        ({"n": "soon"}, None),
        ({"n": "nan"}, None),
        ({"n": True}, None),
        ({"n": [300]}, None),
        ({}, None),
        ([300], None),
        (None, None),
    ],
)
def test_get_number(data: object, expected: float | None) -> None:
    """JSON numbers and numeric strings count; anything else is no number."""
    assert get_number(data, "n") == expected


def test_package_stands_alone() -> None:
    """The client imports neither Home Assistant nor the integration around it."""
    for path in Path(api.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{path.name} imports from outside api/"
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert not module.startswith(("homeassistant", "custom_components")), (
                    f"{path.name} imports {module}"
                )


async def test_reprs_hide_secrets(session: aiohttp.ClientSession) -> None:
    """Dataclass and client reprs never show secrets."""
    authorization = DeviceAuthorization("DEVICE-CODE", "ABCD", "u", "u", 600, 5)
    tokens = Tokens("ACCESS", "REFRESH", 300)
    auth = ZevvyAuth(session, "id", "SECRET")
    manager = TokenManager(auth, "REFRESH")
    client = ZevvyClient(session, manager)
    text = " ".join(repr(x) for x in (authorization, tokens, auth, manager, client))
    for secret in ("DEVICE-CODE", "ACCESS", "REFRESH", "SECRET"):
        assert secret not in text
    assert "https://api.zevvy.org" in repr(client)
    assert "iam.zevvy.org" in repr(auth)


async def test_token_manager_without_rotation(
    sandbox: ZevvySandbox,
    token_manager: TokenManager,
    issued: IssuedTokens,
    rotated: list[str],
) -> None:
    """A server that does not rotate: the refresh token stays, nothing reported."""
    sandbox.inject_fault(
        status=200,
        target="token",
        body={"access_token": issued.access_token, "expires_in": 300},
    )
    assert await token_manager.async_get_access_token() == issued.access_token
    assert token_manager.refresh_token == issued.refresh_token
    assert rotated == []
    assert token_manager.account is not None
