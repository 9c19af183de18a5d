"""The current refresh token of a login, on disk before its access token is used.

zevvy's identity server rotates the refresh token at every refresh and, like
Keycloak, may end the whole login when an old one comes back. The config entry
holds the refresh token its login flow received and is written by Home
Assistant with a delay, so a crash right after a refresh would bring an old token
back at the next start. This small store is written (atomically, readable only
by Home Assistant's user) before the new access token is used; Home Assistant
offers no public way to write the config entries now.

The entry's token stays what the last login (user, reauth, reconfigure) stored;
the store names that login by a SHA-256 fingerprint of its token, and the
logins it replaced by theirs. Which one wins at setup:

* the entry's login is the store's: the store's (newer) token;
* the entry's login is one the store's replaced, with the same API client (a
  crash in the second after a reauthentication, before Home Assistant wrote
  the entry): the store's, the newer login's token. The login flow names the
  new login in the store before it updates the entry;
* any other (a login newer than the store's, or no store): the entry's token,
  and the store adopts that login at once.

A write that does not reach the disk (disk full, read-only) raises
``ZevvyTokenStorageError``: the new token is not used, and the sender retries
with its backoff (the readings wait in the outbox); a setup says so and is
retried. Until a write works, the newest token is kept in memory (``hass.data``)
for the next setup of the entry, which would otherwise present the file's spent
one.
"""

from __future__ import annotations

from contextlib import suppress
import hashlib
import logging
from typing import Final, NotRequired, TypedDict

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.storage import Store
from homeassistant.util.hass_dict import HassKey

from .api import ZevvyConnectionError
from .const import DOMAIN

_LOGGER = logging.getLogger(__name__)

STORAGE_VERSION: Final = 1
# Fingerprints of replaced logins kept (one per reauthentication).
MAX_REPLACED: Final = 20


class ZevvyTokenStorageError(ZevvyConnectionError):
    """The login's new token could not be written to disk.

    A connection-type error: the sender retries with its backoff, says so once
    in the log and in the Connection status; the readings wait.
    """


class _Saved(TypedDict):
    """What the file holds (``replaced`` is absent in files of older versions)."""

    login: str
    refresh_token: str
    replaced: NotRequired[list[str]]
    client: NotRequired[str]


# What could not be written, by storage key: newer than the file, and kept in
# memory for the next setup of the entry (a setup retried after a failed
# write must not present the spent token of the file).
_UNSAVED: HassKey[dict[str, _Saved]] = HassKey(f"{DOMAIN}_unsaved_logins")


def _fingerprint(token: str) -> str:
    """Return a fingerprint of the login's token (not the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshTokenStore:
    """Load and write the current refresh token of one config entry's login."""

    def __init__(
        self, hass: HomeAssistant, entry_id: str, client_id: str = "", issuer: str = ""
    ) -> None:
        """Create the store of an entry (``.storage/zevvy.<entry id>.login``).

        ``client_id`` and ``issuer`` name the API client the logins belong to.
        """
        self._hass = hass
        self._store: Store[_Saved] = Store(
            hass,
            STORAGE_VERSION,
            f"{DOMAIN}.{entry_id}.login",
            private=True,
            atomic_writes=True,
        )
        self._login = ""
        self._replaced: list[str] = []
        self._client = _fingerprint(f"{client_id}\n{issuer}")

    async def async_load(self, login_token: str) -> str:
        """Return the newest refresh token of the newest login (see the module)."""
        entry_login = _fingerprint(login_token)
        saved = await self._async_load_newest()
        if saved is None or not isinstance(saved.get("login"), str):
            self._login, self._replaced = entry_login, []
            return login_token
        replaced = [
            login for login in saved.get("replaced", []) if isinstance(login, str)
        ]
        token = saved.get("refresh_token")
        if isinstance(token, str) and token:
            if saved["login"] == entry_login:
                self._login, self._replaced = entry_login, replaced
                return token
            if entry_login in replaced and saved.get("client") == self._client:
                _LOGGER.info(
                    "The zevvy entry %s still holds a login that a newer one "
                    "replaced (Home Assistant stopped before writing it); "
                    "using the newer login",
                    self._store.key,
                )
                self._login, self._replaced = saved["login"], replaced
                return token
        # A newer login than the file's: the file names it from now on.
        self._login = entry_login
        self._replaced = [*replaced, saved["login"]][-MAX_REPLACED:]
        # A failure does not matter yet: the new login's first rotated token is
        # written (and checked) before it is used.
        with suppress(ZevvyTokenStorageError):
            await self._async_write(login_token)
        return login_token

    async def async_new_login(self, previous_token: str, login_token: str) -> None:
        """Name a new login before the entry holds it (a login flow's last step).

        The entry is written with a delay and reloaded after: from now on, a
        start with the entry's previous login (``previous_token``) uses this
        one. Best effort: the setup adopts the new login again.
        """
        saved = await self._async_load_newest()
        replaced: list[str] = []
        if saved is not None and isinstance(saved.get("login"), str):
            replaced = [
                login for login in saved.get("replaced", []) if isinstance(login, str)
            ]
            replaced.append(saved["login"])
        previous = _fingerprint(previous_token)
        if previous not in replaced:
            replaced.append(previous)
        self._login = _fingerprint(login_token)
        self._replaced = replaced[-MAX_REPLACED:]
        with suppress(ZevvyTokenStorageError):
            await self._async_write(login_token)

    async def _async_load_newest(self) -> _Saved | None:
        """Return what could not be written, else what the file holds."""
        if (
            unsaved := self._hass.data.get(_UNSAVED, {}).get(self._store.key)
        ) is not None:
            return unsaved
        return await self._store.async_load()

    async def async_save(self, refresh_token: str) -> None:
        """Write a new refresh token of the loaded login to disk now.

        Raises ``ZevvyTokenStorageError`` when the token is not on disk
        afterwards (the sender logs it, once until zevvy is used again).
        """
        await self._async_write(refresh_token)

    async def _async_write(self, refresh_token: str) -> None:
        """Write, then read back what is on disk; raise if it differs."""
        data: _Saved = {
            "login": self._login,
            "refresh_token": refresh_token,
            "replaced": self._replaced,
            "client": self._client,
        }
        # Home Assistant's Store logs a failed write and returns: what is on
        # disk afterwards tells (a Store keeps no copy of written data).
        try:
            await self._store.async_save(data)
            written = await self._store.async_load()
        except (HomeAssistantError, OSError) as err:
            # Only the type: the message of an error of the disk names the
            # path at most, but nothing here needs more.
            reason = f" ({type(err).__name__})"
        else:
            if written == data:
                self._hass.data.get(_UNSAVED, {}).pop(self._store.key, None)
                return
            reason = ""  # Home Assistant logged the error of the disk
        self._hass.data.setdefault(_UNSAVED, {})[self._store.key] = data
        raise ZevvyTokenStorageError(
            "Home Assistant cannot write the login's new token to "
            f".storage/{self._store.key}{reason}; is the disk full or read-only? "
            "zevvy is used again once it can"
        )

    async def async_remove(self) -> None:
        """Delete the file (the entry is removed)."""
        self._hass.data.get(_UNSAVED, {}).pop(self._store.key, None)
        await self._store.async_remove()
