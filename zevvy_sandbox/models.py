"""Plain data types of the zevvy sandbox."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
import types
from typing import (
    Any,
    Final,
    Literal,
    TypeAliasType,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

type FaultTarget = Literal["api", "token", "device", "discovery", "userinfo", "any"]
FAULT_TARGETS: Final[frozenset[str]] = frozenset(
    {"api", "token", "device", "discovery", "userinfo", "any"}
)

# What a bulk-create batch holding already stored readings does (zevvy's real
# behaviour is unknown): "all_or_nothing" stores nothing of it, "partial" stores
# its new readings; both answer 409.
type ConflictMode = Literal["all_or_nothing", "partial"]
CONFLICT_MODES: Final[frozenset[str]] = frozenset({"all_or_nothing", "partial"})

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
    # Most readings one bulk-create request may carry (None: no limit); larger
    # batches get max_batch_status (413 Payload Too Large; some APIs say 400/422).
    max_batch: int | None = None
    max_batch_status: int = 413
    # A batch with already stored readings (or a readAt twice) answers 409 and
    # stores nothing ("all_or_nothing") or its new readings ("partial").
    conflict_mode: ConflictMode = "all_or_nothing"
    # Whether the 409 body names the conflicting times:
    # {"message": ..., "conflicts": ["2026-11-26T14:00:00.000Z", ...]}.
    conflict_details: bool = False
    # A batch with an invalid reading (bad readAt, value not a number, negative,
    # or above max_value) is refused as a whole with validation_status (400 or
    # 422); the message names the reading's index and readAt.
    max_value: float | None = None
    validation_status: int = 400
    # Seconds every answer (except the admin API) is delayed, e.g. 0.05 for a
    # real internet link.
    latency: float = 0.0
    # Access tokens are random opaque strings looked up on the server instead of
    # JWTs carrying the account (RFC 6749 allows both).
    opaque_access_tokens: bool = False
    # Token responses carry an OpenID Connect ID token (a JWT with sub,
    # preferred_username, email, iss, aud, exp, iat) when the scope has openid.
    id_tokens: bool = True
    # Discovery lists the userinfo endpoint and it answers (Bearer token with the
    # openid scope -> the account's claims).
    userinfo: bool = True
    # Root URL to announce (issuer, verification_uri) instead of the one each
    # request came in on, e.g. when Home Assistant runs in a container.
    public_url: str | None = None

    def __post_init__(self) -> None:
        """Refuse impossible settings."""
        self.validate()

    def validate(self) -> None:
        """Raise ValueError for an impossible setting."""
        if self.conflict_mode not in CONFLICT_MODES:
            raise ValueError(
                f"conflict_mode must be one of {sorted(CONFLICT_MODES)}, "
                f"got {self.conflict_mode!r}"
            )
        for name in ("max_batch_status", "validation_status"):
            if not 400 <= getattr(self, name) <= 599:
                raise ValueError(f"{name} must be an HTTP error status (400-599)")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if self.latency < 0:
            raise ValueError("latency must not be negative")

    def as_dict(self) -> dict[str, Any]:
        """Return every setting by name (JSON-ready)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def update(self, changes: dict[str, Any]) -> None:
        """Set several settings at once, checking names, types and values.

        Raises ValueError (and changes nothing) for an unknown name, a value of
        the wrong type or an impossible setting. Numbers may be given as ints
        where floats are expected.
        """
        hints = get_type_hints(type(self))
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in hints:
                raise ValueError(f"unknown setting {name!r}")
            if not _fits(hints[name], value):
                raise ValueError(f"setting {name!r} cannot be {value!r}")
            checked[name] = float(value) if hints[name] is float else value
        trial = SandboxConfig(**{**self.as_dict(), **checked})  # validates
        for name in checked:
            setattr(self, name, getattr(trial, name))


def _fits(hint: Any, value: object) -> bool:
    """Return whether `value` (from JSON) fits the type annotation `hint`."""
    if isinstance(hint, TypeAliasType):
        hint = hint.__value__
    origin = get_origin(hint)
    if origin is Literal:
        return value in get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(arg, value) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(hint, type) and isinstance(value, hint)


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
    # Only with the openid scope and config.id_tokens.
    id_token: str | None = field(default=None, repr=False)


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
    # Only bulk-create requests for this device / register (None: any). With
    # either set, the fault matches API requests only.
    device_ref: str | None = None
    register_ref: str | None = None
    # The request is carried out first (a bulk create stores its readings), then
    # answered with the fault or dropped: a gateway's 504 or a lost answer after
    # zevvy stored the readings.
    after: bool = False

    def matches(
        self, target: str, device_ref: str | None, register_ref: str | None
    ) -> bool:
        """Return whether a request to `target` (and refs, for the API) is hit."""
        if self.target not in (target, "any"):
            return False
        if self.device_ref is None and self.register_ref is None:
            return True
        return (
            target == "api"
            and self.device_ref in (None, device_ref)
            and self.register_ref in (None, register_ref)
        )
