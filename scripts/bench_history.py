"""Benchmark of the history backfill and gap fill (100 meters x 30 days).

Run with ``scripts/bench_history`` (or as part of ``scripts/bench``); prints one
JSON summary. Not part of the tests.

A real Home Assistant core object with a real recorder (SQLite file in a
temporary directory) holding, per meter, 30 days of hourly statistics and 10
days of 5-minute statistics (the recorder's defaults), written by the
recorder's own import job. Measured: the ``zevvy.upload_history`` action over
30 days (wall time, the longest the event loop was blocked, Python memory),
delivery of the result to the sandbox, and the gap fill after a three-day gap.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
import json
import os
from pathlib import Path
import resource
import sys
import tempfile
import time
import tracemalloc
from typing import Any
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# ruff: noqa: E402
import aiohttp
from bench_zevvy import _setup as setup_entry
from homeassistant.components.recorder.db_schema import (
    Statistics,
    StatisticsShortTerm,
)
from homeassistant.components.recorder.models import (
    StatisticData,
    StatisticMeanType,
    StatisticMetaData,
)
from homeassistant.components.recorder.statistics import get_metadata
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import ServiceCall
from homeassistant.helpers.recorder import (
    async_initialize_recorder,
    get_instance,
    session_scope,
)
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import async_test_home_assistant
from sqlalchemy import insert

from custom_components.zevvy import gap_fill, services
from custom_components.zevvy.const import DOMAIN
from custom_components.zevvy.runtime import ZevvyRuntimeData
from zevvy_sandbox import SandboxConfig, ZevvySandbox

QUICK = "--quick" in sys.argv[1:]
METERS = 5 if QUICK else 100
DAYS = 3 if QUICK else 30
SHORT_DAYS = 2 if QUICK else 10
# The whole run ends with an error after this many seconds (never hangs).
TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT", "120" if QUICK else "1800"))
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
BASE = NOW - timedelta(days=DAYS + 1)


def _value(moment: datetime, index: int) -> float:
    """Meter ``index``'s reading (Wh) at ``moment``: 400 Wh an hour."""
    return 1_000_000.0 * index + (moment - BASE).total_seconds() / 9


def _rows(
    first: datetime, last: datetime, step: timedelta, index: int
) -> list[tuple[float, float]]:
    """(row start, state) pairs; a row's state is the reading at its end."""
    rows = []
    moment = first
    while moment < last:
        end = moment + step
        rows.append((moment.timestamp(), _value(end, index)))
        moment = end
    return rows


def _insert(hass: Any, table: Any, rows: dict[int, list[tuple[float, float]]]) -> None:
    """Bulk-insert statistics rows (recorder executor; much faster than importing)."""
    created = time.time()
    with session_scope(session=get_instance(hass).get_session()) as session:
        session.execute(
            insert(table),
            [
                {
                    "created_ts": created,
                    "metadata_id": metadata_id,
                    "start_ts": start,
                    "state": state,
                    "sum": 0.0,
                }
                for metadata_id, pairs in rows.items()
                for start, state in pairs
            ],
        )


async def _import_statistics(hass: Any, entity_ids: list[str]) -> float:
    """Write the statistics of every meter; return the seconds it took.

    The recorder's import job writes the first row of each meter (and its
    metadata); the rest is inserted in bulk.
    """
    began = time.perf_counter()
    instance = get_instance(hass)
    hour = NOW.replace(minute=0)
    first_hour = hour - timedelta(days=DAYS + 1)
    for entity_id in entity_ids:
        metadata = StatisticMetaData(
            has_mean=False,
            mean_type=StatisticMeanType.NONE,
            has_sum=True,
            name=None,
            source="recorder",
            statistic_id=entity_id,
            unit_of_measurement="Wh",
        )
        instance.async_import_statistics(
            metadata,
            [StatisticData(start=first_hour - timedelta(hours=1), state=0.0, sum=0.0)],
            Statistics,
        )
    await instance.async_block_till_done()
    metadata_ids = await instance.async_add_executor_job(
        lambda: get_metadata(hass, statistic_ids=set(entity_ids))
    )
    hourly: dict[int, list[tuple[float, float]]] = {}
    short: dict[int, list[tuple[float, float]]] = {}
    for index, entity_id in enumerate(entity_ids):
        metadata_id = metadata_ids[entity_id][0]
        hourly[metadata_id] = _rows(first_hour, hour, timedelta(hours=1), index)
        short[metadata_id] = _rows(
            hour - timedelta(days=SHORT_DAYS),
            NOW.replace(minute=NOW.minute - NOW.minute % 5),
            timedelta(minutes=5),
            index,
        )
    await instance.async_add_executor_job(_insert, hass, Statistics, hourly)
    await instance.async_add_executor_job(_insert, hass, StatisticsShortTerm, short)
    return time.perf_counter() - began


