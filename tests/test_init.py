"""Tests for setting up and unloading a zevvy config entry (login and tokens)."""

from __future__ import annotations

import errno
import json
import logging
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.helpers.storage import Store
from homeassistant.util.file import WriteError
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

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
    assert repr(runtime.pipeline.client) == f"ZevvyClient(api_url={sandbox.api_url!r})"
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


async def _reauthenticate(
    hass: HomeAssistant, sandbox: ZevvySandbox, entry: MockConfigEntry
) -> None:
    """Log in again through the reauthentication flow (device flow, sandbox)."""
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    sandbox.approve(result["description_placeholders"]["user_code"])
    await hass.async_block_till_done()
    result = await hass.config_entries.flow.async_configure(result["flow_id"])
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


async def test_new_login_wins_after_a_crash_following_reauth(
    hass: HomeAssistant,
    sandbox: ZevvySandbox,
    init_integration: MockConfigEntry,
    hass_storage: dict[str, Any],
) -> None:
    """A crash in the second after a reauthentication keeps the new login.

    Home Assistant writes the config entries about a second after a change:
    killed in that second, the entry on disk still holds the old login while
    the token file holds the new one. The next start uses the new login (the
    old one's tokens were spent, and presenting a spent token ends a login).
    """
    entry = init_integration
    before_reauth = dict(entry.data)  # what the entry on disk still holds
    old_grant = next(
        grant
        for grant in sandbox.grants()
        if before_reauth[CONF_REFRESH_TOKEN] in grant.used_refresh_tokens
    )
    await _reauthenticate(hass, sandbox, entry)
    new_login = entry.data[CONF_REFRESH_TOKEN]
    (new_grant,) = (
        grant for grant in sandbox.grants() if new_login in grant.used_refresh_tokens
    )
    assert saved_token(hass_storage, entry) == new_grant.refresh_token

    # The crash: Home Assistant starts with the entry as it was on disk.
    assert await hass.config_entries.async_unload(entry.entry_id)
    hass.config_entries.async_update_entry(entry, data=before_reauth)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    assert entry.state is ConfigEntryState.LOADED
    assert not hass.config_entries.flow.async_progress()
    assert not new_grant.revoked
    assert entry.runtime_data.tokens.refresh_token == new_grant.refresh_token
    assert saved_token(hass_storage, entry) == new_grant.refresh_token
    # The old login's spent token was not presented again.
    assert not old_grant.revoked

    # And a later start (the entry written by now) still uses the new login.
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert not any(grant.revoked for grant in sandbox.grants())


async def test_token_file_of_an_older_version_loads(
    hass: HomeAssistant,
    sandbox: ZevvySandbox,
    init_integration: MockConfigEntry,
    hass_storage: dict[str, Any],
) -> None:
    """A token file without the replaced logins (older versions) still counts."""
    entry = init_integration
    assert await hass.config_entries.async_unload(entry.entry_id)
    stored = hass_storage[f"{DOMAIN}.{entry.entry_id}.login"]
    stored["data"] = {
        "login": stored["data"]["login"],
        "refresh_token": stored["data"]["refresh_token"],
    }
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert not any(grant.revoked for grant in sandbox.grants())


