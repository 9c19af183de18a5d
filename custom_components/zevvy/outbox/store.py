"""Persistence of the outbox: Home Assistant's ``Store``, one file per entry.

Saving: ``Outbox.async_add`` awaits the write (a crash right after a tick loses
nothing; a delayed save that wrote a newer snapshot meanwhile is written over
again, see ``OutboxStore.async_save``); confirmations are saved with
``Store.async_delay_save`` and a short delay (``SAVE_DELAY``): several coalesce, Home Assistant writes a pending one
when it stops, and a confirmation lost in a crash only means that a reading is
sent again and zevvy answers 409 (already present). Changes kept without a
write of their own (``async_mark_dirty``: a running total's state between two
ticks) are written with the next write, on unload, or at Home Assistant's
final write. Taking a snapshot only copies the arrays (under the outbox's
lock, because ``Store`` calls the delayed save's data function in the
executor); encoding runs in the executor and is handed to ``Store`` as
``orjson.Fragment``. Newer Home Assistant versions need
``serialize_in_event_loop=False`` for that (``store_kwargs``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import inspect
import threading
from typing import Any

from homeassistant.const import EVENT_HOMEASSISTANT_FINAL_WRITE
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.helpers.storage import Store

from ..const import DOMAIN
from .format import STORAGE_VERSION, Snapshot, encode

# Seconds a confirmation may wait before it is written (several coalesce).
SAVE_DELAY = 1.0


def store_kwargs() -> dict[str, Any]:
    """Return the ``Store`` options that keep our encoding off the event loop.

    Newer Home Assistant versions call a delayed save's data function and
    serialize the data on the event loop unless the store is created with
    ``serialize_in_event_loop=False`` (which 2025.4 does not know; it always
    does both in the executor). Our data function is thread-safe (it takes the
    snapshot under the outbox's lock).
    """
    if "serialize_in_event_loop" in inspect.signature(Store.__init__).parameters:
        return {"serialize_in_event_loop": False}
    return {}


class OutboxStore:
    """Load and write one outbox; ``snapshot`` copies its state under ``lock``."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry_id: str,
        snapshot: Callable[[], Snapshot],
        lock: threading.RLock,
    ) -> None:
        """Create the store of an entry's outbox."""
        self.hass = hass
        self._store: Store[dict[str, Any]] = Store(
            hass, STORAGE_VERSION, f"{DOMAIN}.{entry_id}.outbox", **store_kwargs()
        )
        self._snapshot = snapshot
        self._lock = lock
        self._save_lock = asyncio.Lock()
        self._dirty = False
        self._unsub_final_write: CALLBACK_TYPE | None = None
        # Snapshots taken so far (a delayed save takes its own).
        self._snapshots = 0

    @property
    def key(self) -> str:
        """Return the storage key (the file name under .storage)."""
        return self._store.key

    async def async_load(self) -> dict[str, Any] | None:
        """Return the stored data, if any."""
        return await self._store.async_load()

    def take_snapshot(self) -> Snapshot:
        """Copy the current state and mark it as being written."""
        return self._take()[0]

    def _take(self) -> tuple[Snapshot, int]:
        """Return a snapshot and its number (they count up)."""
        with self._lock:
            self._dirty = False
            self._snapshots += 1
            return self._snapshot(), self._snapshots

    def _data_func(self) -> dict[str, Any]:
        """Return the data to write; Store may call this in the executor."""
        return encode(self.take_snapshot())

    async def async_save(self) -> None:
        """Write now; return when the current state is on disk.

        ``Store`` writes one thing at a time, but a delayed save takes its
        snapshot when its turn comes, ours before we wait for it: a delayed save
        can write a newer snapshot just before ours writes an older one over it.
        Then the changes only that newer snapshot held (another add's, whose own
        save saw them taken and returned) are written again before we return.
        """
        self._dirty = True
        async with self._save_lock:
            while self._dirty:
                snapshot, taken = self._take()
                data = await self.hass.async_add_executor_job(encode, snapshot)
                await self._store.async_save(data)
                if self._snapshots != taken:
                    # A delayed save took a newer snapshot meanwhile; ours,
                    # written after it, lacks its changes.
                    self._dirty = True
                elif self._dirty:
                    # Changed while we wrote (a confirmation): our write
                    # cancelled the delayed save that was to write it.
                    self._store.async_delay_save(self._data_func, SAVE_DELAY)
                    return

    @callback
    def async_mark_dirty(self) -> None:
        """Write with the next save, at the latest on unload or when HA stops.

        For changes too frequent to write each (a charger's running state):
        Home Assistant's final write only writes a ``Store`` with a delayed
        save pending, so the outbox listens for it itself.
        """
        self._dirty = True
        if self._unsub_final_write is None:
            self._unsub_final_write = self.hass.bus.async_listen_once(
                EVENT_HOMEASSISTANT_FINAL_WRITE, self._async_final_write
            )

    async def _async_final_write(self, _event: Event) -> None:
        self._unsub_final_write = None
        await self.async_flush()

    @callback
    def async_schedule_save(self) -> None:
        """Write within ``SAVE_DELAY`` seconds (and when Home Assistant stops)."""
        self._dirty = True
        self._store.async_delay_save(self._data_func, SAVE_DELAY)

    async def async_flush(self) -> None:
        """Write pending changes now (on unload)."""
        self._async_stop_final_write()
        if self._dirty:
            await self.async_save()

    @callback
    def _async_stop_final_write(self) -> None:
        if self._unsub_final_write is not None:
            self._unsub_final_write()
            self._unsub_final_write = None

    async def async_remove(self) -> None:
        """Delete the stored file (the config entry is being removed)."""
        self._async_stop_final_write()
        self._dirty = False
        await self._store.async_remove()
