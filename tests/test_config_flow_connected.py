"""Adding an account whose API client is already connected stops before the login."""

from __future__ import annotations

from homeassistant.config_entries import SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.zevvy.config_flow import SECTION_ADVANCED
from custom_components.zevvy.const import (
    CONF_API_URL,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_ISSUER,
    DOMAIN,
)
from zevvy_sandbox import ZevvySandbox


async def _submit(
    hass: HomeAssistant, sandbox: ZevvySandbox, client_id: str, issuer: str
) -> dict[str, object]:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    return dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"],
            {
                CONF_CLIENT_ID: client_id,
                CONF_CLIENT_SECRET: sandbox.config.client_secret,
                SECTION_ADVANCED: {CONF_ISSUER: issuer, CONF_API_URL: sandbox.api_url},
            },
        )
    )


async def test_client_already_connected_aborts_before_the_login(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """The same API client (same login server) is the same account: "already
    connected" right away, without a login code to confirm first."""
    mock_config_entry.add_to_hass(hass)
    sandbox.clear_requests()

    result = await _submit(
        hass, sandbox, f" {sandbox.config.client_id} ", sandbox.issuer + "/"
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert sandbox.pending_user_codes() == []
    assert sandbox.request_counts()["total"] == 0


async def test_another_client_goes_on_to_the_login(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, sandbox: ZevvySandbox
) -> None:
    """Another API client may belong to another account: the login starts."""
    mock_config_entry.add_to_hass(hass)

    result = await _submit(hass, sandbox, "another-client", sandbox.issuer)

    assert result["type"] is not FlowResultType.ABORT
