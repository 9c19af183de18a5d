"""Defaults and limits of the zevvy client."""

from __future__ import annotations

from typing import Final

# Production servers.
DEFAULT_ISSUER: Final = "https://iam.zevvy.org/realms/zevvy-prod"
DEFAULT_API_URL: Final = "https://api.zevvy.org"
# openid: an ID token (or the userinfo endpoint) names the account also when the
# access token is opaque.
SCOPES: Final = "openid offline_access measurement register device"

# Seconds one HTTP request may take.
REQUEST_TIMEOUT: Final = 30.0
# Refresh the access token this many seconds before it expires.
TOKEN_REFRESH_MARGIN: Final = 60.0
# Device flow: seconds added to the polling interval on slow_down (RFC 8628).
SLOW_DOWN_INCREMENT: Final = 5.0
# RFC 8628 section 3.2: default polling interval when the server names none.
DEFAULT_POLL_INTERVAL: Final = 5.0
# Device-code lifetime assumed when the server names none (Keycloak's default).
DEFAULT_CODE_LIFETIME: Final = 600.0
# Access-token lifetime assumed when the server names none (Keycloak's default).
DEFAULT_ACCESS_TOKEN_LIFETIME: Final = 300.0

GRANT_TYPE_DEVICE_CODE: Final = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPE_REFRESH_TOKEN: Final = "refresh_token"

# Readings per bulk-create request (zevvy's limit is unknown).
MAX_BATCH: Final = 500
# Reading values are kWh with Wh resolution.
READING_DECIMALS: Final = 3

# Server messages carried in exceptions are cut to this many characters.
MAX_MESSAGE_LENGTH: Final = 200
