"""The sender: delivers the outbox's pending readings to zevvy.

One round sends every queue, oldest first reading first, in batches of
``MAX_BATCH`` readings, ``PARALLEL_UPLOADS`` requests at a time. What zevvy
confirms leaves the outbox; what it rejects (400/413/422, or a reference it
cannot take) is set aside with a repair issue. The first account-wide error ends
the round: a login that is no longer accepted starts reauthentication; anything
else (429, 5xx, timeouts, connection errors) is retried with exponential backoff
(honouring ``Retry-After``), logged once when zevvy becomes unreachable and once
when it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later
from homeassistant.util import dt as dt_util

from .api import (
    ZevvyAuthenticationError,
    ZevvyClient,
    ZevvyConnectionError,
    ZevvyError,
    ZevvyRateLimitError,
    ZevvyRejectedError,
)
from .const import BACKOFF_INITIAL, BACKOFF_MAX, LOGGER, MAX_BATCH, PARALLEL_UPLOADS
from .outbox import Batch, Outbox


class SendError(StrEnum):
    """Why the last round stopped (the status' ``last_error``)."""

    AUTHENTICATION = "authentication"  # the login is no longer accepted
    RATE_LIMITED = "rate_limited"  # 429
    UNREACHABLE = "unreachable"  # timeouts, connection errors
    ERROR = "error"  # any other error zevvy answered

    @classmethod
    def of(cls, error: ZevvyError) -> SendError:
        """Return the kind of an error of the API client."""
        if isinstance(error, ZevvyAuthenticationError):
            return cls.AUTHENTICATION
        if isinstance(error, ZevvyRateLimitError):
            return cls.RATE_LIMITED
        if isinstance(error, ZevvyConnectionError):
            return cls.UNREACHABLE
        return cls.ERROR


class Sender:
    """Send an outbox to zevvy; keep the connection state and the retry timer."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry[Any],
        client: ZevvyClient,
        outbox: Outbox,
        *,
        track: Callable[[Coroutine[Any, Any, Any], str], None],
        on_round: Callable[[], None],
    ) -> None:
        """Initialize.

        ``track`` runs a coroutine as a task the owner cancels on unload;
        ``on_round`` is called after every round (to publish the status).
        """
        self.hass = hass
        self._entry = entry
        self.client = client
        self.outbox = outbox
        self._track = track
        self._on_round = on_round
        self._lock = asyncio.Lock()
        self._backoff = 0.0
        self._unsub_retry: CALLBACK_TYPE | None = None
        self.stopped = False
        self.auth_failed = False
        self.connected = True
        self.last_success: datetime | None = None
        self.last_error: SendError | None = None
        self.next_retry: datetime | None = None
        # The last zevvy error (time, type and message) for diagnostics; kept
        # after recovery. Messages of the API client's errors carry no secrets.
        self.last_error_detail: tuple[datetime, str] | None = None

    @property
    def retry_scheduled(self) -> bool:
        """Return whether a retry timer will send."""
        return self._unsub_retry is not None

    @callback
    def async_request_send(self) -> None:
        """Send soon, unless a retry timer will or a new login is needed."""
        if not self.stopped and not self.retry_scheduled and not self.auth_failed:
            self.async_start_send()

    @callback
    def async_start_send(self) -> None:
        """Start a round in the background."""
        self._track(self.async_send(), "zevvy send")

    @callback
    def async_stop(self) -> None:
        """Stop the retry timer; no round starts after this."""
        self.stopped = True
        self.cancel_retry()

    @callback
    def cancel_retry(self) -> None:
        """Forget a scheduled retry (and a failed login: the user asks again)."""
        if self._unsub_retry is not None:
            self._unsub_retry()
            self._unsub_retry = None
        self.next_retry = None

    async def async_send(self) -> int:
        """Send the pending readings; return how many zevvy confirmed."""
        async with self._lock:
            if self.stopped:
                return 0
            sent, error = await self._async_round()
            self._async_after_round(sent, error)
            return sent

    async def _async_round(self) -> tuple[int, ZevvyError | None]:
        """Send every queue oldest first; stop at the first account-wide error."""
        keys = self.outbox.keys_with_pending()
        if not keys:
            return 0, None
        semaphore = asyncio.Semaphore(PARALLEL_UPLOADS)
        failures: list[ZevvyError] = []
        sent = 0

        async def send_queue(key: str) -> None:
            nonlocal sent
            while not failures:
                batch = self.outbox.next_batch(key, MAX_BATCH)
                if batch is None:
                    return
                async with semaphore:
                    if failures:
                        return
                    destination = batch.destination
                    try:
                        await self.client.bulk_create(
                            destination.device_ref,
                            destination.register_ref,
                            batch.readings(),
                        )
                    except ZevvyRejectedError as err:
                        self._async_reject(batch, err.message)
                        continue
                    except ValueError as err:
                        self._async_reject(batch, str(err))
                        continue
                    except ZevvyError as err:
                        failures.append(err)
                        return
                self.outbox.confirm(batch)
                sent += len(batch)

        await asyncio.gather(*(send_queue(key) for key in keys))
        return sent, failures[0] if failures else None

    @callback
    def _async_reject(self, batch: Batch, message: str) -> None:
        LOGGER.error(
            "zevvy rejected %s readings of %s / %s (%s); they are kept aside, "
            "see Repairs",
            len(batch),
            batch.destination.device_ref,
            batch.destination.register_ref,
            message,
        )
        self.outbox.reject(batch, message)

    @callback
    def _async_after_round(self, sent: int, error: ZevvyError | None) -> None:
        now = dt_util.utcnow()
        if sent:
            self.last_success = now
        if error is None:
            if not self.connected:
                LOGGER.info(
                    "zevvy is reachable again; %s readings delivered, %s waiting",
                    sent,
                    self.outbox.pending_count,
                )
            self.connected = True
            self._backoff = 0.0
            self.last_error = None
            self.next_retry = None
        else:
            self.last_error_detail = (now, f"{type(error).__name__}: {error}")
            self.last_error = SendError.of(error)
            if self.last_error is SendError.AUTHENTICATION:
                if not self.auth_failed:
                    LOGGER.warning(
                        "zevvy needs a new login; readings keep waiting in the "
                        "outbox (%s now) and are delivered after you sign in again",
                        self.outbox.pending_count,
                    )
                self.auth_failed = True
                self._entry.async_start_reauth(self.hass)
            else:
                self._async_schedule_retry(error)
        self._on_round()

    @callback
    def _async_schedule_retry(self, error: ZevvyError) -> None:
        self._backoff = (
            BACKOFF_INITIAL
            if not self._backoff
            else min(self._backoff * 2, BACKOFF_MAX)
        )
        delay = self._backoff
        if isinstance(error, ZevvyRateLimitError) and error.retry_after is not None:
            # Not before the server asks, and not more often than the backoff.
            delay = max(error.retry_after, delay)
        if self.connected:
            LOGGER.warning(
                "zevvy is unreachable (%s); %s readings wait in the outbox, "
                "retrying in %.0f s"
                if isinstance(error, ZevvyConnectionError)
                else "zevvy refused the upload (%s); %s readings wait in the "
                "outbox, retrying in %.0f s",
                error,
                self.outbox.pending_count,
                delay,
            )
        else:
            LOGGER.debug("zevvy still unreachable (%s); retry in %.0f s", error, delay)
        self.connected = False
        self.cancel_retry()
        self.next_retry = dt_util.utcnow() + timedelta(seconds=delay)
        self._unsub_retry = async_call_later(self.hass, delay, self._async_retry)

    @callback
    def _async_retry(self, _now: datetime) -> None:
        self._unsub_retry = None
        self.next_retry = None
        self.async_start_send()
