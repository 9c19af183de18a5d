"""The outbox's writes: an added reading is on disk when ``async_add`` returns.

Home Assistant's ``Store`` runs one write at a time; a delayed save (after a
confirmation) takes its snapshot when it writes, an immediate save (after an
add) before it waits for its turn. These tests hold the immediate save's
encoding in the executor while the delayed save writes, the widest window there
is on a slow disk.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
import threading
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.zevvy.api import Reading
from custom_components.zevvy.outbox import Destination, Outbox, store as outbox_store

ENTRY_ID = "entry1"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
QUARTER = timedelta(minutes=15)
METER = Destination("m1", "Dev", "Reg")


def _at(index: int) -> datetime:
    return T0 + index * QUARTER


class _HeldEncoding:
    """Hold the encoding of immediate saves (in the executor) until released."""

    def __init__(self, encode: Callable[..., Any]) -> None:
        self._encode = encode
        self.release = threading.Event()
        self.started = threading.Event()
        self.held = 0

    def __call__(self, snapshot: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            self.held += 1
            self.started.set()
            assert self.release.wait(10)
        return self._encode(snapshot)


async def _wait_for(hass: HomeAssistant, event: threading.Event) -> None:
    assert await hass.async_add_executor_job(event.wait, 10)


async def _stored_times(hass: HomeAssistant) -> list[datetime]:
    """Load the outbox as a restart would; return its pending readings' times."""
    box = Outbox(hass, ENTRY_ID)
    await box.async_load()
    batch = box.next_batch(METER.key, 100)
    return [] if batch is None else [reading.read_at for reading in batch.readings()]


async def test_add_on_disk_when_a_delayed_save_wrote_meanwhile(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    freezer: FrozenDateTimeFactory,
) -> None:
    """Two adds while a confirmation's delayed save writes: both are on disk.

    The first add's save takes its snapshot and encodes it; meanwhile a second
    add waits for its turn and the confirmation's delayed save writes a newer
    snapshot (with both adds). The first save then writes its older snapshot
    over it; the second add must not return before its reading is on disk again.
    """
    freezer.move_to(T0)
    box = Outbox(hass, ENTRY_ID)
    await box.async_load()
    await box.async_add(METER, [Reading(_at(0), 1.0)])
    batch = box.next_batch(METER.key, 1)
    assert batch is not None
    box.confirm(batch)  # a delayed save within SAVE_DELAY

    held = _HeldEncoding(outbox_store.encode)
    with patch.object(outbox_store, "encode", held):
        first = hass.async_create_task(box.async_add(METER, [Reading(_at(1), 2.0)]))
        await _wait_for(hass, held.started)
        second = hass.async_create_task(box.async_add(METER, [Reading(_at(2), 3.0)]))
        # The confirmation's delayed save writes now, with both readings.
        freezer.tick(timedelta(seconds=outbox_store.SAVE_DELAY + 0.1))
        async_fire_time_changed(hass)
        assert await _stored_times(hass) == [_at(1), _at(2)]
        held.release.set()
        await first
        await second

    assert first.done()
    assert second.done()
    # What a crash right now would leave: both readings wait.
    assert await _stored_times(hass) == [_at(1), _at(2)]


@pytest.mark.parametrize("delayed_first", [True, False])
async def test_final_state_on_disk_after_interleaved_saves(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, delayed_first: bool
) -> None:
    """A confirmation during an add's write is written soon, not lost."""
    freezer.move_to(T0)
    box = Outbox(hass, ENTRY_ID)
    await box.async_load()
    await box.async_add(METER, [Reading(_at(0), 1.0), Reading(_at(1), 2.0)])

    held = _HeldEncoding(outbox_store.encode)
    with patch.object(outbox_store, "encode", held):
        if delayed_first:
            batch = box.next_batch(METER.key, 1)
            assert batch is not None
            box.confirm(batch)
        adding = hass.async_create_task(box.async_add(METER, [Reading(_at(2), 3.0)]))
        await _wait_for(hass, held.started)
        if not delayed_first:
            batch = box.next_batch(METER.key, 1)
            assert batch is not None
            box.confirm(batch)
        held.release.set()
        await adding

    # The confirmation is written within the delay (no crash, no stop needed).
    freezer.tick(timedelta(seconds=outbox_store.SAVE_DELAY + 0.1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert await _stored_times(hass) == [_at(1), _at(2)]
