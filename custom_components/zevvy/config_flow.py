"""Config flow for zevvy: log in with the OAuth device flow (RFC 8628).

The user enters the API client created in the zevvy web app; Home Assistant then
shows a code and a link, and waits while the user approves the login on zevvy's
page. Reauthentication and reconfiguration run the same device flow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
import math
from typing import Any

from homeassistant.config_entries import (
    SOURCE_REAUTH,
    SOURCE_RECONFIGURE,
    ConfigEntry,
    ConfigFlowResult,
    ConfigSubentryFlow,
)
from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event, callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from yarl import URL

from .api import (
    Account,
    DeviceAuthorization,
    Tokens,
    ZevvyAccessDenied,
    ZevvyAccountError,
    ZevvyAuth,
    ZevvyAuthenticationError,
    ZevvyConnectionError,
    ZevvyError,
    ZevvyExpiredToken,
)
from .compat import vol
from .const import (
    CONF_API_URL,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_ISSUER,
    CONF_REFRESH_TOKEN,
    DEFAULT_API_URL,
    DEFAULT_ISSUER,
    DOMAIN,
    LOGGER,
    SUBENTRY_TYPE_METER,
)
from .meter_flow import MeterSelectionFlow, MeterSubentryFlowHandler
from .token_store import RefreshTokenStore

SECTION_ADVANCED = "advanced"
# Plain HTTP is refused except for these hosts (the local sandbox).
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})
PROGRESS_ACTION = "wait_for_approval"

# Steps the progress step hands over to when the login task ends.
STEP_LOGGED_IN = "logged_in"
STEP_EXPIRED = "expired"
STEP_LOGIN_FAILED = "login_failed"


def _normalize_url(value: str) -> str | None:
    """Return the URL without trailing slash, or None if it is not acceptable.

    HTTPS is required, except for the local sandbox on localhost/127.0.0.1.
    """
    text = value.strip().rstrip("/")
    try:
        url = URL(text)
    except ValueError:
        return None
    if not url.host:
        return None
    if url.scheme == "https" or (url.scheme == "http" and url.host in LOCAL_HOSTS):
        return text
    return None


def _credentials_schema(*, secret_required: bool, expand_advanced: bool) -> vol.Schema:
    """Return the form asking for the API client and the servers."""
    secret_key = (
        vol.Required(CONF_CLIENT_SECRET)
        if secret_required
        else vol.Optional(CONF_CLIENT_SECRET)
    )
    url_selector = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
    return vol.Schema(
        {
            vol.Required(CONF_CLIENT_ID): TextSelector(
                TextSelectorConfig(autocomplete="off")
            ),
            secret_key: TextSelector(
                TextSelectorConfig(
                    type=TextSelectorType.PASSWORD, autocomplete="new-password"
                )
            ),
            vol.Required(SECTION_ADVANCED): section(
                vol.Schema(
                    {
                        vol.Required(CONF_ISSUER, default=DEFAULT_ISSUER): url_selector,
                        vol.Required(
                            CONF_API_URL, default=DEFAULT_API_URL
                        ): url_selector,
                    }
                ),
                {"collapsed": not expand_advanced},
            ),
        }
    )


def _form_values(data: Mapping[str, Any], *, with_secret: bool) -> dict[str, Any]:
    """Return the values to show in the credentials form."""
    values: dict[str, Any] = {
        CONF_CLIENT_ID: data[CONF_CLIENT_ID],
        SECTION_ADVANCED: {
            CONF_ISSUER: data[CONF_ISSUER],
            CONF_API_URL: data[CONF_API_URL],
        },
    }
    if with_secret:
        values[CONF_CLIENT_SECRET] = data[CONF_CLIENT_SECRET]
    return values


def _flatten(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return the submitted form with the advanced section's fields at top level."""
    return {
        CONF_CLIENT_ID: user_input[CONF_CLIENT_ID],
        CONF_CLIENT_SECRET: user_input.get(CONF_CLIENT_SECRET, ""),
        CONF_ISSUER: user_input[SECTION_ADVANCED][CONF_ISSUER],
        CONF_API_URL: user_input[SECTION_ADVANCED][CONF_API_URL],
    }


