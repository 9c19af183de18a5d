"""Constants for the zevvy integration.

This module has no Home Assistant imports so that the API client (api.py) can
use it unchanged outside Home Assistant.
"""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "zevvy"
LOGGER = logging.getLogger(__package__)

# Production servers (see ZEVVY_API.md).
DEFAULT_ISSUER: Final = "https://iam.zevvy.org/realms/zevvy-prod"
DEFAULT_API_URL: Final = "https://api.zevvy.org"
SCOPES: Final = "offline_access measurement register device"

# Config entry data keys.
CONF_CLIENT_ID: Final = "client_id"
CONF_CLIENT_SECRET: Final = "client_secret"
CONF_ISSUER: Final = "issuer"
CONF_API_URL: Final = "api_url"
CONF_REFRESH_TOKEN: Final = "refresh_token"

# Meter subentries.
SUBENTRY_TYPE_METER: Final = "meter"
CONF_ENTITY_REGISTRY_ID: Final = "entity_registry_id"
CONF_ENTITY_ID: Final = "entity_id"
CONF_DEVICE_REF: Final = "device_ref"
CONF_REGISTER_REF: Final = "register_ref"

# HTTP.
REQUEST_TIMEOUT: Final = 30.0
# Refresh the access token this many seconds before it expires.
TOKEN_REFRESH_MARGIN: Final = 60.0
# Device flow: seconds added to the polling interval on slow_down (RFC 8628).
SLOW_DOWN_INCREMENT: Final = 5.0

# Readings.
# kWh with Wh resolution.
READING_DECIMALS: Final = 3
# Quarter-hour collection slots, in minutes.
COLLECT_INTERVAL_MINUTES: Final = 15
# Readings per bulk-create request (zevvy's limit is unknown).
MAX_BATCH: Final = 500
# Bulk-create requests in flight at once.
PARALLEL_UPLOADS: Final = 4
# Readings kept in the outbox at most: 60 days of quarter hours for 100 meters.
OUTBOX_MAX_READINGS: Final = 60 * 96 * 100

# Retry backoff for transient zevvy errors, in seconds.
BACKOFF_INITIAL: Final = 30.0
BACKOFF_MAX: Final = 30 * 60.0

# Gap fill at Home Assistant start: seconds to wait after the start so that the
# recorder has compiled the statistics it missed (it does so once started).
GAP_FILL_STARTUP_DELAY: Final = 120.0
