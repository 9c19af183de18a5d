"""Asynchronous client for zevvy: device-flow login, tokens and bulk readings.

This package has no Home Assistant imports. It speaks OAuth 2.0 (RFC 8628 device
authorization grant, refresh tokens) with zevvy's Keycloak realm and posts meter
readings to the zevvy API.

Secrets (client secret, access and refresh tokens, device codes) never appear in
exception messages, log records or the ``repr`` of its classes.
"""

from __future__ import annotations

from .account import account_from_access_token
from .auth import TokenManager, ZevvyAuth
from .client import ZevvyClient, check_reference, is_valid_reference
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
from .exceptions import (
    ZevvyAccessDenied,
    ZevvyAccountError,
    ZevvyAuthenticationError,
    ZevvyAuthorizationPending,
    ZevvyConflictError,
    ZevvyConnectionError,
    ZevvyDeviceFlowError,
    ZevvyError,
    ZevvyExpiredToken,
    ZevvyInvalidClientError,
    ZevvyLoginRefusedError,
    ZevvyMeasurementsError,
    ZevvyRateLimitError,
    ZevvyRegisterRejectedError,
    ZevvyRejectedError,
    ZevvyResponseError,
    ZevvySlowDown,
)
from .models import Account, DeviceAuthorization, Endpoints, Reading, Tokens

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_ISSUER",
    "MAX_BATCH",
    "READING_DECIMALS",
    "REQUEST_TIMEOUT",
    "SCOPES",
    "SLOW_DOWN_INCREMENT",
    "TOKEN_REFRESH_MARGIN",
    "Account",
    "DeviceAuthorization",
    "Endpoints",
    "Reading",
    "TokenManager",
    "Tokens",
    "ZevvyAccessDenied",
    "ZevvyAccountError",
    "ZevvyAuth",
    "ZevvyAuthenticationError",
    "ZevvyAuthorizationPending",
    "ZevvyClient",
    "ZevvyConflictError",
    "ZevvyConnectionError",
    "ZevvyDeviceFlowError",
    "ZevvyError",
    "ZevvyExpiredToken",
    "ZevvyInvalidClientError",
    "ZevvyLoginRefusedError",
    "ZevvyMeasurementsError",
    "ZevvyRateLimitError",
    "ZevvyRegisterRejectedError",
    "ZevvyRejectedError",
    "ZevvyResponseError",
    "ZevvySlowDown",
    "account_from_access_token",
    "check_reference",
    "is_valid_reference",
]