class ZevvyConfigFlow(MeterSelectionFlow, domain=DOMAIN):
    """Log in to zevvy with the device flow, then choose meters.

    The meter steps (`meters`, `meter_names`) come from MeterSelectionFlow.
    """

    VERSION = 1

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Meters are subentries: add one, rename it, delete it."""
        return {SUBENTRY_TYPE_METER: MeterSubentryFlowHandler}

    # Set by _async_request_code before the progress step uses them.
    _auth: ZevvyAuth
    _authorization: DeviceAuthorization
    # Set by the login task before the logged_in step uses them.
    _tokens: Tokens
    _account: Account

    def __init__(self) -> None:
        """Start with no login in progress."""
        # client_id, client_secret, issuer, api_url of the login in progress.
        self._credentials: dict[str, str] = {}
        self._login_task: asyncio.Task[None] | None = None
        self._unsub_stop: CALLBACK_TYPE | None = None
        self._login_next_step = STEP_LOGIN_FAILED
        self._login_error = "unknown"

    # ------------------------------------------------------------------
    # Entry points: user, reauth, reconfigure
    # ------------------------------------------------------------------

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the API client (and, under Advanced, the servers)."""
        errors: dict[str, str] = {}
        values: dict[str, Any] | None = None
        if user_input is not None:
            submitted = _flatten(user_input)
            # An API client belongs to one zevvy account: already connected.
            # Said now, not after a whole login.
            self._async_abort_entries_match(
                {
                    CONF_CLIENT_ID: submitted[CONF_CLIENT_ID].strip(),
                    CONF_ISSUER: _normalize_url(submitted[CONF_ISSUER]),
                }
            )
            errors = await self._async_begin_login(submitted)
            if not errors:
                return await self.async_step_login()
            values = _form_values(_flatten(user_input), with_secret=True)
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                _credentials_schema(
                    secret_required=True,
                    expand_advanced=SECTION_ADVANCED in errors,
                ),
                values,
            ),
            errors=errors,
        )

    async def async_step_reauth(
        self, entry_data: Mapping[str, Any]
    ) -> ConfigFlowResult:
        """Start a new login when zevvy no longer accepts the stored one."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Explain why the user must log in again, then start the device flow."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            self._credentials = {
                key: entry.data[key]
                for key in (
                    CONF_CLIENT_ID,
                    CONF_CLIENT_SECRET,
                    CONF_ISSUER,
                    CONF_API_URL,
                )
            }
            if (error := await self._async_request_code()) is None:
                return await self.async_step_login()
            errors["base"] = error
        return self.async_show_form(
            step_id="reauth_confirm",
            description_placeholders={"account": entry.title},
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the API client or the servers, then log in again.

        An empty client secret keeps the stored one.
        """
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            submitted = _flatten(user_input)
            if not submitted[CONF_CLIENT_SECRET].strip():
                submitted[CONF_CLIENT_SECRET] = entry.data[CONF_CLIENT_SECRET]
            errors = await self._async_begin_login(submitted)
            if not errors:
                return await self.async_step_login()
            values = _form_values(submitted, with_secret=False)
        else:
            values = _form_values(entry.data, with_secret=False)
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                _credentials_schema(
                    secret_required=False,
                    expand_advanced=SECTION_ADVANCED in errors
                    or entry.data[CONF_ISSUER] != DEFAULT_ISSUER
                    or entry.data[CONF_API_URL] != DEFAULT_API_URL,
                ),
                values,
            ),
            errors=errors,
        )

    # ------------------------------------------------------------------
    # The device flow
    # ------------------------------------------------------------------

    async def _async_begin_login(self, submitted: dict[str, Any]) -> dict[str, str]:
        """Check the submitted form and request a login code; return form errors."""
        issuer = _normalize_url(submitted[CONF_ISSUER])
        api_url = _normalize_url(submitted[CONF_API_URL])
        if issuer is None or api_url is None:
            return {SECTION_ADVANCED: "invalid_url"}
        self._credentials = {
            CONF_CLIENT_ID: submitted[CONF_CLIENT_ID].strip(),
            CONF_CLIENT_SECRET: submitted[CONF_CLIENT_SECRET].strip(),
            CONF_ISSUER: issuer,
            CONF_API_URL: api_url,
        }
        if (error := await self._async_request_code()) is not None:
            return {"base": error}
        return {}

    async def _async_request_code(self) -> str | None:
        """Ask the identity server for a new login code; return an error key."""
        auth = ZevvyAuth(
            async_get_clientsession(self.hass),
            self._credentials[CONF_CLIENT_ID],
            self._credentials[CONF_CLIENT_SECRET],
            self._credentials[CONF_ISSUER],
        )
        try:
            self._authorization = await auth.request_device_authorization()
        except ZevvyAuthenticationError:
            return "invalid_auth"
        except ZevvyError:
            return "cannot_connect"
        except Exception:  # noqa: BLE001
            LOGGER.exception("Unexpected error while starting the zevvy login")
            return "unknown"
        self._auth = auth
        return None

    async def async_step_login(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show the code and link while waiting for the user's approval."""
        if self._login_task is None:
            self._login_task = self.hass.async_create_task(
                self._async_wait_for_login(), "zevvy device login"
            )
            self._async_cancel_login_on_stop()
        if self._login_task.done():
            self._login_task = None
            return self.async_show_progress_done(next_step_id=self._login_next_step)
        authorization = self._authorization
        return self.async_show_progress(
            step_id="login",
            progress_action=PROGRESS_ACTION,
            description_placeholders={
                "user_code": authorization.user_code,
                "url": authorization.verification_uri_complete,
                "verification_uri": authorization.verification_uri,
                "minutes": str(max(1, math.ceil(authorization.expires_in / 60))),
            },
            progress_task=self._login_task,
        )

    async def _async_wait_for_login(self) -> None:
        """Poll the identity server until the login is approved, denied or expired.

        Records which step comes next; never raises (except when cancelled).
        """
        try:
            tokens = await self._auth.wait_for_tokens(self._authorization)
            account = await self._auth.async_account(tokens)
        except ZevvyExpiredToken:
            self._login_next_step = STEP_EXPIRED
            return
        except ZevvyAccessDenied:
            self._login_error = "access_denied"
        except ZevvyAccountError:
            self._login_error = "no_account"
        except ZevvyAuthenticationError:
            self._login_error = "invalid_auth"
        except ZevvyConnectionError:
            self._login_error = "cannot_connect"
        except Exception:  # noqa: BLE001
            LOGGER.exception("Unexpected error while waiting for the zevvy login")
            self._login_error = "unknown"
        else:
            self._tokens = tokens
            self._account = account
            self._login_next_step = STEP_LOGGED_IN
            return
        self._login_next_step = STEP_LOGIN_FAILED

    @callback
    def _async_cancel_login_on_stop(self) -> None:
        """Stop polling when Home Assistant stops.

        A flow the user left open stays in progress until then (the frontend
        keeps a reauthentication closed from its card, and the card opens it
        again); its login would otherwise poll through the stop and be cancelled
        with a warning at its end.
        """
        if self._unsub_stop is not None:
            self._unsub_stop()

        @callback
        def _async_stop(_event: Event) -> None:
            self._unsub_stop = None
            if self._login_task is not None:
                # Kept: the progress step then ends the flow instead of
                # starting a new login.
                self._login_task.cancel()

        self._unsub_stop = self.hass.bus.async_listen_once(
            EVENT_HOMEASSISTANT_STOP, _async_stop
        )

    @callback
    def async_remove(self) -> None:
        """Stop polling when the user leaves the flow (or Home Assistant stops)."""
        if self._unsub_stop is not None:
            self._unsub_stop()
            self._unsub_stop = None
        if self._login_task is not None:
            self._login_task.cancel()
            self._login_task = None

    async def async_step_expired(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Tell the user the code expired; start over with a new code on submit."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if (error := await self._async_request_code()) is None:
                return await self.async_step_login()
            errors["base"] = error
        return self.async_show_form(step_id=STEP_EXPIRED, errors=errors)

    async def async_step_login_failed(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """End the flow after a refused or broken login."""
        return self.async_abort(reason=self._login_error)

    async def async_step_logged_in(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Store the login: a new entry, or an update of the entry concerned."""
        tokens, account = self._tokens, self._account
        await self.async_set_unique_id(account.sub, raise_on_progress=False)
        if self.source == SOURCE_REAUTH:
            self._abort_if_unique_id_mismatch(reason="reauth_account_mismatch")
            entry = self._get_reauth_entry()
            await self._async_name_new_login(entry, tokens)
            return self.async_update_reload_and_abort(
                entry, data_updates={CONF_REFRESH_TOKEN: tokens.refresh_token}
            )
        if self.source == SOURCE_RECONFIGURE:
            self._abort_if_unique_id_mismatch(reason="account_mismatch")
            entry = self._get_reconfigure_entry()
            await self._async_name_new_login(entry, tokens)
            return self.async_update_reload_and_abort(
                entry,
                data_updates={
                    **self._credentials,
                    CONF_REFRESH_TOKEN: tokens.refresh_token,
                },
            )
        self._abort_if_unique_id_configured()
        return await self._async_finish_login(tokens, account)

    async def _async_name_new_login(self, entry: ConfigEntry, tokens: Tokens) -> None:
        """Tell the entry's token file about the new login first.

        Home Assistant writes the entry about a second after the update below:
        a crash in that second would otherwise start with the old login.
        """
        await RefreshTokenStore(
            self.hass,
            entry.entry_id,
            self._credentials[CONF_CLIENT_ID],
            self._credentials[CONF_ISSUER],
        ).async_new_login(entry.data[CONF_REFRESH_TOKEN], tokens.refresh_token)

    async def _async_finish_login(
        self, tokens: Tokens, account: Account
    ) -> ConfigFlowResult:
        """Create the config entry of a newly logged-in account.

        The one place a new entry is created: first the user chooses meters
        (MeterSelectionFlow), which then creates the entry with them.
        """
        return await self._async_offer_meters(
            account.title,
            {**self._credentials, CONF_REFRESH_TOKEN: tokens.refresh_token},
        )
