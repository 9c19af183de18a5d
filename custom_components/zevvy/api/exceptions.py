"""Errors of the zevvy client; their messages never carry secrets."""

from __future__ import annotations

from datetime import datetime


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


class ZevvyAccountError(ZevvyError):
    """The identity server named no account: no token claims, no userinfo."""


class ZevvyResponseError(ZevvyError):
    """zevvy answered with an unexpected status or an unusable body."""

    def __init__(self, status: int, message: str) -> None:
        """Store the HTTP status and the (sanitized) server message."""
        super().__init__(f"zevvy answered HTTP {status}: {message}")
        self.status = status
        self.message = message


class ZevvyLoginRefusedError(ZevvyResponseError):
    """zevvy's API answered 401 to an access token the token endpoint had just
    issued: the login itself still works (the refresh succeeded), so this is no
    reason to log in again. An account-wide error, retried with backoff.
    """

    def __init__(self, message: str) -> None:
        """Store the (sanitized) server message."""
        super().__init__(401, message)


class ZevvyMeasurementsError(ZevvyResponseError):
    """zevvy refused a bulk-create request with a 4xx other than 401 and 429.

    It is about this request or its register, not the account: 400/422 (invalid
    readings, ``ZevvyRejectedError``), 409 (readings zevvy has already,
    ``ZevvyConflictError``), 413 (too many readings at once), 403, 404 and the
    like (the register).
    """


class ZevvyRejectedError(ZevvyMeasurementsError):
    """zevvy rejected the readings as invalid (400 or 422)."""


class ZevvyRegisterRejectedError(ZevvyMeasurementsError):
    """400/422 about the register, not its readings: the oldest and the newest
    reading of a batch, each on its own, got the same answer as the batch.
    Raised by the delivery (not the client) so that the register is set aside
    with its readings kept.
    """


class ZevvyConflictError(ZevvyMeasurementsError):
    """409: zevvy already has some readings of the request.

    ``conflicts`` holds the times zevvy named as present (None when its answer
    names none). Whether zevvy stored the request's other readings is not known:
    a server may store none of them, or all new ones, and answer 409 either way.
    """

    def __init__(self, message: str, conflicts: tuple[datetime, ...] | None) -> None:
        """Store the server message and the conflicting times, if named."""
        super().__init__(409, message)
        self.conflicts = conflicts


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
