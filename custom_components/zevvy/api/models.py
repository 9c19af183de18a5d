"""What the zevvy servers return and what the client sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Endpoints:
    """The OAuth endpoints of the identity server."""

    device_authorization_endpoint: str
    token_endpoint: str
    # OpenID Connect: where to ask for the account when no token names it.
    userinfo_endpoint: str | None = None
    # The issuer the discovery document names (ID tokens must carry it).
    issuer: str | None = None


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
    # OpenID Connect ID token (with the openid scope), if the server sent one.
    id_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Account:
    """The zevvy account a login belongs to."""

    sub: str
    username: str | None
    email: str | None

    @property
    def title(self) -> str:
        """Return a readable name: username, else email, else the subject id."""
        return self.username or self.email or self.sub


@dataclass(frozen=True, slots=True, init=False)
class Reading:
    """A cumulative meter reading at a point in time (aware datetime)."""

    read_at: datetime
    value: float

    def __init__(self, read_at: datetime, value: float) -> None:
        """Make a reading: its two slots set directly, without the frozen
        ``__setattr__`` a dataclass' own ``__init__`` goes through (a tick
        makes one per meter)."""
        _set_read_at(self, read_at)
        _set_value(self, value)


# The slots' setters (a frozen class refuses its own ``__setattr__``).
_set_read_at: Any = vars(Reading)["read_at"].__set__
_set_value: Any = vars(Reading)["value"].__set__
