"""Post meter readings to the zevvy API, and the one rule for valid references."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
import math
from typing import Final
from urllib.parse import quote

import aiohttp
from yarl import URL

from ._http import Response, base_url, raise_for_transient, request, server_message
from .auth import TokenManager
from .const import DEFAULT_API_URL, READING_DECIMALS, REQUEST_TIMEOUT
from .exceptions import (
    ZevvyConflictError,
    ZevvyLoginRefusedError,
    ZevvyMeasurementsError,
    ZevvyRejectedError,
    ZevvyResponseError,
)
from .models import Reading

# References that URL normalization would remove as dot segments.
_DOT_SEGMENTS: Final = frozenset({".", ".."})


def check_reference(value: str, name: str = "reference") -> str:
    """Return a device or register reference unchanged if zevvy can receive it.

    A reference travels as one URL path segment, so it must not be blank, contain
    "/" (servers decode an escaped slash into a separator), or be "." or ".."
    (dot segments, which URL normalization removes). Anything else arrives as
    given. Raises ValueError naming `name` and the reason.
    """
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    if "/" in value:
        raise ValueError(f"{name} must not contain '/'")
    if value in _DOT_SEGMENTS:
        raise ValueError(f"{name} must not be '.' or '..'")
    return value


def is_valid_reference(value: str) -> bool:
    """Return whether zevvy can receive `value` as a reference (see check_reference)."""
    try:
        check_reference(value)
    except ValueError:
        return False
    return True


def _format_read_at(read_at: datetime) -> str:
    """Format an aware datetime as UTC ISO 8601 with milliseconds and Z."""
    if read_at.tzinfo is None or read_at.utcoffset() is None:
        raise ValueError("Reading times must be timezone-aware")
    utc = read_at.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _reading_json(reading: Reading) -> dict[str, str | float]:
    """Serialize a reading for bulk create."""
    value = float(reading.value)
    if not math.isfinite(value):
        raise ValueError("Reading values must be finite numbers")
    return {
        "readAt": _format_read_at(reading.read_at),
        "value": round(value, READING_DECIMALS),
    }


def _conflicts(data: object) -> tuple[datetime, ...] | None:
    """Return the times a 409 body names as already present, if it names any.

    zevvy's body is not documented; a ``conflicts`` list of ``readAt`` strings
    is read, entries that are no such time are skipped.
    """
    if not isinstance(data, dict) or not isinstance(data.get("conflicts"), list):
        return None
    times: list[datetime] = []
    for item in data["conflicts"]:
        try:
            moment = datetime.fromisoformat(item) if isinstance(item, str) else None
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            times.append(moment)
    return tuple(times)


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
        self._api_url = base_url(api_url)
        self._request_timeout = request_timeout

    def __repr__(self) -> str:
        """Represent without tokens."""
        return f"ZevvyClient(api_url={str(self._api_url)!r})"

    def bulk_create_url(self, device_ref: str, register_ref: str) -> URL:
        """Return the bulk-create URL, references escaped as single path segments.

        Raises ValueError for a reference that check_reference refuses.
        """
        return self._api_url.joinpath(
            "deviceRef",
            quote(check_reference(device_ref, "device_ref"), safe=""),
            "registerRef",
            quote(check_reference(register_ref, "register_ref"), safe=""),
            "measurements",
            "_bulk_create",
            encoded=True,
        )

    async def bulk_create(
        self, device_ref: str, register_ref: str, readings: Sequence[Reading]
    ) -> None:
        """Send readings of one register in one request (none for no readings).

        Returns once zevvy has stored them all (2xx). The caller keeps a request
        within MAX_BATCH readings and decides what to do with an answer that
        refuses it: ZevvyConflictError (409, with the conflicting times when
        zevvy names them), ZevvyRejectedError (400/422) and ZevvyMeasurementsError
        (any other 4xx but 401 and 429) are about this request or register;
        ZevvyAuthenticationError (the login is gone: invalid_grant while
        refreshing), ZevvyLoginRefusedError (401 to a freshly renewed token),
        ZevvyConnectionError (with ZevvyRateLimitError) and ZevvyResponseError
        about the account or the server.
        """
        url = self.bulk_create_url(device_ref, register_ref)
        payload = [_reading_json(reading) for reading in readings]
        if payload:
            await self._post_authorized(url, payload)

    async def _post_authorized(
        self, url: URL, batch: list[dict[str, str | float]]
    ) -> None:
        """POST with a bearer token; refresh once after a 401; map errors."""
        token = await self._tokens.async_get_access_token()
        response = await self._post(url, batch, token)
        if response.status == 401:
            token = await self._tokens.async_force_refresh(token)
            response = await self._post(url, batch, token)
            if response.status == 401:
                # The token endpoint just renewed the login: the API refuses
                # it for another reason (its clock, its audience, a gateway).
                # Not a reason to log in again (that is invalid_grant's).
                raise ZevvyLoginRefusedError(
                    "zevvy's API refused a freshly renewed access token: "
                    + server_message(response, (token,))
                )
        secrets = (token,)
        raise_for_transient(response, secrets)
        if 200 <= response.status < 300:
            return
        message = server_message(response, secrets)
        if response.status == 409:
            raise ZevvyConflictError(message, _conflicts(response.data))
        if response.status in {400, 422}:
            raise ZevvyRejectedError(response.status, message)
        if 400 <= response.status < 500:
            raise ZevvyMeasurementsError(response.status, message)
        raise ZevvyResponseError(response.status, message)

    async def _post(
        self, url: URL, batch: list[dict[str, str | float]], token: str
    ) -> Response:
        """POST one batch."""
        return await request(
            self._session,
            self._request_timeout,
            "POST",
            url,
            json_body=batch,
            headers={"Authorization": f"Bearer {token}"},
        )
