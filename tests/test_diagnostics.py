"""Diagnostics download: settings, meters, outbox, errors; secrets redacted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import json
from typing import Any

from aiohttp.test_utils import TestClient
from freezegun.api import FrozenDateTimeFactory

# The diagnostics download imports hassio lazily; importing it while the clock
# is frozen fails, so import it now.
from homeassistant.components import hassio  # noqa: F401
from homeassistant.config_entries import ConfigSubentry, ConfigSubentryDataWithId
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockUser,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion

from custom_components.zevvy.const import (
    CONF_REFRESH_TOKEN,
    DOMAIN,
    SOURCE_RUNNING_TOTAL,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.meters import meter_subentry_data, source_data
from zevvy_sandbox import ZevvySandbox

from .conftest import METER_ENTITY_ID

START = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)


async def _download(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    hass_admin_user: MockUser,
    entry: MockConfigEntry,
) -> dict[str, Any]:
    """Download the entry's diagnostics (with a token made at the frozen now)."""
    refresh_token = next(iter(hass_admin_user.refresh_tokens.values()))
    access_token = hass.auth.async_create_access_token(refresh_token)

    async def client() -> TestClient:
        return await hass_client(access_token)

    diagnostics: dict[str, Any] = await get_diagnostics_for_config_entry(
        hass, client, entry
    )
    return diagnostics


async def test_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    hass_admin_user: MockUser,
    meter_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
    snapshot: SnapshotAssertion,
) -> None:
    """A delivered reading, a manual one waiting while zevvy is down, a held one."""
    freezer.move_to(START)
    entry = meter_config_entry
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    freezer.move_to(START + timedelta(minutes=10))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert len(sandbox.readings()) == 1

    sandbox.inject_fault(status=503, count=100)
    await hass.services.async_call(
        DOMAIN,
        "send_reading",
        {
            "device_ref": "Heat pump",
            "register_ref": "Energy",
            "value": 1500,
            "unit": "Wh",
        },
        blocking=True,
    )

    # The meter goes down at 12:30: held back, with a repair issue.
    hass.states.async_set(
        METER_ENTITY_ID,
        "1000.0",
        {"unit_of_measurement": "kWh", "state_class": "total_increasing"},
    )
    # The retries (30 s, then 60 s) and the 12:30 tick, one at a time (a retry
    # due with the tick may join the tick's round, or not, as the load goes).
    for minutes in (23, 24, 25):
        freezer.move_to(START + timedelta(minutes=minutes))
        async_fire_time_changed(hass)
        await hass.async_block_till_done()

    # Not this entry's: left out.
    for domain, issue_id, data in (
        ("other", "other_issue", None),
        (DOMAIN, "reading_held_other", {"entry_id": "other", "kind": "reading_held"}),
    ):
        ir.async_create_issue(
            hass,
            domain,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="x",
            data=data,
        )
    hass.config_entries.async_add_subentry(
        entry, ConfigSubentry(data={}, subentry_type="other", title="x", unique_id="x")
    )
    await hass.async_block_till_done()

    # hass_client's own access token was made before the clock was frozen at
    # START (it lives 30 minutes): download with one made at the frozen now.
    diagnostics = await _download(hass, hass_client, hass_admin_user, entry)

    text = json.dumps(diagnostics)
    for secret in (
        sandbox.config.client_secret,
        sandbox.config.client_id,
        entry.data[CONF_REFRESH_TOKEN],
        sandbox.config.sub,
        "demo@example.ch",
    ):
        assert secret not in text
    # The sandbox runs on a free port: the addresses change from run to run.
    data = diagnostics["entry"]["data"]  # type: ignore[index]
    assert data["issuer"] == sandbox.issuer  # type: ignore[index,call-overload]
    assert data["api_url"] == sandbox.api_url  # type: ignore[index,call-overload]
    data["issuer"] = "http://sandbox/realms/zevvy"  # type: ignore[index]
    data["api_url"] = "http://sandbox/api"  # type: ignore[index]
    assert diagnostics == snapshot


async def test_diagnostics_explain_a_running_total(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    hass_admin_user: MockUser,
    mock_config_entry: MockConfigEntry,
    sandbox: ZevvySandbox,
    freezer: FrozenDateTimeFactory,
) -> None:
    """zevvy has 1231 kWh while the charger shows 1 kWh: the meter's source,
    start and what it counted since (across the charger's restart) say why."""
    freezer.move_to(START)
    attributes = {"unit_of_measurement": "kWh", "state_class": "total_increasing"}
    charger = er.async_get(hass).async_get_or_create(
        "sensor", "test", "session", suggested_object_id="charger_session"
    )
    hass.states.async_set(charger.entity_id, "2.0", attributes)
    start_at = int(datetime(2026, 11, 26, 12, 15, tzinfo=UTC).timestamp())
    meter = meter_subentry_data(
        charger,
        "Charger",
        "Energy",
        source_data(SOURCE_RUNNING_TOTAL, 1230.0, start_at),
    )
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=mock_config_entry.title,
        unique_id=mock_config_entry.unique_id,
        data=mock_config_entry.data,
        subentries_data=[
            ConfigSubentryDataWithId(
                data=meter["data"],
                subentry_id="charger",
                subentry_type=SUBENTRY_TYPE_METER,
                title=meter["title"],
                unique_id=meter["unique_id"],
            )
        ],
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    for minutes, value in ((5, "3.0"), (15, "0.5"), (20, "1.0")):
        freezer.move_to(START + timedelta(minutes=minutes))
        hass.states.async_set(charger.entity_id, value, attributes)
        await hass.async_block_till_done()
    freezer.move_to(START + timedelta(minutes=26))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert [r.value for r in sandbox.readings()] == [1230.0, 1231.0]

    diagnostics = await _download(hass, hass_client, hass_admin_user, entry)
    assert diagnostics["meters"]["charger"] == {
        "device_ref": "Charger",
        "register_ref": "Energy",
        "entity_id": "sensor.charger_session",
        "eligibility": "eligible",
        "state": "1.0",
        "unit": "kWh",
        "kind": "energy",
        "reading_unit": "kWh",
        "reading_source": "running_total",
        "start_value": 1230.0,
        "start_at": "2026-11-26T12:15:00+00:00",
        "start_seed": None,
        "running": {
            "sensor_value": 1.0,
            "last_reset": None,
            "last_state_at": "2026-11-26T12:25:00+00:00",
            "counted": 2.0,
            "counted_at_start": 1.0,
            "counted_since_start": 1.0,
            "reading": 1231.0,
        },
    }
