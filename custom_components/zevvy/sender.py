"""The sender: delivers the outbox's pending readings to zevvy.

One round sends every queue that is due, oldest first reading first, in batches
of ``MAX_BATCH`` readings (fewer once zevvy answered 413), ``PARALLEL_UPLOADS``
requests at a time. A round is started by the quarter-hour tick, a retry timer,
the timer of a set-aside register that has readings and is due, or an action;
a round never arms a timer for something that is not due later.

* What to do with zevvy's answers to one batch (409, 400/422, 413) is
  ``delivery.py``'s job.
* Any other 4xx (403, 404, ...), and a 400/422 about the register itself: that
  register is set aside for a while (``REGISTER_BACKOFF_*``, with a
  ``register_refused`` repair issue) while the others keep their schedule; its
  readings stay pending and are sent again when its backoff ends, on
  ``upload_now`` or from the repair issue. When a round finds every register it
  tried refused with one and the same answer (at least two, none accepted), the
  account is refused instead: one ``registers_refused`` issue, *Connection* off,
  until zevvy takes a register again. Set-aside registers and a lowered batch
  size are kept with the outbox (``Outbox.sender_state``) and survive restarts;
  a register's state goes with its queue.
* Account-wide errors end the round: a login that is no longer accepted
  (``invalid_grant`` from the token endpoint) starts reauthentication; a 401 of
  the API to a freshly renewed token, 429, 5xx, timeouts and connection errors
  are retried with exponential backoff (honouring ``Retry-After``), logged once
  when zevvy becomes unreachable and once when it is back. A 401 that lasts for
  ``LOGIN_REFUSED_ISSUE_AFTER`` raises ``api_login_refused`` (the login is
  kept); it goes when an upload succeeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later
from homeassistant.util import dt as dt_util

from .api import (
    MAX_BATCH,
    ZevvyAuthenticationError,
    ZevvyClient,
    ZevvyConnectionError,
    ZevvyError,
    ZevvyLoginRefusedError,
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

# How long zevvy's API may refuse a freshly renewed login (401) before a repair
# issue says so; attempts go on meanwhile with the backoff of any other error.
LOGIN_REFUSED_ISSUE_AFTER: Final = timedelta(hours=1)

# An answer of zevvy about a register: HTTP status and message.
type Answer = tuple[int, str]


def _answer_text(answer: Answer) -> str:
    return f"HTTP {answer[0]}: {answer[1]}"


class SendError(StrEnum):
    """Why the last round stopped (the status' ``last_error``)."""

    AUTHENTICATION = "authentication"  # the login is no longer accepted
    LOGIN_REFUSED = "login_refused"  # the API refuses a renewed login (401)
    REFUSED = "refused"  # every register refused with the same answer
    RATE_LIMITED = "rate_limited"  # 429
    UNREACHABLE = "unreachable"  # timeouts, connection errors
    ERROR = "error"  # any other error zevvy answered

    @classmethod
    def of(cls, error: ZevvyError) -> SendError:
        """Return the kind of an error of the API client."""
        if isinstance(error, ZevvyAuthenticationError):
            return cls.AUTHENTICATION
        if isinstance(error, ZevvyLoginRefusedError):
            return cls.LOGIN_REFUSED
        if isinstance(error, ZevvyRateLimitError):
            return cls.RATE_LIMITED
        if isinstance(error, ZevvyConnectionError):
            return cls.UNREACHABLE
        return cls.ERROR


@dataclass(slots=True)
class _Aside:
    """A register set aside after an answer about it (403, 404, ...)."""

    device_ref: str
    register_ref: str
    backoff: float  # seconds
    until: datetime
    answer: Answer

    def to_json(self) -> dict[str, Any]:
        """Return the stored form (``until`` in epoch seconds)."""
        return {
            "device": self.device_ref,
            "register": self.register_ref,
            "backoff": self.backoff,
            "until": self.until.timestamp(),
            "status": self.answer[0],
            "message": self.answer[1],
        }

    @classmethod
    def from_json(cls, data: object) -> _Aside | None:
        """Return the stored form's register, or None if it is unusable."""
        if not isinstance(data, Mapping):
            return None
        try:
            return cls(
                str(data["device"]),
                str(data["register"]),
                float(data["backoff"]),
                dt_util.utc_from_timestamp(float(data["until"])),
                (int(data["status"]), str(data["message"])),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            return None


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
        """Initialize with what the outbox kept of an earlier run.

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
        # when the first of them that has readings is due.
        self._aside: dict[str, _Aside] = {}
        self._unsub_aside: CALLBACK_TYPE | None = None
        self._delivery = BatchDelivery(client, outbox)
        # Every register tried was refused with this answer (the account's).
        self.refused: Answer | None = None
        # Since when zevvy's API refuses the renewed login (401), and whether
        # the repair issue says so.
        self._login_refused_since: datetime | None = None
        self._login_issue = False
        self.stopped = False
        self.auth_failed = False
        self._reachable = True
        self.last_success: datetime | None = None
        self.last_error: SendError | None = None
        self.next_retry: datetime | None = None
        # The last zevvy error (time, type and message) for diagnostics; kept
        # after recovery. Messages of the API client's errors carry no secrets.
        self.last_error_detail: tuple[datetime, str] | None = None
        self._load_state()

    # --- state kept with the outbox ----------------------------------------------

    def _load_state(self) -> None:
        """Take registers set aside and the batch size from the outbox."""
        state = self.outbox.sender_state
        keys = set(self.outbox.keys)
        aside = state.get("aside")
        for key, raw in aside.items() if isinstance(aside, Mapping) else ():
            if key in keys and (found := _Aside.from_json(raw)) is not None:
                self._aside[key] = found
        size = state.get("batch_size")
        if isinstance(size, int) and 1 <= size < MAX_BATCH:
            self._delivery.batch_size = size
        refused = state.get("refused")
        if (
            isinstance(refused, list)
            and len(refused) == 2
            and isinstance(refused[0], int)
            and isinstance(refused[1], str)
            and any(a.answer == tuple(refused) for a in self._aside.values())
        ):
            self.refused = (refused[0], refused[1])
        if self.refused is not None:
            self.last_error = SendError.REFUSED
        # Repair issues do not survive a restart: raise them again.
        self._async_update_refusal_issues()

    @callback
    def _async_save_state(self) -> None:
        """Hand the outbox what is to be kept (written with it if changed)."""
        state: dict[str, Any] = {}
        if self._aside:
            state["aside"] = {key: a.to_json() for key, a in self._aside.items()}
        if self._delivery.batch_size < MAX_BATCH:
            state["batch_size"] = self._delivery.batch_size
        if self.refused is not None:
            state["refused"] = list(self.refused)
        self.outbox.set_sender_state(state)

    # --- status -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Return whether zevvy was reachable and took readings of the account."""
        return self._reachable and self.refused is None

    @property
    def retry_scheduled(self) -> bool:
        """Return whether a retry timer will send."""
        return self._unsub_retry is not None

    # --- starting rounds ----------------------------------------------------------

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
        self._make_due(self._aside)
        return await self.async_send()

    @callback
    def async_retry_register(self, key: str) -> None:
        """Send a set-aside register's readings again soon (its repair issue).

        While a retry timer is armed or a new login is needed, the register is
        due and goes with the account's next round.
        """
        self._make_due([key])
        self.async_request_send()

    @callback
    def async_retry_account(self) -> None:
        """Send everything again soon (the account's repair issues).

        Every set-aside register is due; a retry timer of an account-wide error
        is replaced by a round now (not while a new login is needed).
        """
        self._make_due(self._aside)
        if not self.stopped and not self.auth_failed:
            self.cancel_retry()
            self.async_start_send()

    def _make_due(self, keys: Iterable[str]) -> None:
        now = dt_util.utcnow()
        for key in keys:
            if (aside := self._aside.get(key)) is not None:
                aside.until = min(aside.until, now)
        self._async_save_state()

    def is_set_aside(self, key: str) -> bool:
        """Return whether a register is set aside (waits for its backoff)."""
        return key in self._aside

    # --- a round ------------------------------------------------------------------

    async def async_send(self) -> int:
        """Send the pending readings; return how many zevvy confirmed."""
        async with self._lock:
            if self.stopped:
                return 0
            sent, error = await self._async_round()
            self._async_after_round(sent, error)
            return sent

    async def _async_round(self) -> tuple[int, ZevvyError | None]:
        """Send every due queue oldest first; stop at the first account-wide error."""
        now = dt_util.utcnow()
        self._forget_removed()
        keys = [
            key
            for key in self.outbox.keys_with_pending()
            if (aside := self._aside.get(key)) is None or aside.until <= now
        ]
        if not keys:
            return 0, None
        semaphore = asyncio.Semaphore(PARALLEL_UPLOADS)
        failures: list[ZevvyError] = []
        refused: dict[str, Answer] = {}
        accepted: set[str] = set()
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
                        refused[key] = (err.status, err.message)
                        self._set_aside(batch.destination, err)
                        return
                    except ZevvyError as err:
                        failures.append(err)
                        return
                accepted.add(key)
                self._async_register_ok(batch.destination)

        await asyncio.gather(*(send_queue(key) for key in keys))
        self._async_account_refusal(refused, accepted)
        self._async_save_state()
        sent = self._delivery.confirmed - confirmed_before
        return sent, failures[0] if failures else None

    # --- registers set aside ------------------------------------------------------

    def _forget_removed(self) -> None:
        """A register's state goes with its queue (a meter deleted)."""
        keys = set(self.outbox.keys)
        for key in [key for key in self._aside if key not in keys]:
            del self._aside[key]
        if self.refused is not None and not any(
            aside.answer == self.refused for aside in self._aside.values()
        ):
            # The refused meters are all gone: nothing says the account is.
            self.refused = None
            self.last_error = None
            self._async_update_refusal_issues()

    def _set_aside(
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
        self._aside[destination.key] = _Aside(
            destination.device_ref,
            destination.register_ref,
            backoff,
            now + timedelta(seconds=backoff),
            (error.status, error.message),
        )
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

    @property
    def refused_text(self) -> str | None:
        """Return zevvy's answer refusing every register of the account."""
        return None if self.refused is None else _answer_text(self.refused)

    @callback
    def _async_account_refusal(
        self, refused: Mapping[str, Answer], accepted: set[str]
    ) -> None:
        """Tell a refused account from refused registers after a round.

        Every register tried refused with one and the same answer (two at
        least, or the answer the account is already refused with), none
        accepted: the account is refused (a wrong API address, a missing
        scope), not each register. One accepted register ends it.
        """
        answers = set(refused.values())
        if accepted:
            if self.refused is not None:
                LOGGER.info("zevvy takes readings of this account again")
            self.refused = None
        elif len(answers) == 1 and (len(refused) > 1 or self.refused in answers):
            answer = answers.pop()
            if self.refused != answer:
                LOGGER.warning(
                    "zevvy refused every meter of this account with the same "
                    "answer (%s); their readings wait in the outbox, see Repairs",
                    _answer_text(answer),
                )
            self.refused = answer
        self._async_update_refusal_issues()

    @callback
    def _async_update_refusal_issues(self) -> None:
        """Raise or clear the account's and the registers' refusal issues."""
        entry_id = self._entry.entry_id
        if self.refused is None:
            async_delete_issue(self.hass, IssueKind.REGISTERS_REFUSED, entry_id)
        else:
            async_create_issue(
                self.hass,
                IssueKind.REGISTERS_REFUSED,
                entry_id,
                None,
                {
                    "account": self._entry.title,
                    "answer": _answer_text(self.refused),
                    "count": str(
                        sum(a.answer == self.refused for a in self._aside.values())
                    ),
                },
            )
        for key, aside in self._aside.items():
            if aside.answer == self.refused:
                # Said once for the account.
                async_delete_issue(self.hass, IssueKind.REGISTER_REFUSED, entry_id, key)
                continue
            async_create_issue(
                self.hass,
                IssueKind.REGISTER_REFUSED,
                entry_id,
                key,
                {
                    "device": aside.device_ref,
                    "register": aside.register_ref,
                    "answer": _answer_text(aside.answer),
                },
            )

    @callback
    def _async_schedule_aside_retry(self) -> None:
        """Send again when the first set-aside register with readings is due.

        Only a register that has readings and whose backoff ends later arms the
        timer: one that is due now was tried by this round (or waits for the
        account's retry), and one without readings has nothing to send.
        """
        self._cancel_aside_timer()
        if self.stopped or not self._aside:
            return
        now = dt_util.utcnow()
        waiting = [
            aside.until
            for key in self.outbox.keys_with_pending()
            if (aside := self._aside.get(key)) is not None and aside.until > now
        ]
        if waiting:
            delay = (min(waiting) - now).total_seconds()
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

    # --- after a round ------------------------------------------------------------

    @callback
    def _async_after_round(self, sent: int, error: ZevvyError | None) -> None:
        now = dt_util.utcnow()
        if sent:
            self.last_success = now
            self._async_login_accepted()
        if error is None:
            if not self._reachable:
                LOGGER.info(
                    "zevvy is reachable again; %s readings delivered, %s waiting",
                    sent,
                    self.outbox.pending_count,
                )
            self._reachable = True
            self._backoff = 0.0
            self.last_error = None if self.refused is None else SendError.REFUSED
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
                if isinstance(error, ZevvyLoginRefusedError):
                    self._async_login_refused(now, error)
                self._async_schedule_retry(error)
        self._async_schedule_aside_retry()
        self._on_round()

    @callback
    def _async_login_refused(
        self, now: datetime, error: ZevvyLoginRefusedError
    ) -> None:
        """The API refused a renewed login: after an hour of it, say so."""
        since = self._login_refused_since
        if since is None:
            self._login_refused_since = now
            return
        if now - since < LOGIN_REFUSED_ISSUE_AFTER:
            return
        if not self._login_issue:
            LOGGER.error(
                "zevvy's API has refused the login since %s although zevvy renews "
                "it (%s); the login is kept and readings wait, see Repairs",
                since.isoformat(),
                error.message,
            )
        self._login_issue = True
        async_create_issue(
            self.hass,
            IssueKind.API_LOGIN_REFUSED,
            self._entry.entry_id,
            None,
            {
                "account": self._entry.title,
                "since": dt_util.as_local(since).strftime("%Y-%m-%d %H:%M"),
                "answer": error.message,
            },
        )

    @callback
    def _async_login_accepted(self) -> None:
        """An upload succeeded: the API takes the login."""
        self._login_refused_since = None
        if self._login_issue:
            self._login_issue = False
            LOGGER.info("zevvy's API takes the login again")
            async_delete_issue(
                self.hass, IssueKind.API_LOGIN_REFUSED, self._entry.entry_id
            )

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
        if self._reachable:
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
        self._reachable = False
        self.cancel_retry()
        self.next_retry = dt_util.utcnow() + timedelta(seconds=delay)
        self._unsub_retry = async_call_later(self.hass, delay, self._async_retry)

    @callback
    def _async_retry(self, _now: datetime) -> None:
        self._unsub_retry = None
        self.next_retry = None
        self.async_start_send()