class LoopWatch:
    """Record the longest time the event loop did not run a 5 ms ticker."""

    def __init__(self) -> None:
        """Start idle."""
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last - 0.005)
            last = now

    def __enter__(self) -> LoopWatch:
        """Start watching."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()


async def run(
    hass: Any, sandbox: ZevvySandbox, session: aiohttp.ClientSession
) -> dict[str, Any]:
    """Backfill and gap fill of METERS meters; return the measurements."""
    coordinator = await setup_entry(hass, sandbox, session, METERS, "history")
    entry = coordinator.config_entry
    entry.runtime_data = ZevvyRuntimeData(
        tokens=None,  # type: ignore[arg-type]
        outbox=coordinator.outbox,
        pipeline=coordinator,
        coordinator=coordinator.coordinator,
    )
    entry.mock_state(hass, ConfigEntryState.LOADED)
    entity_ids = [subentry.data["entity_id"] for subentry in entry.subentries.values()]
    result: dict[str, Any] = {"meters": METERS, "days": DAYS}
    result["import_statistics_s"] = round(await _import_statistics(hass, entity_ids), 1)

    # The action: 30 days of every meter.
    sandbox.clear_requests()
    call = ServiceCall(
        hass,
        DOMAIN,
        services.SERVICE_UPLOAD_HISTORY,
        {"config_entry_id": entry.entry_id, "start": NOW - timedelta(days=DAYS)},
        return_response=True,
    )
    # No background sending while measuring the queueing.
    with patch.object(coordinator.sender, "async_request_send"):
        began = time.perf_counter()
        with LoopWatch() as watch:
            response = await services.async_upload_history(call)
        wall = time.perf_counter() - began
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert response is not None
    result["upload_history"] = {
        "readings_queued": response["queued"],
        "wall_s": round(wall, 2),
        "loop_longest_block_ms": round(watch.longest * 1000, 1),
        # Peak of the whole process (Home Assistant, recorder, sandbox).
        "process_peak_rss_mb": round(rss_after / 1024, 1),
    }
    began = time.perf_counter()
    with LoopWatch() as watch:
        sent = await coordinator.async_send()
    deliver = time.perf_counter() - began
    result["deliver"] = {
        "readings": sent,
        "wall_s": round(deliver, 2),
        "requests": len(sandbox.requests),
        "loop_longest_block_ms": round(watch.longest * 1000, 1),
    }

    # Gap fill: every meter last delivered three days ago.
    gap_start = NOW.replace(minute=0) - timedelta(days=3)
    for index, subentry_id in enumerate(entry.subentries):
        queue = coordinator.outbox._queues.get(subentry_id)  # noqa: SLF001
        assert queue is not None, subentry_id
        queue.last_time = int(gap_start.timestamp())
        queue.last_value = round(_value(gap_start, index) / 1000, 3)
    with patch.object(coordinator.sender, "async_request_send"):
        began = time.perf_counter()
        with LoopWatch() as watch:
            await gap_fill.async_gap_fill(hass, entry)
        wall = time.perf_counter() - began
    result["gap_fill_3_days"] = {
        "readings_queued": coordinator.outbox.pending_count,
        "readings_held": coordinator.outbox.held_count,
        "wall_s": round(wall, 2),
        "loop_longest_block_ms": round(watch.longest * 1000, 1),
    }
    # Python memory of the action (traced separately: tracing slows it down).
    with patch.object(coordinator.sender, "async_request_send"):
        tracemalloc.start()
        await services.async_upload_history(call)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    result["upload_history"]["python_peak_memory_mb"] = round(peak / 1e6, 1)
    await coordinator.async_stop()
    return result


async def main() -> dict[str, Any]:
    """Set up Home Assistant with a recorder and the sandbox; run the benchmark."""
    began = time.perf_counter()
    sandbox = ZevvySandbox(
        SandboxConfig(interval=0.05, access_token_lifetime=24 * 3600.0)
    )
    await sandbox.start(host="127.0.0.1", port=0)
    with tempfile.TemporaryDirectory() as config_dir:
        async with (
            async_test_home_assistant(config_dir=config_dir) as hass,
            aiohttp.ClientSession() as session,
        ):
            db_url = f"sqlite:///{config_dir}/home-assistant_v2.db"
            # Home Assistant's bootstrap does this before setting up the recorder.
            async_initialize_recorder(hass)
            assert await async_setup_component(
                hass, "recorder", {"recorder": {"db_url": db_url}}
            )
            await get_instance(hass).async_db_ready
            summary = await run(hass, sandbox, session)
            await hass.async_stop(force=True)
    await sandbox.stop()
    summary["total_s"] = round(time.perf_counter() - began, 1)
    return summary


async def _main_within_timeout() -> dict[str, Any]:
    return await asyncio.wait_for(main(), TIMEOUT_S)


if __name__ == "__main__":
    try:
        summary = asyncio.run(_main_within_timeout())
    except BaseException as err:  # noqa: BLE001 - any failure ends the benchmark
        print(f"benchmark failed: {type(err).__name__}: {err}", file=sys.stderr)
        sys.stderr.flush()
        # Not sys.exit: a thread left running by the failed setup (the
        # recorder's) would keep the process alive for ever.
        os._exit(1)
    summary["quick"] = QUICK
    print(json.dumps(summary, indent=2))
