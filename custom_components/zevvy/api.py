"""Asynchronous client for zevvy: device-flow login, tokens and bulk readings.

This module has no Home Assistant imports. It speaks OAuth 2.0 (RFC 8628 device
authorization grant, refresh tokens) with zevvy's Keycloak realm and posts meter
readings to the zevvy API.

Secrets (client secret, access and refresh tokens, device codes) never appear in
exception messages, log records or the ``repr`` of the dataclasses below.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
import json
import logging
import math
import time
from typing import Final
from urllib.parse import quote

import aiohttp
from yarl import URL

from .const import (
    DEFAULT_API_URL,
    DEFAULT_ISSUER,
    MAX_BATCH,
    READING_DECIMALS,
    REQUEST_TIMEOUT,
    SCOPES,
    SLOW_DOWN_INCREMENT,
    TOKEN_REFRESH_MARGIN,
)

_LOGGER = logging.getLogger(__name__)

# Server messages carried in exceptions are cut to this many characters.
MAX_MESSAGE_LENGTH: Final = 200
# RFC 8628 section 3.2: default polling interval when the server names none.
DEFAULT_POLL_INTERVAL: Final = 5.0
# Device-code lifetime assumed when the server names none (Keycloak's default).
DEFAULT_CODE_LIFETIME: Final = 600.0
# Access-token lifetime assumed when the server names none (Keycloak's default).
DEFAULT_ACCESS_TOKEN_LIFETIME: Final = 300.0

GRANT_TYPE_DEVICE_CODE: Final = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPE_REFRESH_TOKEN: Final = "refresh_token"

_REDACTED: Final = "**REDACTED**"


# --------------------------------------------------------------------------
# Exceptions
# --------------------------------------------------------------------------


class ZevvyError(Exception):
    """Base class for every error of the zevvy client."""


class ZevvyConnectionError(ZevvyError):
    """zevvy is unreachable, too slow or answered with a server error (5xx)."""


class ZevvyRateLimitError(ZevvyConnectionError):
    """zevvy answered 429 Too Many Requests."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        """Store the number of seconds zevvy asks us to wait, if it named one."""
        super().__init__(message)
        self.retry_after = retry_after


class ZevvyAuthenticationError(ZevvyError):
    """The refresh token was rejected (invalid_grant): the user must log in again."""


class ZevvyInvalidClientError(ZevvyAuthenticationError):
    """The client id or client secret was rejected (invalid_client)."""


class ZevvyResponseError(ZevvyError):
    """zevvy answered with an unexpected status or an unusable body."""

    def __init__(self, status: int, message: str) -> None:
        """Store the HTTP status and the (sanitized) server message."""
        super().__init__(f"zevvy answered HTTP {status}: {message}")
        self.status = status
        self.message = message


class ZevvyRejectedError(ZevvyResponseError):
    """zevvy rejected the readings as invalid (400 or 422)."""


class ZevvyDeviceFlowError(ZevvyError):
    """The device-flow login did not (yet) produce tokens."""


class ZevvyAuthorizationPending(ZevvyDeviceFlowError):  # noqa: N818
    """The user has not approved the login yet: poll again after the interval."""


class ZevvySlowDown(ZevvyDeviceFlowError):  # noqa: N818
    """Polling too fast: add SLOW_DOWN_INCREMENT seconds to the interval."""


class ZevvyAccessDenied(ZevvyDeviceFlowError):  # noqa: N818
    """The user refused the login."""


class ZevvyExpiredToken(ZevvyDeviceFlowError):  # noqa: N818
    """The device code expired before the user approved: start over."""


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """The OAuth endpoints of the identity server."""

    device_authorization_endpoint: str
    token_endpoint: str


@dataclass(frozen=True)
class DeviceAuthorization:
    """An answer to the device authorization request (RFC 8628 section 3.2)."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: float
    interval: float


