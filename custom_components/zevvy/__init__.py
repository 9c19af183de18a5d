"""The zevvy integration: Home Assistant as a meter-reading gateway for zevvy."""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv, device_registry as dr
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.typing import ConfigType

from .api import (
    TokenManager,
    ZevvyAuth,
    ZevvyAuthenticationError,
    ZevvyClient,
    ZevvyError,
)
from .const import (
    CONF_API_URL,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_ISSUER,
    CONF_REFRESH_TOKEN,
    DOMAIN,
)
from .entity import account_device_info
from .gap_fill import async_start_gap_fill
from .helpers import async_on_entry_updated
from .issues import async_delete_entry_issues, async_setup_meter_issues
from .outbox import Outbox
from .pipeline import ReadingPipeline
from .runtime import ZevvyConfigEntry, ZevvyRuntimeData
from .services import async_setup_services
from .token_store import RefreshTokenStore, ZevvyTokenStorageError
from .translation_log import install as install_translation_log_filter

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

# Before any of zevvy's texts is loaded again (see translation_log.py).
install_translation_log_filter()

PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.BUTTON, Platform.SENSOR]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the zevvy actions (once, for every account)."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: ZevvyConfigEntry) -> bool:
    """Set up a zevvy account from a config entry."""
    session = async_get_clientsession(hass)
    auth = ZevvyAuth(
        session,
        entry.data[CONF_CLIENT_ID],
        entry.data[CONF_CLIENT_SECRET],
        entry.data[CONF_ISSUER],
    )

    # The login's newest refresh token, written before each new one is used.
    token_store = RefreshTokenStore(
        hass, entry.entry_id, entry.data[CONF_CLIENT_ID], entry.data[CONF_ISSUER]
    )
    tokens = TokenManager(
        auth,
        await token_store.async_load(entry.data[CONF_REFRESH_TOKEN]),
        on_refresh_token=token_store.async_save,
    )
    try:
        await tokens.async_get_access_token()
    except ZevvyAuthenticationError as err:
        raise ConfigEntryAuthFailed(
            translation_domain=DOMAIN, translation_key="authentication_failed"
        ) from err
    except ZevvyTokenStorageError as err:
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN, translation_key="login_not_saved"
        ) from err
    except ZevvyError as err:
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN, translation_key="cannot_connect"
        ) from err

    client = ZevvyClient(session, tokens, entry.data[CONF_API_URL])
    # Delivery: the persisted outbox and the quarter-hour collector and sender.
    outbox = Outbox(hass, entry.entry_id)
    await outbox.async_load()
    pipeline = ReadingPipeline(hass, entry, client, outbox)
    coordinator = pipeline.coordinator
    await coordinator.async_config_entry_first_refresh()

    entry.runtime_data = ZevvyRuntimeData(
        tokens=tokens, outbox=outbox, pipeline=pipeline, coordinator=coordinator
    )
    # The account's service device; the meters' devices point to it.
    dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, **account_device_info(entry)
    )
    pipeline.async_start()
    entry.async_on_unload(pipeline.async_shutdown)
    # Meters removed as subentries: drop their readings (no reload).
    async_on_entry_updated(hass, entry, pipeline.async_subentries_changed)

    # Meters: repair issues for vanished or ineligible entities, now and
    # whenever the entity registry, the subentries or a meter's unit change.
    async_setup_meter_issues(hass, entry)

    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # Quarter hours missed while the entry was not loaded, from the recorder's
    # statistics; in the background so that it never delays the setup.
    async_start_gap_fill(hass, entry)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: ZevvyConfigEntry) -> bool:
    """Unload a zevvy config entry."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        # Stop ticks, retries and uploads; write the outbox.
        await entry.runtime_data.pipeline.async_stop()
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: ZevvyConfigEntry) -> None:
    """Delete the entry's outbox (readings not yet delivered), login and issues."""
    await Outbox(hass, entry.entry_id).async_remove()
    await RefreshTokenStore(hass, entry.entry_id).async_remove()
    async_delete_entry_issues(hass, entry.entry_id)
