"""Runtime data of a zevvy config entry."""

from __future__ import annotations

from dataclasses import dataclass

from homeassistant.config_entries import ConfigEntry

from .api import Account, TokenManager, ZevvyAuth, ZevvyClient


@dataclass
class ZevvyRuntimeData:
    """What a loaded zevvy config entry holds while Home Assistant runs."""

    auth: ZevvyAuth
    tokens: TokenManager
    client: ZevvyClient
    account: Account


type ZevvyConfigEntry = ConfigEntry[ZevvyRuntimeData]
