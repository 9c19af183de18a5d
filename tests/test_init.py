"""Tests for setting up and unloading a zevvy config entry (login and tokens)."""

from __future__ import annotations

import json
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy.const import CONF_ISSUER, CONF_REFRESH_TOKEN, DOMAIN
from zevvy_sandbox import ZevvySandbox


def saved_token(hass_storage: dict[str, Any], entry: MockConfigEntry) -> str | None:
    """Return the refresh token Home Assistant's storage holds for the entry."""
    saved = hass_storage.get(f"{DOMAIN}.{entry.entry_id}.login")
    return saved["data"]["refresh_token"] if saved else None


async def test_setup_and_unload(
    hass: HomeAssistant,
    sandbox: ZevvySandbox,
    mock_config_entry: MockConfigEntry,
    hass_storage: dict[str, Any],
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
    # The sandbox rotates refresh tokens: the new one is on disk at once.
    assert runtime.tokens.refresh_token != first_token
    assert saved_token(hass_storage, mock_config_entry) == runtime.tokens.refresh_token

    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.NOT_LOADED
    # The test plugin fails the test on timers or tasks left behind.


async def test_rotated_token_saved_without_reload(
    hass: HomeAssistant,
    sandbox: ZevvySandbox,
    init_integration: MockConfigEntry,
    hass_storage: dict[str, Any],
) -> None:
    """Every later rotation is saved too, without reloading the entry."""
    entry = init_integration
    runtime = entry.runtime_data
    before = runtime.tokens.refresh_token

    await runtime.tokens.async_force_refresh()
    await hass.async_block_till_done()

    assert runtime.tokens.refresh_token != before
    assert saved_token(hass_storage, entry) == runtime.tokens.refresh_token
    # Still the same runtime data: no reload happened.
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data is runtime
    # The old token was replaced for good: zevvy no longer accepts it.
    grant = next(grant for grant in sandbox.grants() if not grant.revoked)
    assert grant.refresh_token == runtime.tokens.refresh_token
    assert before in grant.used_refresh_tokens


async def test_rotated_token_on_disk_before_it_is_used(
    hass: HomeAssistant,
    sandbox: ZevvySandbox,
    mock_config_entry: MockConfigEntry,
    hass_storage: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    freezer: FrozenDateTimeFactory,
) -> None:
    """zevvy sees a new access token only once its refresh token is on disk.

    A crash (kill -9) at any moment after a refresh finds the current refresh
    token in .storage, so the next start does not present a used one (which a
    provider like Keycloak answers by ending the login).
    """
    freezer.move_to("2026-11-26T12:05:00+00:00")
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    on_disk_when_used: list[bool] = []
    store_batch = sandbox._store_batch

    def spy(*args: Any) -> None:
        grant = next(grant for grant in sandbox.grants() if not grant.revoked)
        on_disk_when_used.append(grant.refresh_token in json.dumps(hass_storage))
        store_batch(*args)

    monkeypatch.setattr(sandbox, "_store_batch", spy)
    # zevvy answers 401 to the current access token: the client refreshes.
    sandbox.expire_access_tokens()
    tokens = mock_config_entry.runtime_data.tokens
    before = tokens.refresh_token
    await hass.services.async_call(
        DOMAIN,
        "send_reading",
        {"device_ref": "Car", "register_ref": "Energy", "value": 12.5},
        blocking=True,
    )
    assert tokens.refresh_token != before
    assert [r.read_at for r in sandbox.readings("Car", "Energy")] == [
        "2026-11-26T12:00:00.000Z"
    ]
    assert on_disk_when_used == [True]


async def test_login_survives_a_crash_after_a_refresh(
    hass: HomeAssistant, sandbox: ZevvySandbox, init_integration: MockConfigEntry
) -> None:
    """A crash right after a refresh: the next start uses the token saved last.

    The config entries are written about a second after a change; if Home
    Assistant is killed in that second, the entry on disk holds what it held
    before the refresh. That is what this test restores before the restart.
    """
    entry = init_integration
    on_disk = dict(entry.data)
    await entry.runtime_data.tokens.async_force_refresh()
    assert await hass.config_entries.async_unload(entry.entry_id)
    hass.config_entries.async_update_entry(entry, data=on_disk)

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert not any(grant.revoked for grant in sandbox.grants())
    assert not hass.config_entries.flow.async_progress()


async def test_stored_token_survives_restart(
    hass: HomeAssistant, sandbox: ZevvySandbox, init_integration: MockConfigEntry
) -> None:
    """After a reload the entry logs in with the token saved last."""
    entry = init_integration
    saved = entry.runtime_data.tokens.refresh_token
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.tokens.refresh_token != saved
    # No grant was revoked by presenting an old token.
    assert not any(grant.revoked for grant in sandbox.grants())


async def test_remove_entry_deletes_the_saved_login(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    """Removing the account leaves no refresh token behind."""
    entry = init_integration
    assert saved_token(hass_storage, entry) is not None
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert saved_token(hass_storage, entry) is None


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"opaque_access_tokens": True},
        {"opaque_access_tokens": True, "id_tokens": False},
    ],
    ids=["jwt", "opaque_with_id_token", "opaque_with_userinfo"],
)
async def test_setup_knows_the_account_with_opaque_tokens(
    hass: HomeAssistant,
    sandbox: ZevvySandbox,
    mock_config_entry: MockConfigEntry,
    settings: dict[str, Any],
) -> None:
    """The account is known whether the access token is a JWT or opaque."""
    sandbox.configure(**settings)
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    account = mock_config_entry.runtime_data.tokens.account
    assert account is not None
    assert account.sub == sandbox.config.sub
    assert account.title == "demo"


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
