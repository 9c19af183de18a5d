"""Plain data types of the zevvy sandbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

type FaultTarget = Literal["api", "token", "device", "discovery", "any"]
FAULT_TARGETS: Final[frozenset[str]] = frozenset(
    {"api", "token", "device", "discovery", "any"}
)

# Scopes the sandbox knows; zevvy's own are the last four.
KNOWN_SCOPES: Final[tuple[str, ...]] = (
    "openid",
    "profile",
    "email",
    "offline_access",
    "measurement",
    "register",
    "device",
)
DEFAULT_SCOPE: Final = "offline_access measurement register device"


@dataclass
class SandboxConfig:
    """Settings of a sandbox; mutable, read whenever they are needed.

    Values are read when a device code or token is issued, so a change applies to
    the next one.
    """

    client_id: str = "zevvy-sandbox"
    client_secret: str = "sandbox-secret"
    # Seconds a client must wait between two polls of a device code.
    interval: float = 5.0
    # Seconds a device code stays valid.
    code_lifetime: float = 600.0
    # Seconds an access token stays valid.
    access_token_lifetime: float = 300.0
    # The account a device code is approved for unless approve() overrides it.
    sub: str = "8d3c1f52-6a0e-4b7d-9c2e-5f4a3b2c1d0e"
    username: str | None = "demo"
    email: str | None = "demo@example.ch"
    # Keycloak realm: the issuer is {url}/realms/{realm}.
    realm: str = "zevvy"
    # Seconds added to a device code's interval on every slow_down. RFC 8628 says
    # 5; 0 keeps tests fast and still answers slow_down to polls that come early.
    slow_down_increment: float = 0.0
    # Scope granted when the client asks for none.
    default_scope: str = DEFAULT_SCOPE
    # Most readings one bulk-create request may carry (None: no limit).
    max_batch: int | None = None
    # Root URL to announce (issuer, verification_uri) instead of the one each
    # request came in on, e.g. when Home Assistant runs in a container.
    public_url: str | None = None


@dataclass(frozen=True)
class StoredReading:
    """A reading the measurement API accepted."""

    device_ref: str
    register_ref: str
    read_at: str
    value: float


@dataclass(frozen=True)
class RequestRecord:
    """A request the sandbox answered; status 0 = connection dropped."""

    method: str
    path: str
    status: int


@dataclass(frozen=True)
class IssuedTokens:
    """Tokens issued directly through the Python API (no device flow)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: float


@dataclass
class Fault:
    """An injected fault for the next `count` requests matching `target`."""

    status: int | None = 503
    count: int = 1
    retry_after: float | None = None
    delay: float = 0.0
    drop: bool = False
    target: FaultTarget = "api"
    # JSON body to answer instead of the default error body.
    body: dict[str, object] | None = None
