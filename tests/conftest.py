"""Shared fixtures for the zevvy tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
import logging
from pathlib import Path
import socket
from unittest.mock import PropertyMock, patch

from homeassistant.config_entries import ConfigEntryState, ConfigSubentryDataWithId
from homeassistant.const import MAJOR_VERSION, MINOR_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion
from syrupy.location import PyTestLocation

from custom_components.zevvy.api import SCOPES, account_from_access_token
from custom_components.zevvy.const import (
    CONF_API_URL,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_ISSUER,
    CONF_REFRESH_TOKEN,
    CONF_REGISTER_REF,
    DOMAIN,
    SUBENTRY_TYPE_METER,
)
from zevvy_sandbox import SandboxConfig, ZevvySandbox

# Logs belong to the test that made them. The plugin of
# pytest-homeassistant-custom-component calls logging.basicConfig when it is
# imported (a handler writing to the terminal, past pytest's capture, so the
# recorder's thread prints between the dots) and turns on SQLAlchemy's INFO
# log of every statement. pytest's own handlers still capture every record and
# show them under a failing test; SQLAlchemy's statements and the recorder's
# DEBUG lines are left out there too.
for _handler in logging.getLogger().handlers[:]:
    if type(_handler) is logging.StreamHandler:
        logging.getLogger().removeHandler(_handler)
logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
logging.getLogger("homeassistant.components.recorder").setLevel(logging.INFO)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/zevvy in every test."""


# One snapshot set per Home Assistant version the tests pin: snapshots/ for the
# minimum (2025.4, requirements_test.txt), snapshots_newest/ for the newest
# (requirements_test_newest.txt). Newer versions serialize registry entries and
# states differently (new fields such as object_id_base, aliases, enum keys).
SNAPSHOT_DIR = (
    "snapshots" if (MAJOR_VERSION, MINOR_VERSION) == (2025, 4) else "snapshots_newest"
)


class SnapshotExtension(HomeAssistantSnapshotExtension):
    """Home Assistant's snapshot extension, in this version's snapshot directory."""

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        """Return tests/<SNAPSHOT_DIR>."""
        return str(Path(test_location.filepath).parent / SNAPSHOT_DIR)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Syrupy snapshots that know Home Assistant's types (registry entries, states)."""
    return snapshot.use_extension(SnapshotExtension)


@pytest.fixture
def entity_registry_enabled_by_default() -> Generator[None]:
    """Create every entity enabled, also those disabled by default."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


@pytest.fixture
def closed_port_url(socket_enabled: None) -> Generator[str]:
    """Return an http://127.0.0.1 URL on which nothing listens, for one test.

    The port stays bound (without listening) until the test ends: connecting is
    refused, and nothing else (another test suite on the machine, this test's
    sandbox) can start listening on it in the meantime.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        yield f"http://127.0.0.1:{port}/realms/zevvy"


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    """Sandbox settings for fast tests: short polling interval."""
    return SandboxConfig(interval=0.05)


@pytest.fixture
async def sandbox(
    socket_enabled: None, sandbox_config: SandboxConfig
) -> AsyncGenerator[ZevvySandbox]:
    """Run a zevvy sandbox on a free port of 127.0.0.1 for one test."""
    server = ZevvySandbox(sandbox_config)
    await server.start(host="127.0.0.1", port=0)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def mock_config_entry(sandbox: ZevvySandbox) -> MockConfigEntry:
    """A zevvy config entry holding a real refresh token of the sandbox.

    The sandbox mints the login's tokens directly (`issue_tokens`, no device flow:
    the login itself is tested in test_api and test_config_flow) for
    sandbox.config's account, with the scopes the integration asks for. Returns
    a MockConfigEntry with the data the config flow stores: client id and
    secret, issuer, API URL and refresh token;
    unique_id = the account's sub, title = its username. The entry is not added to
    hass yet: call `mock_config_entry.add_to_hass(hass)` (or use
    `init_integration`). Tests that need subentries can add them with
    `hass.config_entries.async_add_subentry`.
    """
    config = sandbox.config
    tokens = sandbox.issue_tokens(scope=SCOPES)
    account = account_from_access_token(tokens.access_token)
    return MockConfigEntry(
        domain=DOMAIN,
        title=account.title,
        unique_id=account.sub,
        data={
            CONF_CLIENT_ID: config.client_id,
            CONF_CLIENT_SECRET: config.client_secret,
            CONF_ISSUER: sandbox.issuer,
            CONF_API_URL: sandbox.api_url,
            CONF_REFRESH_TOKEN: tokens.refresh_token,
        },
    )


@pytest.fixture
async def init_integration(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> MockConfigEntry:
    """Set up zevvy with `mock_config_entry` against the sandbox; return the entry.

    The entry is loaded (the setup refreshed the access token, so entry.data
    already holds a rotated refresh token) and `entry.runtime_data` is set.
    """
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.LOADED
    return mock_config_entry


# A meter with a fixed subentry id, so that unique ids and snapshots are stable.
METER_SUBENTRY_ID = "meter_grid_import"
METER_ENTITY_ID = "sensor.grid_import"


@pytest.fixture
def meter_config_entry(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> MockConfigEntry:
    """`mock_config_entry` with one meter: `sensor.grid_import` (kWh) -> "Grid" / "Import".

    The sensor is in the entity registry with a state of 1234.5 kWh; the entry is
    not added to hass yet.
    """
    source = er.async_get(hass).async_get_or_create(
        "sensor", "test", "grid_import", suggested_object_id="grid_import"
    )
    hass.states.async_set(
        source.entity_id,
        "1234.5",
        {
            "unit_of_measurement": "kWh",
            "state_class": "total_increasing",
            "device_class": "energy",
        },
    )
    return MockConfigEntry(
        domain=DOMAIN,
        title=mock_config_entry.title,
        unique_id=mock_config_entry.unique_id,
        data=mock_config_entry.data,
        subentries_data=[
            ConfigSubentryDataWithId(
                data={
                    CONF_ENTITY_REGISTRY_ID: source.id,
                    CONF_ENTITY_ID: source.entity_id,
                    CONF_DEVICE_REF: "Grid",
                    CONF_REGISTER_REF: "Import",
                },
                subentry_id=METER_SUBENTRY_ID,
                subentry_type=SUBENTRY_TYPE_METER,
                title="Grid \u2013 Import",
                unique_id=source.id,
            )
        ],
    )
