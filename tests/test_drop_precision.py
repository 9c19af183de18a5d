"""The drop check knows each reading's precision from where it was made.

A sensor's readings carry the precision of its unit (and its suggested display
precision), a typed reading that of the number typed; the digits of a value in
kWh say nothing (1,235,000 Wh is 1235.000 kWh, not a whole-kWh reading).
Readings travel to the sandbox over HTTP; the clock moves with the freezer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState, ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er, issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.zevvy.const import (
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_REGISTER_REF,
    DOMAIN,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.pipeline import ReadingPipeline
from zevvy_sandbox import ZevvySandbox

START = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)
SENSOR = "sensor.meter"


def _quarter(minute: int) -> datetime:
    return datetime(2026, 11, 26, 12, 0, tzinfo=UTC) + timedelta(minutes=minute)


class Meter:
    """One energy sensor mapped to "Dev" / "Energy", and the clock."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: MockConfigEntry,
        freezer: FrozenDateTimeFactory,
        sandbox: ZevvySandbox,
    ) -> None:
        """Add the sensor (not yet a state) and its meter subentry."""
        self.hass = hass
        self.entry = entry
        self.freezer = freezer
        self.sandbox = sandbox
        self.entity = er.async_get(hass).async_get_or_create(
            "sensor", "test", "meter", suggested_object_id="meter"
        )
        subentry = ConfigSubentry(
            data={
                CONF_ENTITY_REGISTRY_ID: self.entity.id,
                CONF_ENTITY_ID: self.entity.entity_id,
                CONF_DEVICE_REF: "Dev",
                CONF_REGISTER_REF: "Energy",
            },
            subentry_type=SUBENTRY_TYPE_METER,
            title="Dev - Energy",
            unique_id=self.entity.id,
        )
        hass.config_entries.async_add_subentry(entry, subentry)
        self.key = subentry.subentry_id

    def show(self, state: str, unit: str, display_precision: int | None = None) -> None:
        """Set the sensor's state (and its suggested display precision)."""
        if display_precision is not None:
            er.async_get(self.hass).async_update_entity_options(
                self.entity.entity_id,
                "sensor",
                {"suggested_display_precision": display_precision},
            )
        self.hass.states.async_set(
            self.entity.entity_id,
            state,
            {"unit_of_measurement": unit, "state_class": "total_increasing"},
        )

    async def setup(self) -> ReadingPipeline:
        """Set up the entry; return its pipeline."""
        assert await self.hass.config_entries.async_setup(self.entry.entry_id)
        await self.hass.async_block_till_done()
        assert self.entry.state is ConfigEntryState.LOADED
        pipeline: ReadingPipeline = self.entry.runtime_data.pipeline
        return pipeline

    async def tick(self, minute: int) -> None:
        """Move the clock to the quarter hour ``minute`` after 12:00 and tick."""
        self.freezer.move_to(_quarter(minute) + timedelta(seconds=1))
        async_fire_time_changed(self.hass)
        await self.hass.async_block_till_done()

    def delivered(self) -> list[float]:
        """Return the values zevvy has, oldest first."""
        return [reading.value for reading in self.sandbox.readings("Dev", "Energy")]

    def held_issue(self) -> dict[str, str] | None:
        """Return the placeholders of the meter's "reading went down" issue."""
        issue = ir.async_get(self.hass).async_get_issue(
            DOMAIN, f"reading_held_{self.entry.entry_id}_{self.key}"
        )
        return None if issue is None else dict(issue.translation_placeholders or {})


@pytest.fixture
def meter(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
    sandbox: ZevvySandbox,
) -> Meter:
    """A meter, its entry added (not set up), the clock at 12:05 UTC."""
    freezer.move_to(START)
    mock_config_entry.add_to_hass(hass)
    return Meter(hass, mock_config_entry, freezer, sandbox)


@pytest.mark.parametrize(
    ("first", "second"),
    [(1_235_000, 1_234_200), (1_234_500, 1_234_450), (1_235_000, 1_234_999)],
)
async def test_a_wh_sensor_never_goes_down(
    hass: HomeAssistant, meter: Meter, first: int, second: int
) -> None:
    """1,235,000 Wh is no whole-kWh reading: any lower reading is held."""
    meter.show(str(first), "Wh")
    pipeline = await meter.setup()
    await meter.tick(15)
    meter.show(str(second), "Wh")
    await meter.tick(30)

    assert meter.delivered() == [first / 1000]
    assert pipeline.outbox.held_count == 1
    issue = meter.held_issue()
    assert issue is not None
    assert (issue["previous"], issue["value"]) == (
        f"{first / 1000:.3f}",
        f"{second / 1000:.3f}",
    )


async def test_a_kwh_sensor_of_the_same_precision_never_goes_down(
    hass: HomeAssistant, meter: Meter
) -> None:
    """1234.567 kWh then 1234.5 kWh from the same sensor and unit: held."""
    meter.show("1234.567", "kWh")
    pipeline = await meter.setup()
    await meter.tick(15)
    meter.show("1234.5", "kWh")
    await meter.tick(30)

    assert meter.delivered() == [1234.567]
    assert pipeline.outbox.held_count == 1


