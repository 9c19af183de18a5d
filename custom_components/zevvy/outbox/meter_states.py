"""What meters' reading sources remember, persisted with the outbox.

A running total (``running_total.py``) keeps a small state per meter: the last
sensor value, what it counted, recent quarter-hour marks. It is stored in the
outbox's file (``meter_states``) so that it is written with the readings;
outboxes stored without it load with none. Values are replaced, never changed
in place, so a snapshot is a shallow copy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import threading
from typing import Any


class MeterStates:
    """The meters' reading-source states of one outbox, by meter key."""

    def __init__(
        self,
        lock: threading.RLock,
        schedule_save: Callable[[], None],
        mark_dirty: Callable[[], None],
    ) -> None:
        """Share the outbox's lock (snapshots run in the executor) and writes."""
        self._lock = lock
        self._schedule_save = schedule_save
        self._mark_dirty = mark_dirty
        self._data: dict[str, dict[str, Any]] = {}

    def load(self, stored: Mapping[str, Any]) -> None:
        """Take the states from the outbox's stored data."""
        found = stored.get("meter_states") or {}
        self._data = {str(key): dict(value) for key, value in found.items()}

    def all(self) -> dict[str, dict[str, Any]]:
        """Return every state, by key."""
        return dict(self._data)

    def keys(self) -> set[str]:
        """Return the keys of meters with a state."""
        return set(self._data)

    def set(self, key: str, data: dict[str, Any], *, save: bool = True) -> None:
        """Keep a meter's state (a new dict); ``save``: write the outbox soon.

        Without ``save`` it is written with the outbox's next write, at the
        latest when the entry unloads or Home Assistant stops.
        """
        with self._lock:
            self._data[key] = data
        if save:
            self._schedule_save()
        else:
            self._mark_dirty()

    def pop(self, key: str) -> None:
        """Forget a meter's state (the meter was removed)."""
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        """Forget every state."""
        with self._lock:
            self._data.clear()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Copy for a write (call under the outbox's lock)."""
        return dict(self._data)
