"""The zevvy sandbox: identity server, measurement API, pages and admin API."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
import json
import logging
import math
from pathlib import Path
import re
import secrets
import time
from typing import Any, Final, Literal
from urllib.parse import unquote_plus
import uuid

from aiohttp import web

from . import pages
from .models import (
    FAULT_TARGETS,
    KNOWN_SCOPES,
    Fault,
    FaultTarget,
    IssuedTokens,
    RequestRecord,
    SandboxConfig,
    StoredReading,
)
from .persistence import DataFile
from .tokens import (
    decode_jwt,
    encode_jwt,
    new_secret_token,
    new_user_code,
    normalize_user_code,
)

_LOGGER = logging.getLogger(__package__)

DEVICE_CODE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_TOKEN_GRANT: Final = "refresh_token"
FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
READ_AT_PATTERN: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# Namespace for account ids derived from a username typed on the device page.
ACCOUNT_NAMESPACE: Final = uuid.UUID("5b0d8a8e-3c55-4f0e-a2f7-6a1d4e2b9c10")
# Refresh tokens without offline_access expire after this many seconds (Keycloak's
# SSO session idle default); 0 in the token response means "offline, no expiry".
ONLINE_REFRESH_LIFETIME: Final = 1800

# Requests remembered for `requests` (a long-running dev sandbox forgets the
# older half when it has more).
MAX_RECORDED_REQUESTS: Final = 100_000
# Access tokens remembered; beyond this, dead ones are forgotten.
MAX_ACCESS_TOKENS: Final = 10_000
# Fault targets of the identity server's endpoints, by the end of their path.
IDENTITY_TARGETS: Final = (
    ("/.well-known/openid-configuration", "discovery"),
    ("/protocol/openid-connect/token", "token"),
    ("/protocol/openid-connect/auth/device", "device"),
    ("/protocol/openid-connect/userinfo", "userinfo"),
)
# Key of the short reason stored on error responses for the request log.
DETAIL_KEY: Final = "zevvy_sandbox_detail"

type Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
type CodeState = Literal["pending", "approved", "denied", "used"]


class SandboxError(Exception):
    """A Python API call the sandbox cannot carry out (unknown code, ...)."""


class _OAuthError(Exception):
    """An OAuth error answer: {"error": ..., "error_description": ...}."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> web.Response:
        headers = {"Cache-Control": "no-store"}
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="zevvy sandbox"'
        response = web.json_response(
            {"error": self.error, "error_description": self.description},
            status=self.status,
            headers=headers,
        )
        response[DETAIL_KEY] = self.error
        return response


class _ApiError(Exception):
    """A measurement API error answer: {"message": ..., **extra}."""

    def __init__(
        self, status: int, message: str, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}

    def response(self) -> web.Response:
        headers = {}
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="zevvy sandbox"'
        elif self.status == 403:
            headers["WWW-Authenticate"] = (
                'Bearer realm="zevvy sandbox", error="insufficient_scope"'
            )
        response = web.json_response(
            {"message": self.message, **self.extra},
            status=self.status,
            headers=headers,
        )
        response[DETAIL_KEY] = self.message
        return response


@dataclass
class Account:
    """Who approved a device code."""

    sub: str
    username: str | None
    email: str | None


@dataclass
class DeviceCode:
    """A device authorization in progress."""

    device_code: str = field(repr=False)
    user_code: str
    client_id: str
    scope: str
    created_at: float  # time.monotonic()
    expires_at: float  # time.monotonic()
    interval: float
    last_poll: float | None = None
    state: CodeState = "pending"
    account: Account | None = None
    grant_id: str | None = None

    def expired(self) -> bool:
        """Return whether the code can no longer be used."""
        return time.monotonic() >= self.expires_at

    @property
    def decision(self) -> str:
        """Return "approved", "denied" or "pending" (used codes were approved)."""
        return "approved" if self.state == "used" else self.state

    def expires_in(self) -> float:
        """Return the seconds left."""
        return max(0.0, self.expires_at - time.monotonic())


@dataclass
class Grant:
    """A login: the chain of refresh tokens issued for one approval."""

    grant_id: str
    client_id: str
    account: Account
    scope: str
    refresh_token: str = field(repr=False)
    used_refresh_tokens: list[str] = field(default_factory=list, repr=False)
    revoked: bool = False
    revoked_reason: str | None = None
    created_at: str = ""
    refreshed_at: str | None = None
    refresh_count: int = 0


@dataclass
class _AccessToken:
    expires_at: float  # time.time()
    grant_id: str | None
    # The claims the token stands for (carried in it when it is a JWT).
    claims: dict[str, Any] = field(default_factory=dict)
    # Presented as the key itself (an opaque token), not as a JWT with this jti.
    opaque: bool = False
    expired: bool = False


@dataclass
class Register:
    """A register of a device with its readings."""

    created_at: str
    readings: list[StoredReading] = field(default_factory=list)
    read_ats: set[str] = field(default_factory=set)

    @property
    def first(self) -> StoredReading | None:
        """Return the reading with the earliest readAt."""
        if not self.readings:
            return None
        return min(self.readings, key=lambda r: r.read_at)

    @property
    def last(self) -> StoredReading | None:
        """Return the reading with the latest readAt."""
        if not self.readings:
            return None
        return max(self.readings, key=lambda r: r.read_at)


@dataclass
class Device:
    """A device (deviceRef) with its registers."""

    created_at: str
    registers: dict[str, Register] = field(default_factory=dict)


def _utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(value: float) -> float | int:
    """Return whole numbers as int so JSON shows 5 rather than 5.0."""
    return int(value) if float(value).is_integer() else value


