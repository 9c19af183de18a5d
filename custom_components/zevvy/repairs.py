"""Repair flows: decisions the outbox cannot take alone.

* ``reading_held``: a meter reading dropped below the one before it. Either the
  meter was replaced (queue the held readings; they become the new baseline) or
  the values are wrong (discard them).
* ``batch_rejected``: zevvy refused readings (400/422). Send them again (after
  fixing the cause) or discard them.
* ``outbox_overflow``: the outbox was full and the oldest readings were dropped;
  the user acknowledges.
* ``meter_missing`` / ``meter_not_eligible``: a meter's
  entity is gone or has no meter reading any more. The user restores the entity
  (the issue goes by itself) or deletes the meter here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeassistant import data_entry_flow
from homeassistant.components.repairs import RepairsFlow
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import voluptuous as vol

from .const import DOMAIN
from .coordinator import Decision
from .issues import METER_KINDS, IssueKind

if TYPE_CHECKING:
    from .coordinator import ZevvyCoordinator

type IssueData = dict[str, str | int | float | None] | None


class _OutboxRepairFlow(RepairsFlow):
    """A fix flow acting on one entry's outbox."""

    def __init__(self, data: IssueData) -> None:
        """Remember which entry and queue the issue is about."""
        self._entry_id = str((data or {}).get("entry_id", ""))
        self._key = str((data or {}).get("key", ""))

    def _coordinator(self) -> ZevvyCoordinator | None:
        entry = self.hass.config_entries.async_get_entry(self._entry_id)
        if entry is None or entry.state is not ConfigEntryState.LOADED:
            return None
        coordinator: ZevvyCoordinator = entry.runtime_data.coordinator
        return coordinator

    def _placeholders(self) -> dict[str, str] | None:
        issue = ir.async_get(self.hass).async_get_issue(DOMAIN, self.issue_id)
        return dict(issue.translation_placeholders or {}) if issue else None

    def _menu(self, options: list[str]) -> data_entry_flow.FlowResult:
        if self._coordinator() is None:
            return self.async_abort(reason="not_loaded")
        return self.async_show_menu(
            step_id="init",
            menu_options=options,
            description_placeholders=self._placeholders(),
        )

    async def _async_decide(self, decision: Decision) -> data_entry_flow.FlowResult:
        """Apply the user's decision to the queue (the coordinator sends)."""
        if (coordinator := self._coordinator()) is None:
            return self.async_abort(reason="not_loaded")
        await coordinator.async_decide(self._key, decision)
        return self.async_create_entry(data={})


class HeldReadingRepairFlow(_OutboxRepairFlow):
    """A reading dropped: meter replaced, or a wrong value."""

    async def async_step_init(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        """Offer the two choices."""
        return self._menu(["replaced", "discard"])

    async def async_step_replaced(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        """The meter was replaced: queue the held readings."""
        return await self._async_decide(Decision.ACCEPT_HELD)

    async def async_step_discard(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        """The held readings are wrong: drop them."""
        return await self._async_decide(Decision.DISCARD_HELD)


class RejectedBatchRepairFlow(_OutboxRepairFlow):
    """zevvy rejected readings: send them again or drop them."""

    async def async_step_init(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        """Offer the two choices."""
        return self._menu(["retry", "discard"])

    async def async_step_retry(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        """Queue the rejected readings again."""
        return await self._async_decide(Decision.RETRY_REJECTED)

    async def async_step_discard(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        """Forget the rejected readings."""
        return await self._async_decide(Decision.DISCARD_REJECTED)


class OverflowRepairFlow(_OutboxRepairFlow):
    """The outbox dropped readings; the user acknowledges."""

    async def async_step_init(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        """Show what was lost."""
        return await self.async_step_confirm()

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        """On confirm, reset the counter of dropped readings."""
        if user_input is not None:
            if (coordinator := self._coordinator()) is not None:
                coordinator.outbox.acknowledge_overflow()
            return self.async_create_entry(data={})
        return self.async_show_form(
            step_id="confirm",
            data_schema=vol.Schema({}),
            description_placeholders=self._placeholders(),
        )


class MeterRepairFlow(RepairsFlow):
    """A meter's entity is gone or not a meter any more: delete the meter."""

    def __init__(self, data: IssueData) -> None:
        """Remember which meter (subentry) the issue is about."""
        self._subentry_id = str((data or {}).get("key", ""))

    async def async_step_init(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        """Start: the repairs manager passes the issue id as input here."""
        return await self.async_step_confirm()

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> data_entry_flow.FlowResult:
        """Explain; on confirm, delete the meter's subentry."""
        entry = next(
            (
                entry
                for entry in self.hass.config_entries.async_entries(DOMAIN)
                if self._subentry_id in entry.subentries
            ),
            None,
        )
        if entry is None:
            return self.async_abort(reason="meter_gone")
        if user_input is not None:
            # Its entities, device, readings and issues go with it.
            self.hass.config_entries.async_remove_subentry(entry, self._subentry_id)
            return self.async_create_entry(data={})
        issue = ir.async_get(self.hass).async_get_issue(DOMAIN, self.issue_id)
        return self.async_show_form(
            step_id="confirm",
            data_schema=vol.Schema({}),
            description_placeholders=dict(issue.translation_placeholders or {})
            if issue
            else None,
        )


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: IssueData
) -> RepairsFlow:
    """Return the fix flow of one of our issues."""
    kind = (data or {}).get("kind")
    if kind == IssueKind.READING_HELD:
        return HeldReadingRepairFlow(data)
    if kind == IssueKind.BATCH_REJECTED:
        return RejectedBatchRepairFlow(data)
    if kind == IssueKind.OUTBOX_OVERFLOW:
        return OverflowRepairFlow(data)
    if kind in METER_KINDS:
        return MeterRepairFlow(data)
    raise ValueError(f"No fix flow for issue {issue_id}")
