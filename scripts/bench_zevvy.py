"""Benchmark of collection, outbox and delivery against the sandbox.

Run with ``scripts/bench``; prints one JSON summary. ``--quick`` (what
``scripts/test`` runs, so the benchmark cannot rot) uses small sizes and takes a
few seconds; its numbers only show that every case still runs. Any error, or a
run longer than ``BENCH_TIMEOUT`` seconds, ends the script with exit code 1.

``--only-ticks`` measures only the event-loop time: the ticks (10, 100 and 1000
meters) and the enqueue of the 7-day backlog, nothing delivered but the ticks'
readings. ``--code DIR`` benchmarks the integration and sandbox of another tree
(``DIR/custom_components``, ``DIR/zevvy_sandbox``) with this script:
``scripts/bench_compare`` sets two trees side by side that way.

It uses a real Home Assistant core object (``async_test_home_assistant`` from
pytest-homeassistant-custom-component, with a temporary config directory, so
``Store`` writes real files), the real outbox and coordinator, and the sandbox
on a free local port in the same process and event loop (so network times
include the sandbox's own work).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
import json
import os
from pathlib import Path
import sys
import tempfile
import time
import tracemalloc
from typing import Any


def _option(name: str) -> str | None:
    """Return the value after ``name`` on the command line, None if absent."""
    args = sys.argv[1:]
    return args[args.index(name) + 1] if name in args[:-1] else None


CODE = Path(_option("--code") or Path(__file__).resolve().parent.parent).resolve()
sys.path.insert(0, str(CODE))

# ruff: noqa: E402
import aiohttp
from homeassistant.config_entries import ConfigSubentryData
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_test_home_assistant,
)

from custom_components.zevvy.api import (
    Reading,
    TokenManager,
    ZevvyAuth,
    ZevvyClient,
)
from custom_components.zevvy.const import (
    CONF_API_URL,
    CONF_CLIENT_ID,
    CONF_CLIENT_SECRET,
    CONF_DEVICE_REF,
    CONF_ENTITY_ID,
    CONF_ENTITY_REGISTRY_ID,
    CONF_ISSUER,
    CONF_REFRESH_TOKEN,
    CONF_REGISTER_REF,
    DOMAIN,
    MAX_BATCH,
    OUTBOX_MAX_READINGS,
    PARALLEL_UPLOADS,
    SUBENTRY_TYPE_METER,
)
from custom_components.zevvy.outbox import (
    Destination,
    Outbox,
    format as outbox_format,
)

try:
    from custom_components.zevvy.pipeline import ReadingPipeline
    from custom_components.zevvy.quarters import next_quarter
except ImportError:  # --code of a revision before the pipeline (issue 20)
    from custom_components.zevvy.coordinator import (  # type: ignore[attr-defined,no-redef]
        ZevvyCoordinator as ReadingPipeline,
        next_quarter,
    )
from zevvy_sandbox import SandboxConfig, ZevvySandbox

QUARTER = timedelta(minutes=15)
QUICK = "--quick" in sys.argv[1:]
ONLY_TICKS = "--only-ticks" in sys.argv[1:]
TICK_SIZES = (10, 50) if QUICK else (10, 100, 1000)
BACKLOG_METERS = 10 if QUICK else 100
# Ticks per size; the fastest counts (--only-ticks: 11, for steadier figures).
TICK_REPEATS = 11 if ONLY_TICKS else 3
BACKLOG_DAYS = 1 if QUICK else 7
# The outbox-at-bound case fills this many readings (the bound itself in a full run).
BOUND_READINGS = 20_000 if QUICK else None
# The naive sender stops after this many seconds and is extrapolated.
NAIVE_BUDGET_S = float(os.environ.get("BENCH_NAIVE_BUDGET", "2" if QUICK else "120"))
# Seconds the sandbox delays each answer in the latency case (a real link).
LATENCY_S = 0.05
# The naive sender's budget in the latency case (one reading per 50 ms).
LATENCY_NAIVE_BUDGET_S = 1.0 if QUICK else 20.0
# The whole run ends with an error after this many seconds (never hangs).
TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT", "120" if QUICK else "1800"))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def _login(session: aiohttp.ClientSession, sandbox: ZevvySandbox) -> str:
    config = sandbox.config
    auth = ZevvyAuth(session, config.client_id, config.client_secret, sandbox.issuer)
    authorization = await auth.request_device_authorization()
    sandbox.approve(authorization.user_code)
    tokens = await auth.wait_for_tokens(authorization)
    return tokens.refresh_token


async def _setup(
    hass: Any,
    sandbox: ZevvySandbox,
    session: aiohttp.ClientSession,
    meters: int,
    tag: str,
) -> ReadingPipeline:
    """An entry with ``meters`` Wh sensors, its outbox and coordinator."""
    registry = er.async_get(hass)
    subentries: list[ConfigSubentryData] = []
    for index in range(meters):
        entity = registry.async_get_or_create(
            "sensor", "bench", f"{tag}_{index}", suggested_object_id=f"{tag}_{index}"
        )
        hass.states.async_set(
            entity.entity_id,
            str(1_000_000 + index),
            {"unit_of_measurement": "Wh", "state_class": "total_increasing"},
        )
        subentries.append(
            ConfigSubentryData(
                data={
                    CONF_ENTITY_REGISTRY_ID: entity.id,
                    CONF_ENTITY_ID: entity.entity_id,
                    CONF_DEVICE_REF: f"{tag} meter {index}",
                    CONF_REGISTER_REF: "Energy",
                },
                subentry_type=SUBENTRY_TYPE_METER,
                title=f"{tag} meter {index}",
                unique_id=entity.id,
            )
        )
    refresh_token = await _login(session, sandbox)
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=tag,
        unique_id=tag,
        data={
            CONF_CLIENT_ID: sandbox.config.client_id,
            CONF_CLIENT_SECRET: sandbox.config.client_secret,
            CONF_ISSUER: sandbox.issuer,
            CONF_API_URL: sandbox.api_url,
            CONF_REFRESH_TOKEN: refresh_token,
        },
        subentries_data=subentries,
    )
    entry.add_to_hass(hass)
    auth = ZevvyAuth(
        session, sandbox.config.client_id, sandbox.config.client_secret, sandbox.issuer
    )
    tokens = TokenManager(auth, refresh_token)
    client = ZevvyClient(session, tokens, sandbox.api_url)
    outbox = Outbox(hass, entry.entry_id)
    await outbox.async_load()
    return ReadingPipeline(hass, entry, client, outbox)


async def _tick(coordinator: ReadingPipeline, read_at: datetime) -> dict[str, Any]:
    """One quarter hour: loop time to collect and enqueue, save, delivery."""
    hass = coordinator.hass
    for state in hass.states.async_all("sensor"):
        hass.states.async_set(
            state.entity_id, str(float(state.state) + 250), state.attributes
        )
    outbox = coordinator.outbox
    real_save = outbox.async_save

    async def no_save() -> None:
        return None

    # Event-loop time: collect + enqueue run without awaiting anything but the
    # save, which is measured on its own below.
    outbox.async_save = no_save  # type: ignore[method-assign]
    start, start_cpu = time.perf_counter(), time.process_time()
    await coordinator.async_collect(read_at)
    collect = time.perf_counter() - start
    # The same in CPU time of this process: on a busy machine (other processes
    # taking turns on the cores) much steadier than the wall clock.
    collect_cpu = time.process_time() - start_cpu
    outbox.async_save = real_save  # type: ignore[method-assign]

    start = time.perf_counter()
    snapshot = outbox.storage.take_snapshot()
    snapshot_loop = time.perf_counter() - start
    start = time.perf_counter()
    outbox_format.encode(snapshot)
    encode = time.perf_counter() - start
    start = time.perf_counter()
    await outbox.async_save()
    save_wall = time.perf_counter() - start

    start = time.perf_counter()
    sent = await coordinator.async_send()
    deliver = time.perf_counter() - start
    return {
        "meters": len(coordinator.config_entry.subentries),
        "collect_enqueue_loop_ms": _ms(collect),
        "collect_enqueue_cpu_ms": _ms(collect_cpu),
        "save_snapshot_loop_ms": _ms(snapshot_loop),
        "save_encode_executor_ms": _ms(encode),
        "save_wall_ms": _ms(save_wall),
        "deliver_wall_ms": _ms(deliver),
        "delivered": sent,
    }


async def _backlog(
    coordinator: ReadingPipeline,
    start: datetime,
    prefix: str = "backlog",
    *,
    deliver: bool = True,
) -> dict[str, Any]:
    """Seven days of quarter hours for 100 meters, queued then delivered.

    Without ``deliver``: only queued (the event-loop time of the enqueue).
    """
    outbox = coordinator.outbox
    slots = BACKLOG_DAYS * 96
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    fill_start, fill_start_cpu = time.perf_counter(), time.process_time()
    for index, subentry_id in enumerate(coordinator.config_entry.subentries):
        outbox.add(
            Destination(subentry_id, f"{prefix} meter {index}", "Energy"),
            (Reading(start + i * QUARTER, 1000.0 + i * 0.25) for i in range(slots)),
        )
    fill = time.perf_counter() - fill_start
    fill_cpu = time.process_time() - fill_start_cpu
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pending = outbox.pending_count
    if not deliver:
        return {
            "meters": len(coordinator.config_entry.subentries),
            "readings": pending,
            "fill_loop_ms": _ms(fill),
            "fill_cpu_ms": _ms(fill_cpu),
        }
    start_save = time.perf_counter()
    await outbox.async_save()
    save = time.perf_counter() - start_save
    path = Path(coordinator.hass.config.path(".storage", outbox.storage.key))
    size = path.stat().st_size

    requests_before = len(coordinator.hass.data.get("bench_requests", []))
    start_send = time.perf_counter()
    sent = await coordinator.async_send()
    deliver = time.perf_counter() - start_send
    await outbox.async_flush()
    return {
        "meters": len(coordinator.config_entry.subentries),
        "readings": pending,
        "fill_loop_ms": _ms(fill),
        "fill_cpu_ms": _ms(fill_cpu),
        "outbox_memory_bytes": current - before,
        "outbox_peak_memory_bytes": peak - before,
        "bytes_per_reading": round((current - before) / pending, 1),
        "save_wall_ms": _ms(save),
        "store_file_bytes": size,
        "deliver_wall_s": round(deliver, 2),
        "delivered": sent,
        "readings_per_s": round(sent / deliver),
        "requests": requests_before,
    }


async def _naive(
    client: ZevvyClient,
    start: datetime,
    meters: int,
    slots: int,
    prefix: str = "naive",
    budget: float = NAIVE_BUDGET_S,
) -> dict[str, Any]:
    """Baseline: one request per reading, one after the other (time-boxed)."""
    total = meters * slots
    sent = 0
    begin = time.perf_counter()
    deadline = begin + budget
    for slot in range(slots):
        for meter in range(meters):
            await client.bulk_create(
                f"{prefix} meter {meter}",
                "Energy",
                [Reading(start + slot * QUARTER, 1000.0 + slot * 0.25)],
            )
            sent += 1
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - begin
    per_reading = elapsed / sent
    return {
        "readings": total,
        "sent_in_budget": sent,
        "elapsed_s": round(elapsed, 2),
        "ms_per_reading": round(per_reading * 1000, 3),
        "deliver_wall_s_extrapolated": round(per_reading * total, 1),
        "extrapolated": sent < total,
    }


async def _raw(
    client: ZevvyClient, start: datetime, meters: int, slots: int, prefix: str
) -> dict[str, Any]:
    """The ceiling: a bare client sending the sender's batches, no outbox.

    Batches of MAX_BATCH per meter, PARALLEL_UPLOADS requests at a time, as the
    sender sends them, without collecting, storing or confirming anything.
    """
    semaphore = asyncio.Semaphore(PARALLEL_UPLOADS)
    readings = [Reading(start + i * QUARTER, 1000.0 + i * 0.25) for i in range(slots)]
    requests = 0

    async def send_meter(meter: int) -> None:
        nonlocal requests
        for first in range(0, slots, MAX_BATCH):
            async with semaphore:
                await client.bulk_create(
                    f"{prefix} meter {meter}",
                    "Energy",
                    readings[first : first + MAX_BATCH],
                )
                requests += 1

    begin = time.perf_counter()
    await asyncio.gather(*(send_meter(meter) for meter in range(meters)))
    elapsed = time.perf_counter() - begin
    return {
        "readings": meters * slots,
        "deliver_wall_s": round(elapsed, 2),
        "readings_per_s": round(meters * slots / elapsed),
        "requests": requests,
    }


def _side_by_side(
    sender: dict[str, Any], raw: dict[str, Any], naive: dict[str, Any]
) -> dict[str, Any]:
    """Seconds to deliver the same backlog three ways."""
    return {
        "sender_s": sender["deliver_wall_s"],
        "raw_client_s": raw["deliver_wall_s"],
        "naive_s_extrapolated": naive["deliver_wall_s_extrapolated"],
        "sender_vs_raw": round(sender["deliver_wall_s"] / raw["deliver_wall_s"], 2),
        "naive_vs_sender": round(
            naive["deliver_wall_s_extrapolated"] / sender["deliver_wall_s"], 1
        ),
    }


async def _outbox_at_bound(hass: Any) -> dict[str, Any]:
    """The outbox full (OUTBOX_MAX_READINGS): memory and save costs."""
    limit = BOUND_READINGS or OUTBOX_MAX_READINGS
    meters = 100
    per_meter = limit // meters
    outbox = Outbox(hass, "bench_bound")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for meter in range(meters):
        outbox.add(
            Destination(f"m{meter}", f"bound meter {meter}", "Energy"),
            (Reading(start + i * QUARTER, 1000.0 + i * 0.25) for i in range(per_meter)),
        )
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    begin = time.perf_counter()
    snapshot = outbox.storage.take_snapshot()
    snapshot_loop = time.perf_counter() - begin
    begin = time.perf_counter()
    outbox_format.encode(snapshot)
    encode = time.perf_counter() - begin
    begin = time.perf_counter()
    await outbox.async_save()
    save = time.perf_counter() - begin
    # One more tick of 100 readings beyond the bound: drop the oldest 100.
    begin = time.perf_counter()
    for meter in range(meters):
        outbox.add(
            Destination(f"m{meter}", f"bound meter {meter}", "Energy"),
            (Reading(start + per_meter * QUARTER, 5000.0),),
        )
    overflow = time.perf_counter() - begin
    path = Path(hass.config.path(".storage", f"{DOMAIN}.bench_bound.outbox"))
    result = {
        "readings": limit,
        "outbox_memory_bytes": current - before,
        "bytes_per_reading": round((current - before) / limit, 1),
        "outbox_peak_memory_bytes": peak - before,
        "save_snapshot_loop_ms": _ms(snapshot_loop),
        "save_encode_executor_ms": _ms(encode),
        "save_wall_ms": _ms(save),
        "store_file_bytes": path.stat().st_size,
        "tick_of_100_at_bound_loop_ms": _ms(overflow),
    }
    await outbox.async_remove()
    return result


async def main() -> dict[str, Any]:
    """Run every measurement and return the summary."""
    began = time.perf_counter()
    sandbox = ZevvySandbox(
        SandboxConfig(interval=0.05, access_token_lifetime=24 * 3600.0)
    )
    await sandbox.start(host="127.0.0.1", port=0)
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as config_dir:
        async with (
            async_test_home_assistant(config_dir=config_dir) as hass,
            aiohttp.ClientSession() as session,
        ):
            # The issue registry and friends are loaded by the test helper.
            ticks = []
            # Quarter hours after now: the states set before each tick are the
            # readings of those quarter hours (a reading is never older).
            read_at = next_quarter(datetime.now(UTC))
            for count in TICK_SIZES:
                coordinator = await _setup(hass, sandbox, session, count, f"t{count}")
                await coordinator.async_send()  # warm up: token, connections
                results = [
                    await _tick(coordinator, read_at + i * QUARTER)
                    for i in range(TICK_REPEATS)
                ]
                best = min(results, key=lambda r: r["collect_enqueue_loop_ms"])
                worst_deliver = max(r["deliver_wall_ms"] for r in results)
                fastest_cpu = min(r["collect_enqueue_cpu_ms"] for r in results)
                ticks.append(
                    {
                        **best,
                        "collect_enqueue_cpu_ms": fastest_cpu,
                        "deliver_wall_ms_max": worst_deliver,
                    }
                )
                await coordinator.async_stop()
            summary["tick"] = ticks

            coordinator = await _setup(
                hass, sandbox, session, BACKLOG_METERS, "backlog"
            )
            backlog_start = datetime(2026, 11, 19, 0, 0, tzinfo=UTC)
            if ONLY_TICKS:
                # The enqueue alone (as in the full run: traced by tracemalloc).
                summary["backlog_7d_100_meters"] = await _backlog(
                    coordinator, backlog_start, deliver=False
                )
                await coordinator.async_stop()
                await hass.async_stop(force=True)
                await sandbox.stop()
                summary["code"] = str(CODE)
                summary["total_s"] = round(time.perf_counter() - began, 1)
                return summary
            sandbox.clear_requests()
            summary["backlog_7d_100_meters"] = await _backlog(
                coordinator, backlog_start
            )
            summary["backlog_7d_100_meters"]["requests"] = len(
                [r for r in sandbox.requests if r.path.endswith("_bulk_create")]
            )
            await coordinator.async_stop()

            summary["naive_baseline"] = await _naive(
                coordinator.client, backlog_start, BACKLOG_METERS, BACKLOG_DAYS * 96
            )
            batched = summary["backlog_7d_100_meters"]["deliver_wall_s"]
            naive = summary["naive_baseline"]["deliver_wall_s_extrapolated"]
            summary["speedup_vs_naive"] = round(naive / batched, 1) if batched else None
            slots = BACKLOG_DAYS * 96
            summary["raw_client"] = await _raw(
                coordinator.client, backlog_start, BACKLOG_METERS, slots, "raw"
            )
            summary["side_by_side"] = _side_by_side(
                summary["backlog_7d_100_meters"],
                summary["raw_client"],
                summary["naive_baseline"],
            )

            # The same backlog over a link with 50 ms per answer.
            sandbox.configure(latency=LATENCY_S)
            coordinator = await _setup(
                hass, sandbox, session, BACKLOG_METERS, "latency"
            )
            sandbox.clear_requests()
            latency_sender = await _backlog(coordinator, backlog_start, "latency")
            latency_sender["requests"] = len(
                [r for r in sandbox.requests if r.path.endswith("_bulk_create")]
            )
            await coordinator.async_stop()
            latency_raw = await _raw(
                coordinator.client, backlog_start, BACKLOG_METERS, slots, "lraw"
            )
            latency_naive = await _naive(
                coordinator.client,
                backlog_start,
                BACKLOG_METERS,
                slots,
                "lnaive",
                LATENCY_NAIVE_BUDGET_S,
            )
            summary["latency_50ms"] = {
                "sender": latency_sender,
                "raw_client": latency_raw,
                "naive": latency_naive,
                "side_by_side": _side_by_side(
                    latency_sender, latency_raw, latency_naive
                ),
            }
            sandbox.configure(latency=0.0)
            summary["outbox_at_bound"] = await _outbox_at_bound(hass)
            await hass.async_stop(force=True)
    await sandbox.stop()
    summary["constants"] = {
        "MAX_BATCH": coordinator.client
        and __import__(
            "custom_components.zevvy.const", fromlist=["MAX_BATCH"]
        ).MAX_BATCH,
        "PARALLEL_UPLOADS": __import__(
            "custom_components.zevvy.const", fromlist=["PARALLEL_UPLOADS"]
        ).PARALLEL_UPLOADS,
        "OUTBOX_MAX_READINGS": OUTBOX_MAX_READINGS,
    }
    summary["python"] = sys.version.split()[0]
    summary["cpus"] = os.cpu_count()
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
