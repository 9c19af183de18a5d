"""Constants for the zevvy integration.

Those of the zevvy client (servers, batch size, decimals) come from the api
package, which knows nothing of the integration.
"""

from __future__ import annotations

import logging
from typing import Final

from .api import const as api_const

DOMAIN: Final = "zevvy"
LOGGER = logging.getLogger(__package__)

# The zevvy client's: production servers, readings per request, kWh decimals.
DEFAULT_ISSUER: Final = api_const.DEFAULT_ISSUER
DEFAULT_API_URL: Final = api_const.DEFAULT_API_URL
MAX_BATCH: Final = api_const.MAX_BATCH
READING_DECIMALS: Final = api_const.READING_DECIMALS

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
# What a meter measures (``meters.MeterKind``: energy, water, gas); a subentry
# stored before kinds existed has none and is an energy meter.
CONF_KIND: Final = "kind"
# Where a meter's reading comes from (``running_total.py``): the sensor's value
# (a meter register) or a running total of what the sensor counted since the
# meter's start (sensors that restart from zero), with its start value (kWh) and
# start (epoch seconds of a quarter hour).
CONF_READING_SOURCE: Final = "reading_source"
SOURCE_SENSOR: Final = "sensor"
SOURCE_RUNNING_TOTAL: Final = "running_total"
CONF_START_VALUE: Final = "start_value"
CONF_START_AT: Final = "start_at"
# Continuing a meter register's series: the sensor's value at ``start_at`` (the
# last reading zevvy received), so that a reset since is counted.
CONF_START_SEED: Final = "start_seed"

# Readings.
# Quarter-hour collection slots, in minutes.
COLLECT_INTERVAL_MINUTES: Final = 15
# Bulk-create requests in flight at once.
PARALLEL_UPLOADS: Final = 4
# Readings kept in the outbox at most: 60 days of quarter hours for 100 meters.
OUTBOX_MAX_READINGS: Final = 60 * 96 * 100

# Retry backoff for transient zevvy errors, in seconds.
BACKOFF_INITIAL: Final = 30.0
BACKOFF_MAX: Final = 30 * 60.0
# Retry backoff of one register zevvy refused (403, 404, ...), in seconds; the
# other registers keep their schedule meanwhile.
REGISTER_BACKOFF_INITIAL: Final = 15 * 60.0
REGISTER_BACKOFF_MAX: Final = 2 * 3600.0

# Gap fill at Home Assistant start: seconds to wait after the start so that the
# recorder has compiled the statistics it missed (it does so once started).
GAP_FILL_STARTUP_DELAY: Final = 120.0
# Gap fill when the recorder has not compiled the 5-minute statistics up to the
# last quarter hour yet: look again after each of its next compiles (every 5
# minutes), this many times at most.
GAP_FILL_RETRIES: Final = 3

# Actions: the largest meter reading accepted (1 TWh; no community meter comes
# near it, but a wrong unit or a typo does), and the first year a reading may be
# for (older times are typos; years below 1000 cannot even be written as readAt).
MAX_READING_KWH: Final = 1e9
EARLIEST_READING_YEAR: Final = 2000
