"""The sender: delivers the outbox's pending readings to zevvy.

One round sends every queue, oldest first reading first, in batches of
``MAX_BATCH`` readings (fewer once zevvy answered 413), ``PARALLEL_UPLOADS``
requests at a time.

* What to do with zevvy's answers to one batch (409, 400/422, 413) is
  ``delivery.py``'s job.
* Any other 4xx (403, 404, ...): that register is set aside for a while
  (``REGISTER_BACKOFF_*``, with a ``register_refused`` repair issue) while the
  others keep their schedule; its readings stay pending and are sent again when
  its backoff ends, on ``upload_now`` or from the repair issue.
* Account-wide errors end the round: a login that is no longer accepted starts
  reauthentication; 429, 5xx, timeouts and connection errors are retried with
  exponential backoff (honouring ``Retry-After``), logged once when zevvy becomes
  unreachable and once when it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
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
    ZevvyMeasurementsError,
    ZevvyRateLimitError,
)
from .const import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    LOGGER,
    PARALLEL_UPLOADS,
    REGISTER_BACKOFF_INITIAL,
    REGISTER_BACKOFF_MAX,
)
from .delivery import BatchDelivery
from .issues import IssueKind, async_create_issue, async_delete_issue
from .outbox import Destination, Outbox


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


@dataclass(slots=True)
class _Aside:
    """A register set aside after an answer about it (403, 404, ...)."""

    backoff: float  # seconds
    until: datetime


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
        # Registers set aside (by queue key), and the timer that sends again
        # when the first of them is due.
        self._aside: dict[str, _Aside] = {}
        self._unsub_aside: CALLBACK_TYPE | None = None
        self._delivery = BatchDelivery(client, outbox)
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
        self._cancel_aside_timer()

    @callback
    def cancel_retry(self) -> None:
        """Forget a scheduled retry (and a failed login: the user asks again)."""
        if self._unsub_retry is not None:
            self._unsub_retry()
            self._unsub_retry = None
        self.next_retry = None

    async def async_send_now(self) -> int:
        """Send now, ignoring the retry timer, a failed login and set-aside
        registers' backoff; return how many readings zevvy confirmed."""
        self.cancel_retry()
        self.auth_failed = False
        now = dt_util.utcnow()
        for aside in self._aside.values():
            aside.until = now
        return await self.async_send()

    @callback
    def async_retry_register(self, key: str) -> None:
        """Send a set-aside register's readings again soon (its repair issue)."""
        if (aside := self._aside.get(key)) is not None:
            aside.until = dt_util.utcnow()
        self.async_request_send()

    def is_set_aside(self, key: str) -> bool:
        """Return whether a register is set aside (waits for its backoff)."""
        return key in self._aside

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
        now = dt_util.utcnow()
        keys = [
            key
            for key in self.outbox.keys_with_pending()
            if (aside := self._aside.get(key)) is None or aside.until <= now
        ]
        if not keys:
            return 0, None
        semaphore = asyncio.Semaphore(PARALLEL_UPLOADS)
        failures: list[ZevvyError] = []
        # Also what was confirmed of a batch before an error.
        confirmed_before = self._delivery.confirmed

        async def send_queue(key: str) -> None:
            while not failures:
                batch = self.outbox.next_batch(key, self._delivery.batch_size)
                if batch is None:
                    return
                async with semaphore:
                    if failures:
                        return
                    try:
                        await self._delivery.async_deliver(batch)
                    except ZevvyMeasurementsError as err:
                        self._async_set_aside(batch.destination, err)
                        return
                    except ZevvyError as err:
                        failures.append(err)
                        return
                self._async_register_ok(batch.destination)

        await asyncio.gather(*(send_queue(key) for key in keys))
        sent = self._delivery.confirmed - confirmed_before
        return sent, failures[0] if failures else None

    # --- registers set aside ------------------------------------------------------

    @callback
    def _async_set_aside(
        self, destination: Destination, error: ZevvyMeasurementsError
    ) -> None:
        """An answer about one register: retry it later, keep the others going."""
        now = dt_util.utcnow()
        previous = self._aside.get(destination.key)
        backoff = (
            REGISTER_BACKOFF_INITIAL
            if previous is None
            else min(previous.backoff * 2, REGISTER_BACKOFF_MAX)
        )
        self._aside[destination.key] = _Aside(backoff, now + timedelta(seconds=backoff))
        self.last_error_detail = (now, f"{type(error).__name__}: {error}")
        (LOGGER.debug if previous else LOGGER.warning)(
            "zevvy refused the readings of %s / %s (HTTP %s: %s); they wait in "
            "the outbox and are sent again in %.0f minutes, see Repairs",
            destination.device_ref,
            destination.register_ref,
            error.status,
            error.message,
            backoff / 60,
        )
        async_create_issue(
            self.hass,
            IssueKind.REGISTER_REFUSED,
            self._entry.entry_id,
            destination.key,
            {
                "device": destination.device_ref,
                "register": destination.register_ref,
                "answer": f"HTTP {error.status}: {error.message}",
            },
        )

    @callback
    def _async_register_ok(self, destination: Destination) -> None:
        """zevvy took a register's readings: it is no longer set aside."""
        if self._aside.pop(destination.key, None) is not None:
            LOGGER.info(
                "zevvy takes the readings of %s / %s again",
                destination.device_ref,
                destination.register_ref,
            )
            async_delete_issue(
                self.hass,
                IssueKind.REGISTER_REFUSED,
                self._entry.entry_id,
                destination.key,
            )

    @callback
    def _async_schedule_aside_retry(self) -> None:
        """Send again when the first set-aside register is due."""
        self._cancel_aside_timer()
        if self._aside and not self.stopped:
            due = min(aside.until for aside in self._aside.values())
            delay = max((due - dt_util.utcnow()).total_seconds(), 0.0)
            self._unsub_aside = async_call_later(
                self.hass, delay, self._async_aside_due
            )

    @callback
    def _cancel_aside_timer(self) -> None:
        if self._unsub_aside is not None:
            self._unsub_aside()
            self._unsub_aside = None

    @callback
    def _async_aside_due(self, _now: datetime) -> None:
        self._unsub_aside = None
        self.async_request_send()

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
            # A timer of an earlier failed round (one that ended while this
            # one waited, e.g. upload_now) must not hold readings back.
            self.cancel_retry()
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
        self._async_schedule_aside_retry()
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
