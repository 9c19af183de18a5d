"""Seeded simulation runs, checked against the independent model.

The fixed CI seeds below cover more than 60 simulated days; the seeds that found
a defect are kept as regular tests too (``FOUND_RUNS``). ``scripts/soak``
runs other seeds through the same test with environment variables:
``ZEVVY_SIM_SEEDS`` ("7", "1,5" or "1-200"), ``ZEVVY_SIM_DAYS``,
``ZEVVY_SIM_METERS``, ``ZEVVY_SIM_OPEN_DEFECTS=1`` (also the events of
``sim.OPEN_DEFECTS``) and ``ZEVVY_SIM_REPORT`` (a file that gets one JSON line
per run).
"""

from __future__ import annotations

import json
import os
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
import pytest

from .sim import Simulation

# A run of several simulated days takes 10 to 40 s on a loaded 2-core machine:
# more than the suite's per-test limit for a hung test (60 s) allows for.
pytestmark = pytest.mark.timeout(600)

# (seed, simulated days, meters): 60 days in all.
CI_RUNS: list[tuple[int, float, int]] = [
    (seed, 5, 4 + seed % 3) for seed in range(1, 13)
]

# Seeds that found a defect (sim.FIXED_DEFECTS), each run until a little after
# the quarter hour it got wrong (the same events as its 5-day run up to then):
# "switch back at a cycle's start" (seed 15 on day 3.05, seed 17 on day 2.25),
# "switch back after a late reset" (soak seed 1843 on day 1.41, seed 1100 on
# day 6.79); and seed 1916 (day 5.11), which found the model wrong: a switch
# made while the integration waited for a new login counts from its next start.
# Each without the events added since it was found (a new event changes what
# the others meet), so that it replays the run that found it.
BEFORE_BAD_READINGS = ("bad reading", "value before its last_reset")
# A daily counter's value that falls before its new last_reset follows came
# after those.
BEFORE_FALLS = ("value before its last_reset",)
FOUND_RUNS: list[tuple[int, float, int, tuple[str, ...]]] = [
    (15, 3.5, 5, BEFORE_BAD_READINGS),
    (17, 2.75, 5, BEFORE_BAD_READINGS),
    (1843, 1.75, 5, BEFORE_BAD_READINGS),
    (1100, 7, 5, BEFORE_BAD_READINGS),
    (1916, 7, 5, BEFORE_BAD_READINGS),
    # A refusal that ended later than planned (Home Assistant busy at its end)
    # was excused only from its planned end (an error of the check).
    (2187, 7, 5, BEFORE_FALLS),
]


def _runs() -> list[tuple[int, float, int]]:
    seeds = os.environ.get("ZEVVY_SIM_SEEDS")
    if not seeds:
        return CI_RUNS
    days = float(os.environ.get("ZEVVY_SIM_DAYS", "7"))
    meters = int(os.environ.get("ZEVVY_SIM_METERS", "5"))
    if "-" in seeds:
        first, last = (int(part) for part in seeds.split("-"))
        chosen = list(range(first, last + 1))
    else:
        chosen = [int(part) for part in seeds.split(",")]
    return [(seed, days, meters) for seed in chosen]


def _report(line: dict[str, Any]) -> None:
    path = os.environ.get("ZEVVY_SIM_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as file:  # noqa: PTH123
            file.write(json.dumps(line) + "\n")


@pytest.mark.parametrize(("seed", "days", "meters"), _runs())
async def test_seed(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    socket_enabled: None,
    seed: int,
    days: float,
    meters: int,
) -> None:
    """A seeded run keeps invariants 1-6 (see sim.Simulation.check)."""
    await _run(hass, freezer, hass_storage, seed, days, meters)


@pytest.mark.parametrize(("seed", "days", "meters", "without"), FOUND_RUNS)
async def test_found_seed(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    socket_enabled: None,
    seed: int,
    days: float,
    meters: int,
    without: tuple[str, ...],
) -> None:
    """A seed that once found a defect keeps invariants 1-6."""
    await _run(hass, freezer, hass_storage, seed, days, meters, without)


async def _run(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    seed: int,
    days: float,
    meters: int,
    without: tuple[str, ...] = (),
) -> None:
    simulation = Simulation(
        hass,
        freezer,
        hass_storage,
        seed=seed,
        days=days,
        meters=meters,
        without=without,
    )
    try:
        run = await simulation.async_run()
    except Exception as err:
        _report(
            {
                "seed": seed,
                "days": days,
                "ok": False,
                "failure": str(err).splitlines()[0],
                "injected": dict(simulation.run.injected),
            }
        )
        raise
    _report({"seed": seed, "days": days, "ok": True, "injected": dict(run.injected)})


async def test_same_seed_same_run(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    socket_enabled: None,
) -> None:
    """The same seed twice: the same events, and zevvy holds the same readings."""
    first = await Simulation(
        hass, freezer, hass_storage, seed=11, days=2, meters=5, tag="a"
    ).async_run()
    second = await Simulation(
        hass, freezer, hass_storage, seed=11, days=2, meters=5, tag="b"
    ).async_run()
    other = await Simulation(
        hass, freezer, hass_storage, seed=12, days=2, meters=5, tag="c"
    ).async_run()
    assert first.trace == second.trace
    assert first.digest == second.digest
    assert other.digest != first.digest
