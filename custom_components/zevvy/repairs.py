"""Repair flows: decisions the outbox cannot take alone.

* ``reading_held``: a meter reading dropped below the one before it. Either the
  meter was replaced (queue the held readings; they become the new baseline),
  the values are wrong (discard them), or, for a meter register whose sensor
  itself now reads below the reading before the drop (or that restarts from
  zero by its nature: a session or daily counter), the sensor restarts from
  zero (switch it to a running total that continues the series). A drop typed
  by hand (``send_reading``) while an ordinary meter's sensor reads on is not
  offered the switch: the running total would continue from the typo.
* ``batch_rejected``: zevvy refused readings (400/422). Send them again (after
  fixing the cause) or discard them.
* ``register_refused``: zevvy refused a register (403, 404, ...); its readings
  wait and are retried on a backoff. The user can retry now; while the account
  waits for a retry or a new login, the register goes with the account's next
  round, and the flow says when.
* ``registers_refused`` / ``api_login_refused``: zevvy refused the account
  (every register with the same answer; its API a renewed login). The user can
  retry now.
* ``outbox_overflow``: the outbox was full and the oldest readings were dropped;
  the user acknowledges.
* ``meter_missing`` / ``meter_not_eligible``: a meter's
  entity is gone or has no meter reading any more. The user restores the entity
  (the issue goes by itself) or deletes the meter here.
"""

from __future__ import annotations

from homeassistant.components.repairs import RepairsFlow
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.util import dt as dt_util

from .compat import RepairsFlowResult, vol
from .const import (
    CONF_ENTITY_REGISTRY_ID,
    CONF_READING_SOURCE,
    DOMAIN,
    SOURCE_RUNNING_TOTAL,
    SOURCE_SENSOR,
)
from .issues import METER_KINDS, IssueKind
from .meters import state_reading, stored_kind
from .pipeline import ReadingPipeline
from .sources import (
    async_switch_held_to_running_total,
    local_time,
    restarts_from_zero,
)
from .status import Decision

type IssueData = dict[str, str | int | float | None] | None


