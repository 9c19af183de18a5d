"""HTTP plumbing shared by the auth and measurement clients (private).

One request helper maps transport failures to ZevvyConnectionError; the other
helpers read JSON members, server messages and Retry-After headers, and keep
secrets out of every message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
import json
import logging
import math
from typing import Final

import aiohttp
from yarl import URL

from .const import MAX_MESSAGE_LENGTH
from .exceptions import ZevvyConnectionError, ZevvyRateLimitError

_LOGGER = logging.getLogger(__name__)

_REDACTED: Final = "**REDACTED**"


@dataclass(frozen=True)
class Response:
    """A read HTTP response: status, Retry-After and the JSON body if any."""

    status: int
    retry_after: str | None
    data: object
    text: str


def sanitize(text: str, secrets: Sequence[str | None] = ()) -> str:
    """Remove secrets from a server-provided text and cut it to a sane length."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 1] + "…"
    return text


def get_str(data: object, key: str) -> str | None:
    """Return a non-empty string member of a JSON object, else None."""
    if isinstance(data, dict):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def get_number(data: object, key: str) -> float | None:
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


def server_message(response: Response, secrets: Sequence[str | None] = ()) -> str:
    """Extract a readable message from an error response."""
    message = None
    for key in ("message", "error_description", "detail", "error"):
        message = get_str(response.data, key)
        if message is not None:
            break
    if message is None:
        message = response.text.strip() or f"HTTP {response.status}"
    return sanitize(message, secrets)


def parse_retry_after(value: str | None) -> float | None:
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


def raise_for_transient(response: Response, secrets: Sequence[str | None]) -> None:
    """Raise ZevvyRateLimitError on 429 and ZevvyConnectionError on 5xx."""
    if response.status == 429:
        retry_after = parse_retry_after(response.retry_after)
        raise ZevvyRateLimitError(
            f"zevvy is rate limiting requests: {server_message(response, secrets)}",
            retry_after,
        )
    if response.status >= 500:
        raise ZevvyConnectionError(
            f"zevvy answered HTTP {response.status}: "
            f"{server_message(response, secrets)}"
        )


def base_url(url: str) -> URL:
    """Parse a configured base URL, with or without a trailing slash."""
    return URL(url.strip().rstrip("/"))


async def request(
    session: aiohttp.ClientSession,
    request_timeout: float,
    method: str,
    url: URL,
    *,
    data: Mapping[str, str] | None = None,
    json_body: object = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
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
    return Response(status=status, retry_after=retry_after, data=body, text=text)