async def test_a_coarser_display_precision_is_no_drop(
    hass: HomeAssistant, meter: Meter
) -> None:
    """The sensor's suggested display precision went from 3 to 1 decimals.

    One step of the coarser precision (0.1 kWh) is tolerated at that change;
    after it, the readings of one decimal may not go down at all.
    """
    meter.show("1234.567", "kWh", display_precision=3)
    pipeline = await meter.setup()
    await meter.tick(15)
    meter.show("1234.5", "kWh", display_precision=1)
    await meter.tick(30)
    assert meter.delivered() == [1234.567, 1234.5]

    meter.show("1234.4", "kWh", display_precision=1)
    await meter.tick(45)
    assert meter.delivered() == [1234.567, 1234.5]
    assert pipeline.outbox.held_count == 1


async def test_a_typed_reading_beside_sensor_readings(
    hass: HomeAssistant, meter: Meter, freezer: FrozenDateTimeFactory
) -> None:
    """Values typed beside a Wh sensor's readings: the typed precision counts.

    Up to one step of the typed value's precision below the sensor's reading is
    no drop; more is. A typed value as precise as the sensor, or two typed
    values of the same precision, are checked strictly.
    """
    meter.show("1234000", "Wh")
    pipeline = await meter.setup()
    await meter.tick(15)
    freezer.move_to(_quarter(31))  # the 12:30 tick not fired

    async def send(value: float | str, unit: str = "kWh") -> str:
        response = await hass.services.async_call(
            DOMAIN,
            "send_reading",
            {"meter": SENSOR, "value": value, "unit": unit},
            blocking=True,
            return_response=True,
        )
        assert response is not None
        status: str = response["status"]
        return status

    # Typed with two decimals: 50 Wh below 1,234,000 Wh is more than one step.
    assert await send("1233.95") == "held"
    freezer.move_to(_quarter(46))
    # As precise as the Wh sensor (typed in Wh): 1 Wh lower is a drop.
    assert await send("1233999", "Wh") == "held"
    freezer.move_to(_quarter(61))
    # One decimal: one step (0.1 kWh) lower is no drop.
    assert await send("1233.9") == "queued"
    assert meter.delivered() == [1234.0, 1233.9]
    freezer.move_to(_quarter(76))
    # Typed readings of the same precision may not go down at all.
    assert await send(1233.8) == "held"
    assert meter.delivered() == [1234.0, 1233.9]
    assert pipeline.outbox.held_count == 3


async def test_a_typed_reading_in_an_old_gap_is_checked_against_zevvy(
    hass: HomeAssistant, meter: Meter, freezer: FrozenDateTimeFactory
) -> None:
    """A reading typed into a gap older than the last delivered reading.

    zevvy has 12:15 (1000 kWh), then nothing while the sensor was unavailable,
    then 13:45 and 14:00. A value typed for a quarter hour of the gap below the
    reading before the gap is a drop, also after a restart; one above the
    reading after the gap is a drop too; one between them is delivered.
    """
    meter.show("1000", "kWh", 3)
    await meter.setup()
    await meter.tick(15)
    meter.show("unavailable", "kWh")
    for minute in (30, 45, 60, 75, 90):
        await meter.tick(minute)
    meter.show("1010", "kWh")
    await meter.tick(105)
    meter.show("1011", "kWh")
    await meter.tick(120)
    assert meter.delivered() == [1000.0, 1010.0, 1011.0]

    def on_zevvy() -> list[float]:
        readings = meter.sandbox.readings("Dev", "Energy")
        return [r.value for r in sorted(readings, key=lambda r: r.read_at)]

    async def send(value: str, minute: int) -> str:
        response = await hass.services.async_call(
            DOMAIN,
            "send_reading",
            {"meter": SENSOR, "value": value, "time": _quarter(minute).isoformat()},
            blocking=True,
            return_response=True,
        )
        assert response is not None
        status: str = response["status"]
        return status

    # A typo: 999.5 for 12:45 is below zevvy's 1000 of 12:15.
    assert await send("999.5", 45) == "held"
    # Above zevvy's 1010 of 13:45: a drop against the reading after it.
    assert await send("1012", 90) == "held"
    # Between the two sides: delivered.
    assert await send("1004", 30) == "queued"
    await hass.async_block_till_done()
    assert on_zevvy() == [1000.0, 1004.0, 1010.0, 1011.0]

    # After a restart the outbox file still knows what zevvy has around the gap.
    assert await hass.config_entries.async_reload(meter.entry.entry_id)
    await hass.async_block_till_done()
    assert await send("1003", 60) == "held"  # below 12:30's 1004
    assert await send("1006", 75) == "queued"
    await hass.async_block_till_done()
    assert on_zevvy() == [1000.0, 1004.0, 1006.0, 1010.0, 1011.0]