class _ZevvyRepairFlow(RepairsFlow):
    """A fix flow of one of an entry's issues (and of one queue or meter)."""

    def __init__(self, data: IssueData) -> None:
        """Remember which entry and queue (or meter) the issue is about."""
        self._entry_id = str((data or {}).get("entry_id", ""))
        self._key = str((data or {}).get("key", ""))

    def _pipeline(self) -> ReadingPipeline | None:
        entry = self.hass.config_entries.async_get_entry(self._entry_id)
        if entry is None or entry.state is not ConfigEntryState.LOADED:
            return None
        pipeline: ReadingPipeline = entry.runtime_data.pipeline
        return pipeline

    def _placeholders(self) -> dict[str, str] | None:
        """Return the issue's placeholders; its time in local time, as read."""
        issue = ir.async_get(self.hass).async_get_issue(DOMAIN, self.issue_id)
        if issue is None:
            return None
        placeholders = dict(issue.translation_placeholders or {})
        # Stored as ISO (UTC): shown in Home Assistant's time zone.
        if (moment := dt_util.parse_datetime(placeholders.get("time", ""))) and (
            moment.tzinfo is not None
        ):
            placeholders["time"] = local_time(moment.timestamp())
        return placeholders

    async def async_step_init(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """Start: the repairs manager passes the issue id as input here."""
        return await self.async_step_confirm()

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """Explain (subclasses act once the user confirms)."""
        return self.async_show_form(
            step_id="confirm",
            data_schema=vol.Schema({}),
            description_placeholders=self._placeholders(),
        )


class QueueRepairFlow(_ZevvyRepairFlow):
    """Held or rejected readings: release them (to be sent) or discard them."""

    def __init__(
        self, data: IssueData, release_option: str, release: Decision, discard: Decision
    ) -> None:
        """Remember the issue's queue, the menu's release option and decisions."""
        super().__init__(data)
        self._release_option = release_option
        self._release = release
        self._discard = discard

    async def async_step_init(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """Offer the choices (held readings of a meter register: three)."""
        if (pipeline := self._pipeline()) is None:
            return self.async_abort(reason="not_loaded")
        options = [self._release_option, "discard"]
        placeholders = self._placeholders() or {}
        offered = self._release is Decision.ACCEPT_HELD and self._sensor_dropped(
            pipeline, placeholders.get("previous")
        )
        if offered:
            options.append(SOURCE_RUNNING_TOTAL)
        return self.async_show_menu(
            step_id="init",
            menu_options=options,
            # The text explains the switch only where it is offered.
            description_placeholders={
                **placeholders,
                "running_total": "offered" if offered else "no",
            },
        )

    def _sensor_dropped(self, pipeline: ReadingPipeline, previous: str | None) -> bool:
        """Return whether the drop is the meter register's sensor restarting.

        Its sensor reads below the reading before the drop, or it is a sensor
        that restarts from zero (a ``last_reset``, a session or daily counter:
        it may have counted past that reading again by now). A value typed
        lower by hand while an ordinary meter's sensor reads on is not: a
        running total would continue from it.
        """
        subentry = pipeline.config_entry.subentries.get(self._key)
        if (
            subentry is None
            or subentry.data.get(CONF_READING_SOURCE, SOURCE_SENSOR) != SOURCE_SENSOR
        ):
            return False
        registry = er.async_get(self.hass)
        entity_entry = registry.async_get(subentry.data[CONF_ENTITY_REGISTRY_ID])
        if entity_entry is None:
            return False
        if restarts_from_zero(self.hass, entity_entry):
            return True
        value = state_reading(
            self.hass.states.get(entity_entry.entity_id), stored_kind(subentry.data)
        )
        try:
            before = float(previous or "")
        except ValueError:
            return False
        return value is not None and value < before

    async def async_step_running_total(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """The sensor restarts from zero: continue as a running total."""
        if (pipeline := self._pipeline()) is None:
            return self.async_abort(reason="not_loaded")
        await async_switch_held_to_running_total(
            self.hass, pipeline.config_entry, self._key
        )
        return self.async_create_entry(data={})

    async def async_step_release(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """Queue the readings again (the meter was replaced, or zevvy is fixed)."""
        return await self._async_decide(self._release)

    # The menu's option names (their texts are in strings.json).
    async_step_replaced = async_step_release
    async_step_retry = async_step_release

    async def async_step_discard(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """The readings are wrong (or zevvy will never take them): drop them."""
        return await self._async_decide(self._discard)

    async def _async_decide(self, decision: Decision) -> RepairsFlowResult:
        """Apply the user's decision to the queue (the pipeline sends)."""
        if (pipeline := self._pipeline()) is None:
            return self.async_abort(reason="not_loaded")
        await pipeline.async_decide(self._key, decision)
        return self.async_create_entry(data={})


class OverflowRepairFlow(_ZevvyRepairFlow):
    """The outbox dropped readings; the user acknowledges."""

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """Show what was lost; on confirm, reset the counter of dropped readings."""
        if user_input is None:
            return await super().async_step_confirm()
        if (pipeline := self._pipeline()) is not None:
            pipeline.outbox.acknowledge_overflow()
        return self.async_create_entry(data={})


class RegisterRepairFlow(_ZevvyRepairFlow):
    """zevvy refused a register: send its readings again now."""

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """Show zevvy's answer; on confirm, send the register's readings now."""
        if (pipeline := self._pipeline()) is None:
            return self.async_abort(reason="not_loaded")
        if user_input is None:
            return await super().async_step_confirm()
        sender = pipeline.sender
        sender.async_retry_register(self._key)
        # While the account waits, the register goes with its next round.
        if sender.auth_failed:
            return self.async_abort(reason="waiting_for_login")
        if sender.next_retry is not None:
            return self.async_abort(
                reason="waiting_for_zevvy",
                description_placeholders={
                    "time": dt_util.as_local(sender.next_retry).strftime("%H:%M")
                },
            )
        return self.async_create_entry(data={})


class AccountRefusedRepairFlow(_ZevvyRepairFlow):
    """zevvy refused the account (every register, or the API the login)."""

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """Show zevvy's answer and what to check; on confirm, send again now."""
        if (pipeline := self._pipeline()) is None:
            return self.async_abort(reason="not_loaded")
        if user_input is None:
            return await super().async_step_confirm()
        pipeline.sender.async_retry_account()
        return self.async_create_entry(data={})


class MeterRepairFlow(_ZevvyRepairFlow):
    """A meter's entity is gone or not a meter any more: delete the meter."""

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """Explain; on confirm, delete the meter's subentry (if still there)."""
        entry = self.hass.config_entries.async_get_entry(self._entry_id)
        if entry is None or self._key not in entry.subentries:
            return self.async_abort(reason="meter_gone")
        if user_input is None:
            return await super().async_step_confirm()
        # Its entities, device, readings and issues go with it.
        self.hass.config_entries.async_remove_subentry(entry, self._key)
        return self.async_create_entry(data={})


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: IssueData
) -> RepairsFlow:
    """Return the fix flow of one of our issues."""
    kind = (data or {}).get("kind")
    if kind == IssueKind.READING_HELD:
        # A reading dropped: the meter was replaced, or the values are wrong.
        return QueueRepairFlow(
            data, "replaced", Decision.ACCEPT_HELD, Decision.DISCARD_HELD
        )
    if kind == IssueKind.BATCH_REJECTED:
        # zevvy rejected readings: send them again or drop them.
        return QueueRepairFlow(
            data, "retry", Decision.RETRY_REJECTED, Decision.DISCARD_REJECTED
        )
    if kind == IssueKind.REGISTER_REFUSED:
        return RegisterRepairFlow(data)
    if kind in (IssueKind.REGISTERS_REFUSED, IssueKind.API_LOGIN_REFUSED):
        return AccountRefusedRepairFlow(data)
    if kind == IssueKind.OUTBOX_OVERFLOW:
        return OverflowRepairFlow(data)
    if kind in METER_KINDS:
        return MeterRepairFlow(data)
    raise ValueError(f"No fix flow for issue {issue_id}")