async def test_token_file_not_writable(
    hass: HomeAssistant,
    sandbox: ZevvySandbox,
    meter_config_entry: MockConfigEntry,
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Disk full: the new token is not used; retried with backoff; recovers.

    Home Assistant's Store logs a failed write and returns. The new access
    token stays unused (a crash would bring back the spent token on disk), the
    account is in backoff with Connection off, logged once without secrets;
    the readings wait and are delivered once the disk takes the token again.
    """
    entry = meter_config_entry
    freezer.move_to("2026-11-26T12:05:00+00:00")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    pipeline = entry.runtime_data.pipeline
    tokens = entry.runtime_data.tokens
    login_key = f"{DOMAIN}.{entry.entry_id}.login"

    disk_full = True
    write = Store._async_write_data  # the test plugin's, into hass_storage

    async def write_or_fail(store: Store[Any], *args: Any) -> None:
        if disk_full and store.key == login_key:
            error = OSError(errno.ENOSPC, "No space left on device")
            raise WriteError(error) from error
        await write(store, *args)

    # Not monkeypatch: it would put the plugin's mock back after the plugin
    # removed it.
    with patch.object(Store, "_async_write_data", write_or_fail):
        on_disk = saved_token(hass_storage, entry)
        sandbox.expire_access_tokens()  # the next upload needs a refresh

        async def move(moment: str) -> None:
            freezer.move_to(moment)
            async_fire_time_changed(hass)
            await hass.async_block_till_done()

        await move("2026-11-26T12:15:30+00:00")
        assert sandbox.readings() == []
        assert pipeline.coordinator.data.pending == 1
        assert not pipeline.coordinator.data.connected
        assert pipeline.coordinator.data.last_error == "unreachable"
        assert pipeline.coordinator.data.next_retry is not None
        assert hass.states.get("binary_sensor.zevvy_connection").state == STATE_OFF  # type: ignore[union-attr]
        assert pipeline.last_error_detail is not None
        assert "cannot write the login" in pipeline.last_error_detail[1]
        assert saved_token(hass_storage, entry) == on_disk
        # The new access token was never shown to the API.
        assert not [r for r in sandbox.requests if "_bulk_create" in r.path]

        # Still full for an hour: retried with backoff, still one warning.
        for minute in range(20, 80, 5):
            await move(f"2026-11-26T{12 + minute // 60}:{minute % 60:02}:30+00:00")
        assert sandbox.readings() == []
        refreshes = [r for r in sandbox.requests if r.path.endswith("/token")]
        assert 3 <= len(refreshes) <= 10
        warnings = [
            r
            for r in caplog.records
            if r.levelno >= logging.WARNING
            and r.name.startswith("custom_components.zevvy")
            and "cannot write the login" in r.getMessage()
        ]
        assert len(warnings) == 1
        secrets = [sandbox.config.client_secret, tokens.refresh_token]
        secrets += [grant.refresh_token for grant in sandbox.grants()]
        assert not [secret for secret in secrets if secret in caplog.text]

        # The disk takes writes again: the next retry delivers everything.
        disk_full = False
        await move("2026-11-26T13:30:30+00:00")
        await move("2026-11-26T13:50:30+00:00")
        assert pipeline.coordinator.data.pending == 0
        assert len(sandbox.readings()) == 7  # 12:15 ... 13:45
        assert pipeline.coordinator.data.connected
        assert pipeline.coordinator.data.last_error is None
        assert hass.states.get("binary_sensor.zevvy_connection").state == STATE_ON  # type: ignore[union-attr]
        assert saved_token(hass_storage, entry) == tokens.refresh_token
        assert not any(grant.revoked for grant in sandbox.grants())


async def test_new_login_wins_after_a_crash_before_the_reload(
    hass: HomeAssistant, sandbox: ZevvySandbox, init_integration: MockConfigEntry
) -> None:
    """Killed between the reauthentication's last step and the entry's reload.

    zevvy ended the old login; the user logged in again. Neither the entry nor
    the reload got to the disk: the next start still uses the new login rather
    than asking for yet another one.
    """
    entry = init_integration
    before_reauth = dict(entry.data)
    sandbox.revoke_refresh_tokens()
    with patch.object(hass.config_entries, "async_schedule_reload"):
        await _reauthenticate(hass, sandbox, entry)
    new_login = entry.data[CONF_REFRESH_TOKEN]

    assert await hass.config_entries.async_unload(entry.entry_id)
    hass.config_entries.async_update_entry(entry, data=before_reauth)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    assert entry.state is ConfigEntryState.LOADED
    assert not hass.config_entries.flow.async_progress()
    (grant,) = (
        grant for grant in sandbox.grants() if new_login in grant.used_refresh_tokens
    )
    assert not grant.revoked
    assert entry.runtime_data.tokens.refresh_token == grant.refresh_token


async def test_setup_waits_while_the_token_file_cannot_be_written(
    hass: HomeAssistant,
    sandbox: ZevvySandbox,
    mock_config_entry: MockConfigEntry,
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    """At setup, an unwritable token file says so and the setup is retried."""
    freezer.move_to("2026-11-26T12:05:00+00:00")
    entry = mock_config_entry
    login_key = f"{DOMAIN}.{entry.entry_id}.login"
    disk_full = True
    write = Store._async_write_data

    async def write_or_fail(store: Store[Any], *args: Any) -> None:
        if disk_full and store.key == login_key:
            error = OSError(errno.EROFS, "Read-only file system")
            raise WriteError(error) from error
        await write(store, *args)

    with patch.object(Store, "_async_write_data", write_or_fail):
        entry.add_to_hass(hass)
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.SETUP_RETRY
        assert entry.error_reason_translation_key == "login_not_saved"

        disk_full = False
        freezer.tick(60)
        async_fire_time_changed(hass)
        await hass.async_block_till_done(wait_background_tasks=True)
        assert entry.state is ConfigEntryState.LOADED
        assert (
            saved_token(hass_storage, entry) == entry.runtime_data.tokens.refresh_token
        )
        assert not any(grant.revoked for grant in sandbox.grants())
