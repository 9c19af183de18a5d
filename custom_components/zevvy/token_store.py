"""The current refresh token of a login, on disk before its access token is used.

zevvy's identity server rotates the refresh token at every refresh and, like
Keycloak, may end the whole login when an old one comes back. The config entry
holds the refresh token its login flow received and is written by Home
Assistant with a delay, so a crash right after a refresh would bring an old token
back at the next start. This small store is written (atomically, readable only
by Home Assistant's user) before the new access token is used; Home Assistant
offers no public way to write the config entries now.

The entry's token stays what the last login (user, reauth, reconfigure) stored;
the store names that login by a SHA-256 fingerprint of its token, so a newer
login in the entry always wins over the store of an older one.
"""

from __future__ import annotations

import hashlib
from typing import Final, TypedDict

from homeassistant.core import HomeAssistant
from homeassistant.helpers.storage import Store

from .const import DOMAIN

STORAGE_VERSION: Final = 1


class _Saved(TypedDict):
    """What the file holds."""

    login: str
    refresh_token: str


def _fingerprint(token: str) -> str:
    """Return a fingerprint of the login's token (not the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshTokenStore:
    """Load and write the current refresh token of one config entry's login."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Create the store of an entry (``.storage/zevvy.<entry id>.login``)."""
        self._store: Store[_Saved] = Store(
            hass,
            STORAGE_VERSION,
            f"{DOMAIN}.{entry_id}.login",
            private=True,
            atomic_writes=True,
        )
        self._login = ""

    async def async_load(self, login_token: str) -> str:
        """Return the newest refresh token of the login that stored ``login_token``."""
        self._login = _fingerprint(login_token)
        saved = await self._store.async_load()
        if saved is not None and saved.get("login") == self._login:
            token = saved.get("refresh_token")
            if isinstance(token, str) and token:
                return token
        return login_token

    async def async_save(self, refresh_token: str) -> None:
        """Write a new refresh token of the loaded login to disk now."""
        await self._store.async_save(
            {"login": self._login, "refresh_token": refresh_token}
        )

    async def async_remove(self) -> None:
        """Delete the file (the entry is removed)."""
        await self._store.async_remove()