class ZevvySandbox:
    """A local stand-in for zevvy's identity server and measurement API."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        data_file: str | Path | None = None,
    ) -> None:
        """Prepare a sandbox; start() opens the port."""
        self.config = config if config is not None else SandboxConfig()
        self._data_file = DataFile(Path(data_file)) if data_file is not None else None
        self._key = secrets.token_bytes(32)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._requests: list[RequestRecord] = []
        # "api", "token", ... and "METHOD /path" -> requests (never truncated).
        self._request_counts: Counter[str] = Counter()
        self._faults: list[Fault] = []
        # (device ref, register ref, readAt) -> the status refusing it.
        self._refused_readings: dict[tuple[str, str, str], int] = {}
        self._device_codes: dict[str, DeviceCode] = {}
        self._user_codes: dict[str, DeviceCode] = {}
        self._grants: dict[str, Grant] = {}
        self._refresh_tokens: dict[str, str] = {}  # token -> grant id
        # jti (JWT) or the token itself (opaque) -> token
        self._access_tokens: dict[str, _AccessToken] = {}
        self._devices: dict[str, Device] = {}
        self._readings: list[StoredReading] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0: a free port) and load the data file if any."""
        if self._runner is not None:
            raise SandboxError("sandbox already started")
        if self._data_file is not None and not self._data_file.loaded:
            try:
                data = self._data_file.load()
            except (OSError, TypeError, ValueError) as err:
                raise SandboxError(
                    f"cannot read {self._data_file.path}: {err}"
                ) from err
            self._load(data)
        app = web.Application(middlewares=[self._middleware])
        self._add_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        real_port = runner.addresses[0][1]
        # Listening on every address: reachable on the loopback one.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
        url_host = f"[{host}]" if ":" in host else host
        self._url = f"http://{url_host}:{real_port}"

    async def stop(self) -> None:
        """Stop listening and write the data file."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._data_file is not None:
            await self._data_file.flush()

    async def __aenter__(self) -> ZevvySandbox:
        """Start on a free port of 127.0.0.1."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop."""
        await self.stop()

    @property
    def url(self) -> str:
        """Root URL, e.g. http://127.0.0.1:8765 (pages live here).

        config.public_url replaces it when set.
        """
        if self._url is None:
            raise SandboxError("sandbox not started")
        return (self.config.public_url or self._url).rstrip("/")

    def _base_url(self, request: web.Request) -> str:
        """Root URL as the client sees it (like Keycloak without a fixed hostname)."""
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        return str(request.url.origin())

    def _issuer_for(self, request: web.Request) -> str:
        return f"{self._base_url(request)}/realms/{self.config.realm}"

    @property
    def issuer(self) -> str:
        """OIDC issuer URL (the Keycloak realm)."""
        return f"{self.url}/realms/{self.config.realm}"

    @property
    def api_url(self) -> str:
        """Measurement API root."""
        return f"{self.url}/api"

    @property
    def verification_uri(self) -> str:
        """The device page."""
        return f"{self.url}/device"

    # ----------------------------------------------------------------- Python API

    def pending_user_codes(self) -> list[str]:
        """Return user codes waiting for approval, oldest first."""
        return [
            code.user_code
            for code in self._device_codes.values()
            if code.state == "pending" and not code.expired()
        ]

    def approve(
        self,
        user_code: str,
        *,
        sub: str | None = None,
        username: str | None = None,
        email: str | None = None,
        scope: str | None = None,
    ) -> None:
        """Approve a device code as the configured account (or the one given).

        A username other than the configured one without a sub gets a stable
        sub derived from the username (another account).

        `scope` overrides the scope the client asked for (e.g. to test 403).
        Raises SandboxError for an unknown, expired or already decided code.
        """
        code = self._pending_code(user_code)
        if scope is not None:
            code.scope = self._parse_scope(scope)
        code.account = self._account(sub=sub, username=username, email=email)
        code.state = "approved"
        _LOGGER.info("Approved user code %s for %s", code.user_code, code.account.sub)

    def deny(self, user_code: str) -> None:
        """Deny a device code. Raises SandboxError like approve()."""
        code = self._pending_code(user_code)
        code.state = "denied"
        _LOGGER.info("Denied user code %s", code.user_code)

    def readings(
        self, device_ref: str | None = None, register_ref: str | None = None
    ) -> list[StoredReading]:
        """Return stored readings in arrival order, optionally filtered."""
        return [
            reading
            for reading in self._readings
            if (device_ref is None or reading.device_ref == device_ref)
            and (register_ref is None or reading.register_ref == register_ref)
        ]

    def device_records(self) -> dict[str, Device]:
        """Return devices with their registers and readings (do not modify)."""
        return dict(self._devices)

    def devices(self) -> dict[str, list[str]]:
        """Return device refs with their register refs, in creation order."""
        return {ref: list(device.registers) for ref, device in self._devices.items()}

    def inject_fault(
        self,
        status: int | None = 503,
        count: int = 1,
        retry_after: float | None = None,
        delay: float = 0.0,
        drop: bool = False,
        target: FaultTarget = "api",
        body: dict[str, object] | None = None,
        device_ref: str | None = None,
        register_ref: str | None = None,
        after: bool = False,
    ) -> None:
        """Make the next `count` requests to `target` fail.

        Each sleeps `delay` seconds, then has its connection dropped if `drop`,
        else gets `status` (with Retry-After if given). status=None and no drop:
        the request is only slowed down and then answered normally.

        `device_ref` and/or `register_ref` limit the fault to bulk-create requests
        for that device / register (e.g. one register answering 404 while the
        others are stored); other requests pass it by.

        `after`: the request is carried out first (a bulk create stores its
        readings), then answered with `status` or dropped: zevvy stored the
        readings but the client never learns it.
        """
        if target not in FAULT_TARGETS:
            raise ValueError(f"unknown fault target {target!r}")
        if (device_ref is not None or register_ref is not None) and target not in (
            "api",
            "any",
        ):
            raise ValueError("device_ref and register_ref need target 'api'")
        if count < 1:
            raise ValueError("count must be at least 1")
        if delay < 0:
            raise ValueError("delay must not be negative")
        if status is not None and not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        self._faults.append(
            Fault(
                status=status,
                count=count,
                retry_after=retry_after,
                delay=delay,
                drop=drop,
                target=target,
                body=body,
                device_ref=device_ref,
                register_ref=register_ref,
                after=after,
            )
        )

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._faults.clear()

    def refuse_reading(
        self,
        device_ref: str,
        register_ref: str,
        read_at: str,
        status: int | None = None,
    ) -> None:
        """Refuse one reading as invalid until accept_reading().

        A bulk create holding the reading of `device_ref` / `register_ref` at
        `read_at` (as sent, e.g. "2026-11-26T14:15:00.000Z") is refused as a
        whole like a batch with any invalid reading: `status` (None: the
        config's validation_status), the message naming its index and readAt.
        """
        if status is None:
            status = self.config.validation_status
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        self._refused_readings[(device_ref, register_ref, read_at)] = status

    def accept_reading(self, device_ref: str, register_ref: str, read_at: str) -> None:
        """Lift refuse_reading() for one reading (nothing if not refused)."""
        self._refused_readings.pop((device_ref, register_ref, read_at), None)

    @property
    def refused_readings(self) -> dict[tuple[str, str, str], int]:
        """Readings refused as invalid: (device, register, readAt) -> status."""
        return dict(self._refused_readings)

    @property
    def faults(self) -> list[Fault]:
        """Faults still waiting for requests."""
        return list(self._faults)

    def revoke_refresh_tokens(self, grant_id: str | None = None) -> None:
        """Revoke every grant (or the one given): its refresh tokens answer invalid_grant.

        Raises SandboxError for an unknown grant id.
        """
        if grant_id is not None and grant_id not in self._grants:
            raise SandboxError(f"unknown grant {grant_id!r}")
        for grant in self._grants.values():
            if grant_id in (None, grant.grant_id) and not grant.revoked:
                grant.revoked = True
                grant.revoked_reason = "revoked through the sandbox"
        self._changed()

    def configure(self, **changes: Any) -> None:
        """Change settings, checked like the admin API does (see SandboxConfig).

        Raises ValueError and changes nothing for an unknown name or bad value.
        """
        self.config.update(changes)

    def expire_access_tokens(self) -> None:
        """Expire every existing access token: the API answers 401 to them."""
        for token in self._access_tokens.values():
            token.expired = True

    @property
    def requests(self) -> list[RequestRecord]:
        """Requests answered so far (admin API calls excluded)."""
        return list(self._requests)

    def request_counts(self) -> dict[str, Any]:
        """Return how many requests each endpoint got since the last clear.

        {"total": n, "by_target": {"api": n, "token": n, ...}, "by_endpoint":
        {"POST /api/deviceRef/Car/registerRef/Energy/...": n, ...}}: targets
        are the fault targets plus "page"; paths are percent-decoded. Admin API
        calls are not counted.
        """
        by_target = {
            key: count for key, count in self._request_counts.items() if " " not in key
        }
        return {
            "total": sum(by_target.values()),
            "by_target": by_target,
            "by_endpoint": {
                key: count for key, count in self._request_counts.items() if " " in key
            },
        }

    def clear_requests(self) -> None:
        """Forget the recorded requests and their counts."""
        self._requests.clear()
        self._request_counts.clear()

    def reset(self) -> None:
        """Forget readings, devices, tokens, codes, faults (refused readings
        too) and requests."""
        self._requests.clear()
        self._request_counts.clear()
        self._faults.clear()
        self._refused_readings.clear()
        self._device_codes.clear()
        self._user_codes.clear()
        self._grants.clear()
        self._refresh_tokens.clear()
        self._access_tokens.clear()
        self._devices.clear()
        self._readings.clear()
        self._changed()

    def issue_tokens(
        self,
        *,
        sub: str | None = None,
        username: str | None = None,
        email: str | None = None,
        scope: str | None = None,
        client_id: str | None = None,
    ) -> IssuedTokens:
        """Create a grant without the device flow (for test fixtures)."""
        account = self._account(sub=sub, username=username, email=email)
        grant = self._new_grant(
            client_id if client_id is not None else self.config.client_id,
            account,
            self._parse_scope(scope or self.config.default_scope),
        )
        access_token, lifetime = self._new_access_token(grant)
        return IssuedTokens(
            access_token, grant.refresh_token, lifetime, self._new_id_token(grant)
        )

    def grants(self) -> list[Grant]:
        """Return every grant (login), active or revoked."""
        return list(self._grants.values())

    def device_codes(self) -> list[DeviceCode]:
        """Return every device code issued since the last reset."""
        return list(self._device_codes.values())

    # ----------------------------------------------------------------- internals

    def _account(
        self,
        *,
        sub: str | None = None,
        username: str | None = None,
        email: str | None = None,
    ) -> Account:
        config = self.config
        if sub is None:
            if username is None or username == config.username:
                sub = config.sub
            else:
                sub = str(uuid.uuid5(ACCOUNT_NAMESPACE, username))
        return Account(
            sub=sub,
            username=username if username is not None else config.username,
            email=email if email is not None else config.email,
        )

    def _find_code(self, user_code: str) -> DeviceCode | None:
        return self._user_codes.get(normalize_user_code(user_code))

    def _pending_code(self, user_code: str) -> DeviceCode:
        code = self._find_code(user_code)
        if code is None:
            raise SandboxError(f"unknown user code {user_code!r}")
        if code.expired():
            raise SandboxError(f"user code {code.user_code} has expired")
        if code.state != "pending":
            raise SandboxError(
                f"user code {code.user_code} was already {code.decision}"
            )
        return code

    def _parse_scope(self, scope: str) -> str:
        names = scope.split()
        if unknown := [name for name in names if name not in KNOWN_SCOPES]:
            raise ValueError(f"Invalid scopes: {' '.join(unknown)}")
        # Keep the order the client used, without repetitions.
        return " ".join(dict.fromkeys(names))

    def _new_grant(self, client_id: str, account: Account, scope: str) -> Grant:
        grant = Grant(
            grant_id=str(uuid.uuid4()),
            client_id=client_id,
            account=account,
            scope=scope,
            refresh_token=new_secret_token(),
            created_at=_utc_now_iso(),
        )
        self._grants[grant.grant_id] = grant
        self._refresh_tokens[grant.refresh_token] = grant.grant_id
        self._changed()
        return grant

    @staticmethod
    def _account_claims(account: Account) -> dict[str, Any]:
        claims: dict[str, Any] = {"sub": account.sub}
        if account.username is not None:
            claims["preferred_username"] = account.username
        if account.email is not None:
            claims["email"] = account.email
            claims["email_verified"] = True
        return claims

    def _new_access_token(
        self, grant: Grant, issuer: str | None = None
    ) -> tuple[str, float]:
        """Return a new access token (a JWT, or opaque if configured) and lifetime.

        Reads time.time() at call time, so a frozen clock (freezegun) moves it.
        """
        lifetime = self.config.access_token_lifetime
        now = time.time()
        jti = str(uuid.uuid4())
        claims: dict[str, Any] = {
            "exp": math.ceil(now + lifetime),
            "iat": int(now),
            "jti": jti,
            "iss": issuer or self.issuer,
            "aud": "account",
            "sub": grant.account.sub,
            "typ": "Bearer",
            "azp": grant.client_id,
            "sid": grant.grant_id,
            "scope": grant.scope,
            **self._account_claims(grant.account),
        }
        if len(self._access_tokens) > MAX_ACCESS_TOKENS:
            self._access_tokens = {
                key: token
                for key, token in self._access_tokens.items()
                if token.expires_at > now and not token.expired
            }
        if self.config.opaque_access_tokens:
            token = new_secret_token()
            self._access_tokens[token] = _AccessToken(
                now + lifetime, grant.grant_id, claims, opaque=True
            )
            return token, lifetime
        self._access_tokens[jti] = _AccessToken(now + lifetime, grant.grant_id, claims)
        return encode_jwt(claims, self._key), lifetime

    def _new_id_token(self, grant: Grant, issuer: str | None = None) -> str | None:
        """Return an OpenID Connect ID token if the grant has openid and they are on."""
        if not self.config.id_tokens or "openid" not in grant.scope.split():
            return None
        now = time.time()
        claims: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "aud": grant.client_id,
            "azp": grant.client_id,
            "exp": math.ceil(now + self.config.access_token_lifetime),
            "iat": int(now),
            "auth_time": int(now),
            "jti": str(uuid.uuid4()),
            "typ": "ID",
            "sid": grant.grant_id,
            **self._account_claims(grant.account),
        }
        return encode_jwt(claims, self._key)

    def _token_response(self, grant: Grant, issuer: str) -> web.Response:
        access_token, lifetime = self._new_access_token(grant, issuer)
        offline = "offline_access" in grant.scope.split()
        body = {
            "access_token": access_token,
            "expires_in": _number(lifetime),
            "refresh_expires_in": 0 if offline else ONLINE_REFRESH_LIFETIME,
            "refresh_token": grant.refresh_token,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "session_state": grant.grant_id,
            "scope": grant.scope,
        }
        if (id_token := self._new_id_token(grant, issuer)) is not None:
            body["id_token"] = id_token
        return web.json_response(
            body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
        )

    def _revoke_grant(self, grant_id: str | None, reason: str) -> None:
        if grant_id is not None and (grant := self._grants.get(grant_id)) is not None:
            grant.revoked = True
            grant.revoked_reason = reason
            _LOGGER.warning("Revoked the login of %s: %s", grant.account.sub, reason)
            self._changed()

    def _store_batch(
        self, device_ref: str, register_ref: str, batch: list[tuple[str, float]]
    ) -> None:
        now = _utc_now_iso()
        device = self._devices.get(device_ref)
        if device is None:
            device = self._devices[device_ref] = Device(created_at=now)
        register = device.registers.get(register_ref)
        if register is None:
            register = device.registers[register_ref] = Register(created_at=now)
        for read_at, value in batch:
            reading = StoredReading(device_ref, register_ref, read_at, value)
            register.readings.append(reading)
            register.read_ats.add(read_at)
            self._readings.append(reading)
        self._changed()

    # ---------------------------------------------------------------- persistence

    def _changed(self) -> None:
        if self._data_file is not None:
            self._data_file.schedule(self._snapshot)

    def _snapshot(self) -> dict[str, Any]:
        return {
            "version": 1,
            "devices": {
                device_ref: {
                    "created_at": device.created_at,
                    "registers": {
                        register_ref: {"created_at": register.created_at}
                        for register_ref, register in device.registers.items()
                    },
                }
                for device_ref, device in self._devices.items()
            },
            "readings": [
                [r.device_ref, r.register_ref, r.read_at, r.value]
                for r in self._readings
            ],
            "grants": [
                {
                    "grant_id": grant.grant_id,
                    "client_id": grant.client_id,
                    "sub": grant.account.sub,
                    "username": grant.account.username,
                    "email": grant.account.email,
                    "scope": grant.scope,
                    "refresh_token": grant.refresh_token,
                    "used_refresh_tokens": grant.used_refresh_tokens,
                    "created_at": grant.created_at,
                    "refreshed_at": grant.refreshed_at,
                    "refresh_count": grant.refresh_count,
                }
                for grant in self._grants.values()
                if not grant.revoked
            ],
        }

    def _load(self, data: dict[str, Any] | None) -> None:
        if data is None:
            return
        try:
            for device_ref, device_data in data.get("devices", {}).items():
                device = self._devices[str(device_ref)] = Device(
                    created_at=str(device_data.get("created_at", ""))
                )
                for register_ref, register_data in device_data.get(
                    "registers", {}
                ).items():
                    device.registers[str(register_ref)] = Register(
                        created_at=str(register_data.get("created_at", ""))
                    )
            for device_ref, register_ref, read_at, value in data.get("readings", []):
                device = self._devices.setdefault(device_ref, Device(created_at=""))
                register = device.registers.setdefault(
                    register_ref, Register(created_at="")
                )
                reading = StoredReading(device_ref, register_ref, read_at, float(value))
                register.readings.append(reading)
                register.read_ats.add(read_at)
                self._readings.append(reading)
            for item in data.get("grants", []):
                grant = Grant(
                    grant_id=item["grant_id"],
                    client_id=item["client_id"],
                    account=Account(
                        item["sub"], item.get("username"), item.get("email")
                    ),
                    scope=item["scope"],
                    refresh_token=item["refresh_token"],
                    used_refresh_tokens=list(item.get("used_refresh_tokens", [])),
                    created_at=item.get("created_at", ""),
                    refreshed_at=item.get("refreshed_at"),
                    refresh_count=int(item.get("refresh_count", 0)),
                )
                self._grants[grant.grant_id] = grant
                for token in [grant.refresh_token, *grant.used_refresh_tokens]:
                    self._refresh_tokens[token] = grant.grant_id
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise SandboxError(f"data file is not a sandbox data file: {err}") from err

    # -------------------------------------------------------------------- routing

    def _add_routes(self, app: web.Application) -> None:
        realm = "/realms/{realm}"
        app.router.add_get(
            realm + "/.well-known/openid-configuration", self._handle_discovery
        )
        app.router.add_post(
            realm + "/protocol/openid-connect/auth/device",
            self._handle_device_authorization,
        )
        app.router.add_post(
            realm + "/protocol/openid-connect/token", self._handle_token
        )
        app.router.add_get(
            realm + "/protocol/openid-connect/userinfo", self._handle_userinfo
        )
        app.router.add_post(
            realm + "/protocol/openid-connect/userinfo", self._handle_userinfo
        )
        app.router.add_post(
            "/api/deviceRef/{device_ref}/registerRef/{register_ref}"
            "/measurements/_bulk_create",
            self._handle_bulk_create,
        )
        app.router.add_get("/", self._handle_index)
        app.router.add_get("/device", self._handle_device_page)
        app.router.add_post("/device", self._handle_device_form)
        app.router.add_get("/_sandbox/readings", self._admin_readings)
        app.router.add_post("/_sandbox/reset", self._admin_reset)
        app.router.add_post("/_sandbox/faults", self._admin_add_fault)
        app.router.add_get("/_sandbox/faults", self._admin_list_faults)
        app.router.add_delete("/_sandbox/faults", self._admin_clear_faults)
        app.router.add_post("/_sandbox/approve", self._admin_approve)
        app.router.add_post("/_sandbox/deny", self._admin_deny)
        app.router.add_get("/_sandbox/pending", self._admin_pending)
        app.router.add_post("/_sandbox/revoke", self._admin_revoke)
        app.router.add_get("/_sandbox/grants", self._admin_grants)
        app.router.add_get("/_sandbox/settings", self._admin_settings)
        app.router.add_patch("/_sandbox/settings", self._admin_update_settings)
        app.router.add_post("/_sandbox/settings", self._admin_update_settings)
        app.router.add_get("/_sandbox/requests/counts", self._admin_request_counts)
        app.router.add_post("/_sandbox/expire", self._admin_expire)
        app.router.add_get("/_sandbox/requests", self._admin_requests)
        app.router.add_delete("/_sandbox/requests", self._admin_clear_requests)
        app.router.add_post("/_sandbox/tokens", self._admin_issue_tokens)

    def _fault_target(self, request: web.Request) -> str | None:
        path = request.path
        if path.startswith("/_sandbox/"):
            return None
        if path.startswith("/api/"):
            return "api"
        if path.startswith("/realms/"):
            for suffix, target in IDENTITY_TARGETS:
                if path.endswith(suffix):
                    return target
        return "page"

    def _take_fault(self, request: web.Request) -> Fault | None:
        target = self._fault_target(request)
        if target is None:
            return None
        device_ref = request.match_info.get("device_ref")
        register_ref = request.match_info.get("register_ref")
        for fault in self._faults:
            if fault.matches(target, device_ref, register_ref):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        status = 0
        detail = ""
        admin = request.path.startswith("/_sandbox/")
        if not admin:
            target = self._fault_target(request) or "page"
            self._request_counts[target] += 1
            self._request_counts[f"{request.method} {request.path}"] += 1
        try:
            if not admin and self.config.latency > 0:
                await asyncio.sleep(self.config.latency)
            fault = self._take_fault(request)
            response = None
            if fault is not None and fault.after:
                stored = await handler(request)
                response = await self._apply_fault(request, fault) or stored
            elif fault is not None:
                response = await self._apply_fault(request, fault)
            if response is None:
                response = await handler(request)
            status = response.status
            detail = str(response.get(DETAIL_KEY, ""))
        except web.HTTPException as err:
            status = err.status
            raise
        finally:
            if not admin:
                self._requests.append(
                    RequestRecord(request.method, request.path, status)
                )
                if len(self._requests) > MAX_RECORDED_REQUESTS:
                    del self._requests[: -MAX_RECORDED_REQUESTS // 2]
                _LOGGER.info(
                    "%s %s -> %s %s",
                    request.method,
                    request.path,
                    status or "dropped",
                    detail,
                )
        return response

    async def _apply_fault(
        self, request: web.Request, fault: Fault
    ) -> web.StreamResponse | None:
        if fault.delay > 0:
            await asyncio.sleep(fault.delay)
        if fault.drop:
            if request.transport is not None:
                request.transport.close()
            # Leave without answering: aiohttp takes a cancelled handler quietly.
            raise asyncio.CancelledError
        if fault.status is None:
            return None
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(_number(fault.retry_after))
        body: dict[str, object] = fault.body or {
            "error": "temporarily_unavailable"
            if fault.status in (429, 503)
            else "server_error",
            "error_description": f"injected fault: HTTP {fault.status}",
            "message": f"injected fault: HTTP {fault.status}",
        }
        response = web.json_response(body, status=fault.status, headers=headers)
        response[DETAIL_KEY] = "(injected fault)"
        return response

    # ------------------------------------------------------------------- identity

    def _check_realm(self, request: web.Request) -> None:
        if request.match_info["realm"] != self.config.realm:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "Realm does not exist"}),
                content_type="application/json",
            )

    async def _handle_discovery(self, request: web.Request) -> web.Response:
        self._check_realm(request)
        issuer = self._issuer_for(request)
        oidc = f"{issuer}/protocol/openid-connect"
        document: dict[str, Any] = {}
        if self.config.userinfo:
            document["userinfo_endpoint"] = f"{oidc}/userinfo"
        return web.json_response(
            {
                **document,
                "issuer": issuer,
                "authorization_endpoint": f"{oidc}/auth",
                "token_endpoint": f"{oidc}/token",
                "device_authorization_endpoint": f"{oidc}/auth/device",
                "jwks_uri": f"{oidc}/certs",
                "grant_types_supported": [DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT],
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["HS256"],
                "scopes_supported": list(KNOWN_SCOPES),
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "claims_supported": [
                    "sub",
                    "preferred_username",
                    "email",
                    "email_verified",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                ],
            }
        )

    async def _handle_userinfo(self, request: web.Request) -> web.Response:
        """OIDC userinfo: Bearer access token with scope openid -> account claims."""
        self._check_realm(request)
        if not self.config.userinfo:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "Unable to find matching target resource"}),
                content_type="application/json",
            )
        try:
            claims = self._check_bearer(request)
        except _ApiError as err:
            response = web.json_response(
                {"error": "invalid_token", "error_description": err.message},
                status=401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="zevvy sandbox", '
                    'error="invalid_token"'
                },
            )
            response[DETAIL_KEY] = err.message
            return response
        if "openid" not in str(claims.get("scope", "")).split():
            response = web.json_response(
                {
                    "error": "insufficient_scope",
                    "error_description": "Missing openid scope",
                },
                status=403,
                headers={
                    "WWW-Authenticate": 'Bearer realm="zevvy sandbox", '
                    'error="insufficient_scope"'
                },
            )
            response[DETAIL_KEY] = "insufficient_scope"
            return response
        keys = ("sub", "preferred_username", "email", "email_verified")
        return web.json_response(
            {key: claims[key] for key in keys if key in claims},
            headers={"Cache-Control": "no-store"},
        )

    async def _client_form(self, request: web.Request) -> dict[str, str]:
        """Return the form fields after authenticating the client.

        Raises _OAuthError for a body that is not a form or a bad client.
        """
        if request.content_type != FORM_CONTENT_TYPE:
            raise _OAuthError(
                "invalid_request", f"Content-Type must be {FORM_CONTENT_TYPE}"
            )
        form = {key: str(value) for key, value in (await request.post()).items()}
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        authorization = request.headers.get("Authorization", "")
        if authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
                basic_id, _, basic_secret = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError) as err:
                raise _OAuthError(
                    "invalid_client", "Malformed Basic authorization", 401
                ) from err
            client_id = unquote_plus(basic_id)
            client_secret = unquote_plus(basic_secret)
        if not client_id:
            raise _OAuthError("invalid_client", "Missing parameter: client_id", 401)
        if client_id != self.config.client_id or not secrets.compare_digest(
            (client_secret or "").encode(), self.config.client_secret.encode()
        ):
            raise _OAuthError(
                "invalid_client", "Invalid client or Invalid client credentials", 401
            )
        form["client_id"] = client_id
        return form

    async def _handle_device_authorization(self, request: web.Request) -> web.Response:
        self._check_realm(request)
        try:
            form = await self._client_form(request)
            try:
                scope = self._parse_scope(
                    form.get("scope") or self.config.default_scope
                )
            except ValueError as err:
                raise _OAuthError("invalid_scope", str(err)) from err
        except _OAuthError as err:
            return err.response()
        user_code = new_user_code()
        while user_code in self._user_codes:
            user_code = new_user_code()
        now = time.monotonic()
        code = DeviceCode(
            device_code=new_secret_token(),
            user_code=user_code,
            client_id=form["client_id"],
            scope=scope,
            created_at=now,
            expires_at=now + self.config.code_lifetime,
            interval=self.config.interval,
        )
        self._device_codes[code.device_code] = code
        verification_uri = f"{self._base_url(request)}/device"
        self._user_codes[code.user_code] = code
        _LOGGER.info("New user code %s", user_code)
        return web.json_response(
            {
                "device_code": code.device_code,
                "user_code": user_code,
                "verification_uri": verification_uri,
                "verification_uri_complete": f"{verification_uri}?user_code={user_code}",
                "expires_in": _number(self.config.code_lifetime),
                "interval": _number(code.interval),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def _handle_token(self, request: web.Request) -> web.Response:
        self._check_realm(request)
        try:
            return await self._token(request)
        except _OAuthError as err:
            return err.response()

    async def _token(self, request: web.Request) -> web.Response:
        form = await self._client_form(request)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _OAuthError("invalid_request", "Missing form parameter: grant_type")
        if grant_type == DEVICE_CODE_GRANT:
            return self._device_code_grant(form, self._issuer_for(request))
        if grant_type == REFRESH_TOKEN_GRANT:
            return self._refresh_token_grant(form, self._issuer_for(request))
        raise _OAuthError(
            "unsupported_grant_type", f"Unsupported grant_type {grant_type}"
        )

    def _device_code_grant(self, form: dict[str, str], issuer: str) -> web.Response:
        device_code = form.get("device_code")
        if not device_code:
            raise _OAuthError("invalid_request", "Missing parameter: device_code")
        code = self._device_codes.get(device_code)
        if code is None or code.client_id != form["client_id"]:
            raise _OAuthError("invalid_grant", "Device code not valid")
        if code.state == "used":
            # Polling after success: strict servers revoke what they issued.
            self._revoke_grant(code.grant_id, "device code polled after success")
            raise _OAuthError("invalid_grant", "Device code already used")
        if code.expired():
            raise _OAuthError("expired_token", "Device code is expired")
        now = time.monotonic()
        last_poll, code.last_poll = code.last_poll, now
        if last_poll is not None:
            tolerance = min(0.01, code.interval / 5)
            if now - last_poll + tolerance < code.interval:
                code.interval += self.config.slow_down_increment
                raise _OAuthError("slow_down", "Slow down")
        if code.state == "denied":
            raise _OAuthError("access_denied", "The end user denied the authorization")
        if code.state == "pending" or code.account is None:
            raise _OAuthError(
                "authorization_pending", "The authorization request is still pending"
            )
        grant = self._new_grant(code.client_id, code.account, code.scope)
        code.state = "used"
        code.grant_id = grant.grant_id
        return self._token_response(grant, issuer)

    def _refresh_token_grant(self, form: dict[str, str], issuer: str) -> web.Response:
        refresh_token = form.get("refresh_token")
        if not refresh_token:
            raise _OAuthError("invalid_request", "Missing parameter: refresh_token")
        grant_id = self._refresh_tokens.get(refresh_token)
        grant = self._grants.get(grant_id) if grant_id is not None else None
        if grant is None:
            raise _OAuthError("invalid_grant", "Invalid refresh token")
        if grant.client_id != form["client_id"]:
            raise _OAuthError(
                "invalid_grant", "Invalid refresh token. Token client mismatch"
            )
        if grant.revoked:
            raise _OAuthError("invalid_grant", "Session not active")
        if refresh_token != grant.refresh_token:
            self._revoke_grant(grant.grant_id, "an old refresh token was reused")
            raise _OAuthError(
                "invalid_grant", "Maximum allowed refresh token reuse exceeded"
            )
        grant.used_refresh_tokens.append(grant.refresh_token)
        grant.refresh_token = new_secret_token()
        grant.refreshed_at = _utc_now_iso()
        grant.refresh_count += 1
        self._refresh_tokens[grant.refresh_token] = grant.grant_id
        self._changed()
        return self._token_response(grant, issuer)

    # ------------------------------------------------------------ measurement API

    def _check_bearer(self, request: web.Request) -> dict[str, Any]:
        """Return the claims of the request's access token (JWT or opaque).

        Raises _ApiError 401 for a missing, unknown or expired one.
        """
        authorization = request.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _ApiError(401, "Missing bearer token")
        claims = decode_jwt(token, self._key)
        if claims is not None:
            stored = self._access_tokens.get(str(claims.get("jti")))
            if stored is not None and stored.opaque:
                stored = None
        else:
            stored = self._access_tokens.get(token)
            if stored is not None and not stored.opaque:
                stored = None  # a jti alone is no token
        if stored is None:
            raise _ApiError(401, "Invalid bearer token")
        if stored.expired or time.time() >= stored.expires_at:
            raise _ApiError(401, "Bearer token expired")
        return stored.claims

    async def _handle_bulk_create(self, request: web.Request) -> web.Response:
        try:
            return await self._bulk_create(request)
        except _ApiError as err:
            return err.response()

    async def _bulk_create(self, request: web.Request) -> web.Response:
        claims = self._check_bearer(request)
        if "measurement" not in str(claims.get("scope", "")).split():
            raise _ApiError(403, "Scope 'measurement' required")
        device_ref = request.match_info["device_ref"]
        register_ref = request.match_info["register_ref"]
        if not device_ref.strip() or not register_ref.strip():
            raise _ApiError(400, "deviceRef and registerRef must not be blank")
        batch = await self._read_batch(request)
        for index, (read_at, _value) in enumerate(batch):
            status = self._refused_readings.get((device_ref, register_ref, read_at))
            if status is not None:
                raise _ApiError(
                    status,
                    f"[{index}] is not a valid measurement (readAt {read_at})",
                )
        device = self._devices.get(device_ref)
        register = device.registers.get(register_ref) if device is not None else None
        existing = register.read_ats if register is not None else set()
        seen: set[str] = set()
        duplicates: list[str] = []
        new: list[tuple[str, float]] = []
        for read_at, value in batch:
            if read_at in existing or read_at in seen:
                duplicates.append(read_at)
            else:
                new.append((read_at, value))
            seen.add(read_at)
        if not duplicates:
            self._store_batch(device_ref, register_ref, batch)
            return web.json_response({"created": len(batch)}, status=201)
        partial = self.config.conflict_mode == "partial"
        if partial and new:
            self._store_batch(device_ref, register_ref, new)
        extra: dict[str, Any] = {}
        if self.config.conflict_details:
            extra["conflicts"] = list(dict.fromkeys(duplicates))
        raise _ApiError(
            409,
            f"{len(duplicates)} measurement(s) already exist, e.g. readAt "
            f"{duplicates[0]}; "
            + (f"{len(new)} created" if partial else "nothing was created"),
            extra,
        )

    async def _read_batch(self, request: web.Request) -> list[tuple[str, float]]:
        if request.content_type != "application/json":
            raise _ApiError(415, "Content-Type must be application/json")
        try:
            body = json.loads(await request.text())
        except ValueError as err:
            raise _ApiError(400, f"Body is not valid JSON: {err}") from err
        if not isinstance(body, list):
            raise _ApiError(400, "Body must be a JSON array of measurements")
        if not body:
            raise _ApiError(400, "Body must contain at least one measurement")
        config = self.config
        if config.max_batch is not None and len(body) > config.max_batch:
            raise _ApiError(
                config.max_batch_status,
                f"At most {config.max_batch} measurements per request, got {len(body)}",
            )
        batch: list[tuple[str, float]] = []
        for index, item in enumerate(body):
            batch.append(self._reading(index, item))
        return batch

    def _reading(self, index: int, item: object) -> tuple[str, float]:
        """Return one reading of a batch; raise _ApiError naming it if invalid."""
        status = self.config.validation_status
        if not isinstance(item, dict):
            raise _ApiError(status, f"[{index}]: measurement must be an object")
        read_at = item.get("readAt")
        if not isinstance(read_at, str) or not READ_AT_PATTERN.match(read_at):
            raise _ApiError(
                status,
                f"[{index}].readAt must be UTC ISO 8601 with milliseconds, "
                f"like 2026-11-26T14:15:00.000Z; got {read_at!r}",
            )
        try:
            datetime.strptime(read_at, "%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: DTZ007
        except ValueError as err:
            raise _ApiError(status, f"[{index}].readAt is not a date: {err}") from err
        value = item.get("value")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise _ApiError(
                status,
                f"[{index}].value must be a non-negative number; got {value!r} "
                f"(readAt {read_at})",
            )
        max_value = self.config.max_value
        if max_value is not None and value > max_value:
            raise _ApiError(
                status,
                f"[{index}].value must be at most {_number(max_value)}; "
                f"got {value!r} (readAt {read_at})",
            )
        return read_at, float(value)

    # ---------------------------------------------------------------------- pages

    async def _handle_index(self, request: web.Request) -> web.Response:
        return pages.html_response(pages.index_page(self))

    async def _handle_device_page(self, request: web.Request) -> web.Response:
        user_code = request.query.get("user_code", "").strip()
        if not user_code:
            return pages.html_response(pages.device_form(self))
        code = self._find_code(user_code)
        if code is None:
            return pages.html_response(
                pages.device_form(
                    self, user_code, error=f"Unknown code {user_code}. Check for typos."
                ),
                status=404,
            )
        if message := self._code_problem(code):
            return pages.html_response(pages.message_page(*message), status=409)
        return pages.html_response(pages.confirm_page(self, code))

    def _code_problem(self, code: DeviceCode) -> tuple[str, str] | None:
        if code.expired():
            return (
                "Code expired",
                f"The code {code.user_code} has expired. Start the login again "
                "in Home Assistant to get a new code.",
            )
        if code.state != "pending":
            return (
                "Code already used",
                f"The code {code.user_code} was already {code.decision}.",
            )
        return None

    async def _handle_device_form(self, request: web.Request) -> web.Response:
        form = await request.post()
        user_code = str(form.get("user_code", "")).strip()
        action = str(form.get("action", ""))
        code = self._find_code(user_code) if user_code else None
        if code is None:
            return pages.html_response(
                pages.device_form(
                    self,
                    user_code,
                    error=f"Unknown code {user_code}. Check for typos."
                    if user_code
                    else "Enter the code shown by your device.",
                ),
                status=404 if user_code else 400,
            )
        if action not in ("approve", "deny"):
            # The code was typed on the first form: ask for the decision.
            if message := self._code_problem(code):
                return pages.html_response(pages.message_page(*message), status=409)
            return pages.html_response(pages.confirm_page(self, code))
        if message := self._code_problem(code):
            return pages.html_response(pages.message_page(*message), status=409)
        if action == "deny":
            self.deny(code.user_code)
            return pages.html_response(
                pages.message_page(
                    "Access denied",
                    f"You denied access for code {code.user_code}. "
                    "The device will be told so.",
                )
            )
        username = str(form.get("username", "")).strip() or None
        email = str(form.get("email", "")).strip() or None
        self.approve(code.user_code, username=username, email=email)
        account = code.account
        who = account.username or account.email or account.sub if account else ""
        return pages.html_response(
            pages.message_page(
                "Device approved",
                f"Signed in as {who}. The device with code {code.user_code} "
                "now has access; you can close this page and return to Home Assistant.",
            )
        )

    # ------------------------------------------------------------------ admin API

    async def _admin_json(self, request: web.Request) -> dict[str, Any]:
        if not request.body_exists:
            return {}
        try:
            body = await request.json()
        except ValueError as err:
            raise web.HTTPBadRequest(
                text=json.dumps({"message": f"invalid JSON: {err}"}),
                content_type="application/json",
            ) from err
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(
                text=json.dumps({"message": "body must be a JSON object"}),
                content_type="application/json",
            )
        return body

    async def _admin_readings(self, request: web.Request) -> web.Response:
        readings = self.readings(
            request.query.get("device_ref"), request.query.get("register_ref")
        )
        return web.json_response(
            [
                {
                    "device_ref": r.device_ref,
                    "register_ref": r.register_ref,
                    "read_at": r.read_at,
                    "value": r.value,
                }
                for r in readings
            ]
        )

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _admin_add_fault(self, request: web.Request) -> web.Response:
        body = await self._admin_json(request)
        try:
            self.inject_fault(
                status=body.get("status", 503),
                count=int(body.get("count", 1)),
                retry_after=body.get("retry_after"),
                delay=float(body.get("delay", 0.0)),
                drop=bool(body.get("drop", False)),
                target=body.get("target", "api"),
                body=body.get("body"),
                device_ref=body.get("device_ref"),
                register_ref=body.get("register_ref"),
                after=bool(body.get("after", False)),
            )
        except (TypeError, ValueError) as err:
            return web.json_response({"message": str(err)}, status=400)
        return web.json_response({"ok": True})

    async def _admin_list_faults(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "status": f.status,
                    "count": f.count,
                    "retry_after": f.retry_after,
                    "delay": f.delay,
                    "drop": f.drop,
                    "target": f.target,
                    "device_ref": f.device_ref,
                    "register_ref": f.register_ref,
                }
                for f in self._faults
            ]
        )

    async def _admin_clear_faults(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return web.json_response({"ok": True})

    async def _admin_approve(self, request: web.Request) -> web.Response:
        body = await self._admin_json(request)
        try:
            self.approve(
                str(body.get("user_code", "")),
                sub=body.get("sub"),
                username=body.get("username"),
                email=body.get("email"),
                scope=body.get("scope"),
            )
        except SandboxError as err:
            return web.json_response({"message": str(err)}, status=404)
        except ValueError as err:
            return web.json_response({"message": str(err)}, status=400)
        return web.json_response({"ok": True})

    async def _admin_deny(self, request: web.Request) -> web.Response:
        body = await self._admin_json(request)
        try:
            self.deny(str(body.get("user_code", "")))
        except SandboxError as err:
            return web.json_response({"message": str(err)}, status=404)
        return web.json_response({"ok": True})

    async def _admin_pending(self, request: web.Request) -> web.Response:
        return web.json_response(self.pending_user_codes())

    async def _admin_revoke(self, request: web.Request) -> web.Response:
        body = await self._admin_json(request)
        try:
            self.revoke_refresh_tokens(body.get("grant_id"))
        except SandboxError as err:
            return web.json_response({"message": str(err)}, status=404)
        return web.json_response({"ok": True})

    async def _admin_grants(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "grant_id": grant.grant_id,
                    "client_id": grant.client_id,
                    "sub": grant.account.sub,
                    "username": grant.account.username,
                    "email": grant.account.email,
                    "scope": grant.scope,
                    "refresh_token": grant.refresh_token,
                    "used_refresh_tokens": len(grant.used_refresh_tokens),
                    "refresh_count": grant.refresh_count,
                    "created_at": grant.created_at,
                    "refreshed_at": grant.refreshed_at,
                    "revoked": grant.revoked,
                    "revoked_reason": grant.revoked_reason,
                }
                for grant in self._grants.values()
            ]
        )

    async def _admin_settings(self, request: web.Request) -> web.Response:
        return web.json_response(self.config.as_dict())

    async def _admin_update_settings(self, request: web.Request) -> web.Response:
        body = await self._admin_json(request)
        try:
            self.configure(**body)
        except ValueError as err:
            return web.json_response({"message": str(err)}, status=400)
        return web.json_response(self.config.as_dict())

    async def _admin_request_counts(self, request: web.Request) -> web.Response:
        return web.json_response(self.request_counts())

    async def _admin_expire(self, request: web.Request) -> web.Response:
        self.expire_access_tokens()
        return web.json_response({"ok": True})

    async def _admin_requests(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"method": r.method, "path": r.path, "status": r.status}
                for r in self._requests
            ]
        )

    async def _admin_clear_requests(self, request: web.Request) -> web.Response:
        self.clear_requests()
        return web.json_response({"ok": True})

    async def _admin_issue_tokens(self, request: web.Request) -> web.Response:
        body = await self._admin_json(request)
        try:
            tokens = self.issue_tokens(
                sub=body.get("sub"),
                username=body.get("username"),
                email=body.get("email"),
                scope=body.get("scope"),
            )
        except ValueError as err:
            return web.json_response({"message": str(err)}, status=400)
        answer: dict[str, Any] = {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_in": _number(tokens.expires_in),
        }
        if tokens.id_token is not None:
            answer["id_token"] = tokens.id_token
        return web.json_response(answer)