@dataclass(frozen=True)
class Tokens:
    """Tokens from the token endpoint."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: float


@dataclass(frozen=True)
class Account:
    """The zevvy account an access token belongs to."""

    sub: str
    username: str | None
    email: str | None

    @property
    def title(self) -> str:
        """Return a readable name: username, else email, else the subject id."""
        return self.username or self.email or self.sub


@dataclass(frozen=True)
class Reading:
    """A cumulative meter reading at a point in time (aware datetime)."""

    read_at: datetime
    value: float


@dataclass(frozen=True)
class BulkResult:
    """The outcome of a bulk create."""

    created: int
    already_present: int

    def __add__(self, other: BulkResult) -> BulkResult:
        """Add two results."""
        return BulkResult(
            self.created + other.created,
            self.already_present + other.already_present,
        )


@dataclass(frozen=True)
class _Response:
    """A read HTTP response: status, Retry-After and the JSON body if any."""

    status: int
    retry_after: str | None
    data: object
    text: str


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _sanitize(text: str, secrets: Sequence[str | None] = ()) -> str:
    """Remove secrets from a server-provided text and cut it to a sane length."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 1] + "…"
    return text


def _get_str(data: object, key: str) -> str | None:
    """Return a non-empty string member of a JSON object, else None."""
    if isinstance(data, dict):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _get_number(data: object, key: str) -> float | None:
    """Return a numeric member of a JSON object (numbers or numeric strings)."""
    if not isinstance(data, dict):
        return None
    value = data.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _server_message(response: _Response, secrets: Sequence[str | None] = ()) -> str:
    """Extract a readable message from an error response."""
    message = None
    for key in ("message", "error_description", "detail", "error"):
        message = _get_str(response.data, key)
        if message is not None:
            break
    if message is None:
        message = response.text.strip() or f"HTTP {response.status}"
    return _sanitize(message, secrets)


