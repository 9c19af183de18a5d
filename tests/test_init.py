"""Tests for setting up and unloading a zevvy config entry (login and tokens)."""

from __future__ import annotations

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy.const import CONF_ISSUER, CONF_REFRESH_TOKEN, DOMAIN
from zevvy_sandbox import ZevvySandbox


async def test_setup_and_unload(
    hass: HomeAssistant, sandbox: ZevvySandbox, mock_config_entry: MockConfigEntry
) -> None:
    """Setup logs in with the stored refresh token; unload leaves nothing running."""
    first_token = mock_config_entry.data[CONF_REFRESH_TOKEN]
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.LOADED

    runtime = mock_config_entry.runtime_data
    assert runtime.tokens.account is not None
    assert runtime.tokens.account.sub == sandbox.config.sub
    assert runtime.tokens.account.title == "demo"
    assert (
        repr(runtime.coordinator.client) == f"ZevvyClient(api_url={sandbox.api_url!r})"
    )
    # The sandbox rotates refresh tokens: the new one is stored at once.
    assert mock_config_entry.data[CONF_REFRESH_TOKEN] != first_token
    assert mock_config_entry.data[CONF_REFRESH_TOKEN] == runtime.tokens.refresh_token

    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.NOT_LOADED
    # The test plugin fails the test on timers or tasks left behind.


async def test_rotated_token_saved_without_reload(
    hass: HomeAssistant, sandbox: ZevvySandbox, init_integration: MockConfigEntry
) -> None:
    """Every later rotation is saved too, without reloading the entry."""
    entry = init_integration
    runtime = entry.runtime_data
    before = entry.data[CONF_REFRESH_TOKEN]

    await runtime.tokens.async_force_refresh()
    await hass.async_block_till_done()

    assert entry.data[CONF_REFRESH_TOKEN] != before
    assert entry.data[CONF_REFRESH_TOKEN] == runtime.tokens.refresh_token
    # Still the same runtime data: no reload happened.
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data is runtime
    # The old token was replaced for good: zevvy no longer accepts it.
    grant = next(grant for grant in sandbox.grants() if not grant.revoked)
    assert grant.refresh_token == entry.data[CONF_REFRESH_TOKEN]
    assert before in grant.used_refresh_tokens


async def test_stored_token_survives_restart(
    hass: HomeAssistant, sandbox: ZevvySandbox, init_integration: MockConfigEntry
) -> None:
    """After a reload the entry logs in with the token saved last."""
    entry = init_integration
    saved = entry.data[CONF_REFRESH_TOKEN]
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.data[CONF_REFRESH_TOKEN] != saved
    # No grant was revoked by presenting an old token.
    assert not any(grant.revoked for grant in sandbox.grants())


async def test_not_ready_when_unreachable(
    hass: HomeAssistant,
    sandbox: ZevvySandbox,
    mock_config_entry: MockConfigEntry,
    closed_port_url: str,
) -> None:
    """An unreachable identity server makes Home Assistant retry later."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=mock_config_entry.title,
        unique_id=mock_config_entry.unique_id,
        data={**mock_config_entry.data, CONF_ISSUER: closed_port_url},
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.error_reason_translation_key == "cannot_connect"
    assert not hass.config_entries.flow.async_progress()


async def test_not_ready_on_server_error(
    hass: HomeAssistant, sandbox: ZevvySandbox, mock_config_entry: MockConfigEntry
) -> None:
    """A 5xx of the token endpoint keeps the stored token and retries later."""
    token = mock_config_entry.data[CONF_REFRESH_TOKEN]
    sandbox.inject_fault(status=503, count=1, target="token")
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
    assert mock_config_entry.data[CONF_REFRESH_TOKEN] == token


async def test_auth_failed_starts_reauth(
    hass: HomeAssistant, sandbox: ZevvySandbox, mock_config_entry: MockConfigEntry
) -> None:
    """A revoked refresh token fails the setup and asks the user to log in again."""
    sandbox.revoke_refresh_tokens()
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    assert mock_config_entry.state is ConfigEntryState.SETUP_ERROR
    assert mock_config_entry.error_reason_translation_key == "authentication_failed"
    flows = hass.config_entries.flow.async_progress()
    assert len(flows) == 1
    assert flows[0]["context"]["source"] == SOURCE_REAUTH
    assert flows[0]["context"]["entry_id"] == mock_config_entry.entry_id
    assert flows[0]["step_id"] == "reauth_confirm"

    # Logging in again brings the entry back.
    result = await hass.config_entries.flow.async_configure(flows[0]["flow_id"], {})
    sandbox.approve(result["description_placeholders"]["user_code"])
    await hass.async_block_till_done()
    result = await hass.config_entries.flow.async_configure(result["flow_id"])
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.LOADED
