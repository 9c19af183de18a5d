"""Login to zevvy's identity server: discovery, device flow, refresh, tokens.

Speaks OAuth 2.0 with zevvy's Keycloak realm: the RFC 8628 device authorization
grant for the login and refresh tokens afterwards. TokenManager keeps an access
token valid for the measurement client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
import logging
import time

import aiohttp
from yarl import URL

from ._http import (
    Response,
    base_url,
    get_number,
    get_str,
    raise_for_transient,
    request,
    server_message,
)
from .account import account_from_claims, account_from_tokens
from .const import (
    DEFAULT_ACCESS_TOKEN_LIFETIME,
    DEFAULT_CODE_LIFETIME,
    DEFAULT_ISSUER,
    DEFAULT_POLL_INTERVAL,
    GRANT_TYPE_DEVICE_CODE,
    GRANT_TYPE_REFRESH_TOKEN,
    REQUEST_TIMEOUT,
    SCOPES,
    SLOW_DOWN_INCREMENT,
    TOKEN_REFRESH_MARGIN,
)
from .exceptions import (
    ZevvyAccessDenied,
    ZevvyAccountError,
    ZevvyAuthenticationError,
    ZevvyAuthorizationPending,
    ZevvyConnectionError,
    ZevvyDeviceFlowError,
    ZevvyError,
    ZevvyExpiredToken,
    ZevvyInvalidClientError,
    ZevvyResponseError,
    ZevvySlowDown,
)
from .models import Account, DeviceAuthorization, Endpoints, Tokens

_LOGGER = logging.getLogger(__name__)


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
        self._issuer = base_url(issuer)
        self._request_timeout = request_timeout
        self._sleep = sleep
        self._endpoints: Endpoints | None = None

    def __repr__(self) -> str:
        """Represent without the client secret."""
        return f"ZevvyAuth(issuer={str(self._issuer)!r}, client_id={self._client_id!r})"

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
        response = await request(self._session, self._request_timeout, "GET", url)
        if response.status == 404:
            _LOGGER.debug("No OIDC discovery at %s, using Keycloak paths", url)
            endpoints = fallback
        elif response.status != 200 or not isinstance(response.data, dict):
            raise ZevvyConnectionError(
                f"OIDC discovery at {url.host} failed with HTTP {response.status}"
            )
        else:
            endpoints = Endpoints(
                device_authorization_endpoint=get_str(
                    response.data, "device_authorization_endpoint"
                )
                or fallback.device_authorization_endpoint,
                token_endpoint=get_str(response.data, "token_endpoint")
                or fallback.token_endpoint,
                userinfo_endpoint=get_str(response.data, "userinfo_endpoint"),
                issuer=get_str(response.data, "issuer"),
            )
        self._endpoints = endpoints
        return endpoints

    async def _post_form(self, endpoint: str, form: Mapping[str, str]) -> Response:
        """POST a form with the client credentials to an OAuth endpoint."""
        return await request(
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
        self, response: Response, secrets: Sequence[str | None]
    ) -> None:
        """Raise for transient errors and rejected client credentials."""
        secrets = (self._client_secret, *secrets)
        raise_for_transient(response, secrets)
        if response.status == 404:
            raise ZevvyConnectionError(
                "The identity server has no such endpoint (HTTP 404): "
                "check the issuer URL"
            )
        error = get_str(response.data, "error")
        if response.status == 401 or error in {"invalid_client", "unauthorized_client"}:
            raise ZevvyInvalidClientError(
                "zevvy rejected the client id or client secret: "
                f"{server_message(response, secrets)}"
            )

    async def request_device_authorization(self) -> DeviceAuthorization:
        """Start a device-flow login (RFC 8628 section 3.1)."""
        endpoints = await self.discover()
        response = await self._post_form(
            endpoints.device_authorization_endpoint, {"scope": SCOPES}
        )
        self._raise_for_oauth_error(response, ())
        data = response.data
        device_code = get_str(data, "device_code")
        if response.status != 200 or device_code is None:
            raise ZevvyResponseError(
                response.status,
                server_message(response, (self._client_secret, device_code)),
            )
        user_code = get_str(data, "user_code")
        verification_uri = get_str(data, "verification_uri")
        if user_code is None or verification_uri is None:
            raise ZevvyResponseError(
                response.status, "Incomplete device authorization response"
            )
        expires_in = get_number(data, "expires_in")
        interval = get_number(data, "interval")
        return DeviceAuthorization(
            device_code=device_code,
            user_code=user_code,
            verification_uri=verification_uri,
            verification_uri_complete=get_str(data, "verification_uri_complete")
            or verification_uri,
            expires_in=expires_in
            if expires_in and expires_in > 0
            else DEFAULT_CODE_LIFETIME,
            interval=interval if interval and interval > 0 else DEFAULT_POLL_INTERVAL,
        )

    def _parse_tokens(
        self, response: Response, previous_refresh_token: str | None
    ) -> Tokens:
        """Read a successful token response."""
        access_token = get_str(response.data, "access_token")
        refresh_token = (
            get_str(response.data, "refresh_token") or previous_refresh_token
        )
        if access_token is None or refresh_token is None:
            raise ZevvyResponseError(
                response.status,
                "The token response lacks the access or refresh token",
            )
        expires_in = get_number(response.data, "expires_in")
        return Tokens(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_in=expires_in
            if expires_in is not None and expires_in > 0
            else DEFAULT_ACCESS_TOKEN_LIFETIME,
            id_token=get_str(response.data, "id_token"),
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
        error = get_str(response.data, "error")
        message = server_message(response, (self._client_secret, device_code))
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
        message = server_message(response, (self._client_secret, refresh_token))
        if get_str(response.data, "error") == "invalid_grant":
            raise ZevvyAuthenticationError(
                f"zevvy rejected the refresh token, log in again: {message}"
            )
        raise ZevvyResponseError(response.status, message)

    def account_from_tokens(self, tokens: Tokens) -> Account | None:
        """Return the account the tokens name, without a request (else None)."""
        issuer = self._endpoints.issuer if self._endpoints else None
        return account_from_tokens(tokens, issuer or str(self._issuer), self._client_id)

    async def async_account(self, tokens: Tokens) -> Account:
        """Return the account of a login; ask the userinfo endpoint if needed.

        Raises ZevvyAccountError when nothing names the account, and
        ZevvyConnectionError when the userinfo endpoint cannot be reached.
        """
        if (account := self.account_from_tokens(tokens)) is not None:
            return account
        endpoints = await self.discover()
        if endpoints.userinfo_endpoint is not None:
            response = await request(
                self._session,
                self._request_timeout,
                "GET",
                URL(endpoints.userinfo_endpoint),
                headers={"Authorization": f"Bearer {tokens.access_token}"},
            )
            raise_for_transient(response, (tokens.access_token,))
            if response.status == 200 and (
                account := account_from_claims(response.data)
            ):
                return account
            _LOGGER.debug("userinfo answered HTTP %s", response.status)
        raise ZevvyAccountError(
            "The identity server named no account: the access token is not a JWT, "
            "and neither an ID token nor the userinfo endpoint named one"
        )


class TokenManager:
    """Keep a valid access token; refresh one at a time and report rotation."""

    def __init__(
        self,
        auth: ZevvyAuth,
        refresh_token: str,
        on_refresh_token: Callable[[str], Awaitable[None]] | None = None,
        refresh_margin: float = TOKEN_REFRESH_MARGIN,
    ) -> None:
        """Initialize with the stored refresh token.

        `on_refresh_token` is awaited with every new refresh token before the new
        access token is handed out, so that the caller can write it to disk first:
        a provider that revokes a login when an old refresh token comes back
        (Keycloak) would otherwise end the login after a crash at that moment.
        When it raises a ZevvyError (the token could not be saved), that error
        is the refresh's: the new access token is not used, and the next
        attempt refreshes (and saves) again.
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
            if tokens.refresh_token != self._refresh_token:
                # The old one is spent at the server: the next attempt
                # presents the new one, even if it could not be saved.
                self._refresh_token = tokens.refresh_token
                if self._on_refresh_token is not None:
                    # Raises a ZevvyError when it cannot save: the new
                    # access token is then not used.
                    await self._on_refresh_token(tokens.refresh_token)
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
        await self._async_update_account(tokens)
        return tokens.access_token

    async def _async_update_account(self, tokens: Tokens) -> None:
        """Remember the account; ask userinfo only while it is unknown."""
        account = self._auth.account_from_tokens(tokens)
        if account is None and self._account is None:
            try:
                account = await self._auth.async_account(tokens)
            except ZevvyError as err:
                _LOGGER.debug("The account of the login is unknown: %s", err)
        if account is not None:
            self._account = account