def _parse_retry_after(value: str | None) -> float | None:
    """Parse a Retry-After header: delay in seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _raise_for_transient(response: _Response, secrets: Sequence[str | None]) -> None:
    """Raise ZevvyRateLimitError on 429 and ZevvyConnectionError on 5xx."""
    if response.status == 429:
        retry_after = _parse_retry_after(response.retry_after)
        raise ZevvyRateLimitError(
            f"zevvy is rate limiting requests: {_server_message(response, secrets)}",
            retry_after,
        )
    if response.status >= 500:
        raise ZevvyConnectionError(
            f"zevvy answered HTTP {response.status}: "
            f"{_server_message(response, secrets)}"
        )


def _format_read_at(read_at: datetime) -> str:
    """Format an aware datetime as UTC ISO 8601 with milliseconds and Z."""
    if read_at.tzinfo is None or read_at.utcoffset() is None:
        raise ValueError("Reading times must be timezone-aware")
    utc = read_at.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _check_ref(name: str, ref: str) -> str:
    """Validate a device or register reference and escape it for a URL path."""
    if not ref or not ref.strip():
        raise ValueError(f"{name} must not be empty")
    if "/" in ref:
        raise ValueError(f"{name} must not contain '/'")
    if ref in {".", ".."}:
        raise ValueError(f"{name} must not be '.' or '..'")
    return quote(ref, safe="")


def account_from_access_token(access_token: str) -> Account:
    """Read the account from a JWT access token, without verifying its signature.

    The token comes straight from the token endpoint over TLS; the claims are only
    used to name and identify the account.
    """
    parts = access_token.split(".")
    if len(parts) < 2 or not parts[1]:
        raise ZevvyError("The access token is not a JWT")
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims: object = json.loads(raw)
    except (binascii.Error, ValueError) as err:
        raise ZevvyError("The access token payload cannot be decoded") from err
    sub = _get_str(claims, "sub")
    if sub is None:
        raise ZevvyError("The access token has no subject (sub)")
    return Account(
        sub=sub,
        username=_get_str(claims, "preferred_username"),
        email=_get_str(claims, "email"),
    )


async def _request(
    session: aiohttp.ClientSession,
    request_timeout: float,
    method: str,
    url: URL,
    *,
    data: Mapping[str, str] | None = None,
    json_body: object = None,
    headers: Mapping[str, str] | None = None,
) -> _Response:
    """Send one request and read its answer; map transport failures.

    TimeoutError and aiohttp.ClientError become ZevvyConnectionError. The HTTP
    status is not interpreted here.
    """
    try:
        async with asyncio.timeout(request_timeout):
            async with session.request(
                method,
                url,
                data=data,
                json=json_body,
                headers=headers,
                # Follow redirects only for reads (e.g. http -> https discovery).
                allow_redirects=method == "GET",
            ) as response:
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
    except TimeoutError as err:
        raise ZevvyConnectionError(
            f"Timeout after {request_timeout:g} s talking to {url.host}"
        ) from err
    except aiohttp.ClientError as err:
        raise ZevvyConnectionError(
            f"Error talking to {url.host}: {type(err).__name__}"
        ) from err
    text = raw.decode("utf-8", errors="replace")
    body: object
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    _LOGGER.debug("%s %s -> %s", method, url.path, status)
    return _Response(status=status, retry_after=retry_after, data=body, text=text)


def _base_url(url: str) -> URL:
    """Parse a configured base URL, with or without a trailing slash."""
    return URL(url.strip().rstrip("/"))


# --------------------------------------------------------------------------
# OAuth: discovery, device flow, refresh
# --------------------------------------------------------------------------


class ZevvyAuth:
    """Talk to zevvy's identity server (Keycloak realm)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        client_id: str,
        client_secret: str,
        issuer: str = DEFAULT_ISSUER,
        request_timeout: float = REQUEST_TIMEOUT,
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """Initialize with credentials; `sleep` defaults to asyncio.sleep."""
        self._session = session
        self._client_id = client_id
        self._client_secret = client_secret
        self._issuer = _base_url(issuer)
        self._request_timeout = request_timeout
        self._sleep = sleep
        self._endpoints: Endpoints | None = None

    def __repr__(self) -> str:
        """Represent without the client secret."""
        return f"ZevvyAuth(issuer={str(self._issuer)!r}, client_id={self._client_id!r})"

    @property
    def issuer(self) -> str:
        """Return the issuer URL (without trailing slash)."""
        return str(self._issuer)

    async def discover(self) -> Endpoints:
        """Find the device authorization and token endpoints (cached).

        Uses OIDC discovery; falls back to Keycloak's paths when discovery answers
        404. Every other failure raises ZevvyConnectionError.
        """
        if self._endpoints is not None:
            return self._endpoints
        fallback = Endpoints(
            device_authorization_endpoint=str(
                self._issuer.joinpath("protocol", "openid-connect", "auth", "device")
            ),
            token_endpoint=str(
                self._issuer.joinpath("protocol", "openid-connect", "token")
            ),
        )
        url = self._issuer.joinpath(".well-known", "openid-configuration")
        response = await _request(self._session, self._request_timeout, "GET", url)
        if response.status == 404:
            _LOGGER.debug("No OIDC discovery at %s, using Keycloak paths", url)
            endpoints = fallback
        elif response.status != 200 or not isinstance(response.data, dict):
            raise ZevvyConnectionError(
                f"OIDC discovery at {url.host} failed with HTTP {response.status}"
            )
        else:
            endpoints = Endpoints(
                device_authorization_endpoint=_get_str(
                    response.data, "device_authorization_endpoint"
                )
                or fallback.device_authorization_endpoint,
                token_endpoint=_get_str(response.data, "token_endpoint")
                or fallback.token_endpoint,
            )
        self._endpoints = endpoints
        return endpoints

    async def _post_form(self, endpoint: str, form: Mapping[str, str]) -> _Response:
        """POST a form with the client credentials to an OAuth endpoint."""
        return await _request(
            self._session,
            self._request_timeout,
            "POST",
            URL(endpoint),
            data={
                **form,
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
        )

    def _raise_for_oauth_error(
        self, response: _Response, secrets: Sequence[str | None]
    ) -> None:
        """Raise for transient errors and rejected client credentials."""
        secrets = (self._client_secret, *secrets)
        _raise_for_transient(response, secrets)
        if response.status == 404:
            raise ZevvyConnectionError(
                "The identity server has no such endpoint (HTTP 404): "
                "check the issuer URL"
            )
        error = _get_str(response.data, "error")
        if response.status == 401 or error in {"invalid_client", "unauthorized_client"}:
            raise ZevvyInvalidClientError(
                "zevvy rejected the client id or client secret: "
                f"{_server_message(response, secrets)}"
            )

    async def request_device_authorization(self) -> DeviceAuthorization:
        """Start a device-flow login (RFC 8628 section 3.1)."""
        endpoints = await self.discover()
        response = await self._post_form(
            endpoints.device_authorization_endpoint, {"scope": SCOPES}
        )
        self._raise_for_oauth_error(response, ())
        data = response.data
        device_code = _get_str(data, "device_code")
        if response.status != 200 or device_code is None:
            raise ZevvyResponseError(
                response.status,
                _server_message(response, (self._client_secret, device_code)),
            )
        user_code = _get_str(data, "user_code")
        verification_uri = _get_str(data, "verification_uri")
        if user_code is None or verification_uri is None:
            raise ZevvyResponseError(
                response.status, "Incomplete device authorization response"
            )
        expires_in = _get_number(data, "expires_in")
        interval = _get_number(data, "interval")
        return DeviceAuthorization(
            device_code=device_code,
            user_code=user_code,
            verification_uri=verification_uri,
            verification_uri_complete=_get_str(data, "verification_uri_complete")
            or verification_uri,
            expires_in=expires_in
            if expires_in and expires_in > 0
            else DEFAULT_CODE_LIFETIME,
            interval=interval if interval and interval > 0 else DEFAULT_POLL_INTERVAL,
        )

    def _parse_tokens(
        self, response: _Response, previous_refresh_token: str | None
    ) -> Tokens:
        """Read a successful token response."""
        access_token = _get_str(response.data, "access_token")
        refresh_token = (
            _get_str(response.data, "refresh_token") or previous_refresh_token
        )
        if access_token is None or refresh_token is None:
            raise ZevvyResponseError(
                response.status,
                "The token response lacks the access or refresh token",
            )
        expires_in = _get_number(response.data, "expires_in")
        return Tokens(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_in=expires_in
            if expires_in is not None and expires_in > 0
            else DEFAULT_ACCESS_TOKEN_LIFETIME,
        )

    async def poll_token(self, device_code: str) -> Tokens:
        """Ask once whether the user approved the login (RFC 8628 section 3.4).

        Returns the tokens, or raises ZevvyAuthorizationPending, ZevvySlowDown,
        ZevvyAccessDenied, ZevvyExpiredToken or ZevvyInvalidClientError.
        """
        endpoints = await self.discover()
        response = await self._post_form(
            endpoints.token_endpoint,
            {"grant_type": GRANT_TYPE_DEVICE_CODE, "device_code": device_code},
        )
        secrets = (device_code,)
        self._raise_for_oauth_error(response, secrets)
        if response.status == 200:
            return self._parse_tokens(response, None)
        error = _get_str(response.data, "error")
        message = _server_message(response, (self._client_secret, device_code))
        match error:
            case "authorization_pending":
                raise ZevvyAuthorizationPending(message)
            case "slow_down":
                raise ZevvySlowDown(message)
            case "access_denied":
                raise ZevvyAccessDenied(message)
            case "expired_token":
                raise ZevvyExpiredToken(message)
            case "invalid_grant":
                raise ZevvyDeviceFlowError(
                    f"zevvy no longer accepts this device code: {message}"
                )
        raise ZevvyResponseError(response.status, message)

    async def wait_for_tokens(self, authorization: DeviceAuthorization) -> Tokens:
        """Poll until the user approves, refuses, or the device code expires.

        Waits `interval` seconds before each poll, adds SLOW_DOWN_INCREMENT on
        slow_down, and stops at the first success (polling a used device code again
        may revoke the tokens it produced).
        """
        sleep = self._sleep or asyncio.sleep
        deadline = time.monotonic() + authorization.expires_in
        interval = authorization.interval
        while True:
            await sleep(interval)
            try:
                return await self.poll_token(authorization.device_code)
            except ZevvyAuthorizationPending:
                pass
            except ZevvySlowDown:
                interval += SLOW_DOWN_INCREMENT
                _LOGGER.debug("Device flow: slow_down, interval now %s s", interval)
            if time.monotonic() >= deadline:
                raise ZevvyExpiredToken(
                    "The login code expired before the login was approved"
                )

    async def refresh(self, refresh_token: str) -> Tokens:
        """Get new tokens with a refresh token.

        The returned Tokens carry the new refresh token when the server rotates it,
        else the one passed in. invalid_grant raises ZevvyAuthenticationError.
        """
        endpoints = await self.discover()
        response = await self._post_form(
            endpoints.token_endpoint,
            {"grant_type": GRANT_TYPE_REFRESH_TOKEN, "refresh_token": refresh_token},
        )
        secrets = (refresh_token,)
        self._raise_for_oauth_error(response, secrets)
        if response.status == 200:
            return self._parse_tokens(response, refresh_token)
        message = _server_message(response, (self._client_secret, refresh_token))
        if _get_str(response.data, "error") == "invalid_grant":
            raise ZevvyAuthenticationError(
                f"zevvy rejected the refresh token, log in again: {message}"
            )
        raise ZevvyResponseError(response.status, message)


class TokenManager:
    """Keep a valid access token; refresh one at a time and report rotation."""

    def __init__(
        self,
        auth: ZevvyAuth,
        refresh_token: str,
        on_refresh_token: Callable[[str], None] | None = None,
        refresh_margin: float = TOKEN_REFRESH_MARGIN,
    ) -> None:
        """Initialize with the stored refresh token.

        `on_refresh_token` is called with every new refresh token, before the new
        access token is handed out, so that the caller can persist it.
        """
        self._auth = auth
        self._refresh_token = refresh_token
        self._on_refresh_token = on_refresh_token
        self._refresh_margin = refresh_margin
        self._access_token: str | None = None
        self._refresh_at = 0.0
        self._account: Account | None = None
        self._lock = asyncio.Lock()
        # Finished refresh attempts: callers that waited for the lock share the
        # result (or error) of the attempt that finished meanwhile.
        self._attempts = 0
        self._last_error: ZevvyError | None = None

    def __repr__(self) -> str:
        """Represent without tokens."""
        return f"TokenManager(auth={self._auth!r}, account={self._account!r})"

    @property
    def refresh_token(self) -> str:
        """Return the newest refresh token."""
        return self._refresh_token

    @property
    def account(self) -> Account | None:
        """Return the account of the last access token, if it could be read."""
        return self._account

    def _current(self) -> str | None:
        """Return the access token if it is not near its expiry."""
        if self._access_token is not None and time.monotonic() < self._refresh_at:
            return self._access_token
        return None

    async def async_get_access_token(self) -> str:
        """Return a valid access token, refreshing it when near expiry."""
        if (token := self._current()) is not None:
            return token
        return await self._refresh(force=False, rejected_token=None)

    async def async_force_refresh(self, rejected_token: str | None = None) -> str:
        """Refresh after zevvy rejected an access token (401).

        With `rejected_token`, no refresh happens when another caller already
        replaced that token; concurrent callers share one refresh.
        """
        return await self._refresh(force=True, rejected_token=rejected_token)

    async def _refresh(self, *, force: bool, rejected_token: str | None) -> str:
        """Refresh under the lock; callers that waited share the outcome."""
        attempts = self._attempts
        async with self._lock:
            if isinstance(self._last_error, ZevvyAuthenticationError):
                # The grant is gone: presenting the refresh token again cannot help.
                raise self._last_error
            refreshed_meanwhile = self._attempts != attempts
            if refreshed_meanwhile and self._last_error is not None:
                raise self._last_error
            token = self._current()
            if token is not None:
                if not force:
                    return token
                if rejected_token is not None:
                    if token != rejected_token:
                        return token
                elif refreshed_meanwhile:
                    return token
            return await self._do_refresh()

    async def _do_refresh(self) -> str:
        """Call the token endpoint; the lock is held."""
        self._last_error = None
        try:
            tokens = await self._auth.refresh(self._refresh_token)
        except ZevvyError as err:
            self._last_error = err
            if isinstance(err, ZevvyAuthenticationError):
                self._access_token = None
            raise
        finally:
            # Callers that started waiting during this attempt share its outcome.
            self._attempts += 1
        self._access_token = tokens.access_token
        margin = min(self._refresh_margin, tokens.expires_in / 2)
        self._refresh_at = time.monotonic() + tokens.expires_in - margin
        try:
            self._account = account_from_access_token(tokens.access_token)
        except ZevvyError:
            _LOGGER.debug("Cannot read the account from the access token")
            self._account = None
        if tokens.refresh_token != self._refresh_token:
            self._refresh_token = tokens.refresh_token
            if self._on_refresh_token is not None:
                self._on_refresh_token(tokens.refresh_token)
        return tokens.access_token


# --------------------------------------------------------------------------
# API: measurements
# --------------------------------------------------------------------------


def _reading_json(reading: Reading) -> dict[str, str | float]:
    """Serialize a reading for bulk create."""
    value = float(reading.value)
    if not math.isfinite(value):
        raise ValueError("Reading values must be finite numbers")
    return {
        "readAt": _format_read_at(reading.read_at),
        "value": round(value, READING_DECIMALS),
    }


class ZevvyClient:
    """Post meter readings to the zevvy API."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        tokens: TokenManager,
        api_url: str = DEFAULT_API_URL,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        """Initialize with a session and a token manager."""
        self._session = session
        self._tokens = tokens
        self._api_url = _base_url(api_url)
        self._request_timeout = request_timeout

    def __repr__(self) -> str:
        """Represent without tokens."""
        return f"ZevvyClient(api_url={str(self._api_url)!r})"

    @property
    def api_url(self) -> str:
        """Return the API root (without trailing slash)."""
        return str(self._api_url)

    @property
    def tokens(self) -> TokenManager:
        """Return the token manager."""
        return self._tokens

    def bulk_create_url(self, device_ref: str, register_ref: str) -> URL:
        """Return the bulk-create URL, references escaped as single path segments.

        Raises ValueError for an empty reference or one containing '/' (the caller
        replaces slashes) or being '.' or '..'.
        """
        return self._api_url.joinpath(
            "deviceRef",
            _check_ref("device_ref", device_ref),
            "registerRef",
            _check_ref("register_ref", register_ref),
            "measurements",
            "_bulk_create",
            encoded=True,
        )

    async def bulk_create(
        self, device_ref: str, register_ref: str, readings: Sequence[Reading]
    ) -> BulkResult:
        """Send readings in batches of MAX_BATCH; return what was created.

        A 409 on a batch of several readings splits it in halves, which are sent
        again: zevvy may store nothing of a batch that holds a single known
        reading. A 409 on a single reading counts it as already present.
        """
        url = self.bulk_create_url(device_ref, register_ref)
        payload = [_reading_json(reading) for reading in readings]
        batch_size = max(1, MAX_BATCH)
        result = BulkResult(created=0, already_present=0)
        for start in range(0, len(payload), batch_size):
            result += await self._send_batch(url, payload[start : start + batch_size])
        return result

    async def _send_batch(
        self, url: URL, batch: list[dict[str, str | float]]
    ) -> BulkResult:
        """Send one batch; on 409 split it until single readings conflict."""
        response = await self._post_authorized(url, batch)
        count = len(batch)
        if response.status == 409:
            if count == 1:
                return BulkResult(created=0, already_present=1)
            half = count // 2
            first = await self._send_batch(url, batch[:half])
            return first + await self._send_batch(url, batch[half:])
        created = _get_number(response.data, "created")
        if created is None or not created.is_integer() or not 0 <= created <= count:
            created = count
        return BulkResult(created=int(created), already_present=count - int(created))

    async def _post_authorized(
        self, url: URL, batch: list[dict[str, str | float]]
    ) -> _Response:
        """POST with a bearer token; refresh once after a 401; map errors."""
        token = await self._tokens.async_get_access_token()
        response = await self._post(url, batch, token)
        if response.status == 401:
            token = await self._tokens.async_force_refresh(token)
            response = await self._post(url, batch, token)
            if response.status == 401:
                raise ZevvyAuthenticationError(
                    "zevvy rejected the access token right after a refresh"
                )
        secrets = (token,)
        _raise_for_transient(response, secrets)
        if 200 <= response.status < 300 or response.status == 409:
            return response
        message = _server_message(response, secrets)
        if response.status in {400, 422}:
            raise ZevvyRejectedError(response.status, message)
        raise ZevvyResponseError(response.status, message)

    async def _post(
        self, url: URL, batch: list[dict[str, str | float]], token: str
    ) -> _Response:
        """POST one batch."""
        return await _request(
            self._session,
            self._request_timeout,
            "POST",
            url,
            json_body=batch,
            headers={"Authorization": f"Bearer {token}"},
        )
