"""The optional JSON data file that keeps devices, readings and logins."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import json
import logging
from pathlib import Path
import threading
from typing import Any

_LOGGER = logging.getLogger(__package__)

type Snapshot = Callable[[], dict[str, Any]]


class DataFile:
    """Writes snapshots of the sandbox to a JSON file, a moment after changes.

    Serializing happens in the event loop (a consistent snapshot); writing happens
    in a thread so the server stays responsive. Several changes in quick
    succession are written once.
    """

    def __init__(self, path: Path, delay: float = 0.2) -> None:
        """Use `path`; write `delay` seconds after the first unsaved change."""
        self.path = path
        self._delay = delay
        self._loaded = False
        self._snapshot: Snapshot | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._futures: set[asyncio.Future[None]] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._sequence = 0
        self._written = 0

    @property
    def loaded(self) -> bool:
        """Return whether load() ran (later changes may overwrite the file)."""
        return self._loaded

    def load(self) -> dict[str, Any] | None:
        """Return the stored data, None if there is no file yet."""
        self._loaded = True
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"{self.path} does not hold a JSON object")
        return data

    def schedule(self, snapshot: Snapshot) -> None:
        """Write the state `snapshot` returns, soon."""
        if not self._loaded:
            # Never overwrite a file we have not read.
            return
        self._snapshot = snapshot
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(self._serialize())
            return
        if self._handle is None:
            self._handle = loop.call_later(self._delay, self._save)

    def _serialize(self) -> tuple[int, str]:
        assert self._snapshot is not None  # noqa: S101
        self._sequence += 1
        return self._sequence, json.dumps(self._snapshot(), ensure_ascii=False)

    def _save(self) -> None:
        """Write a snapshot in a short-lived thread (no executor threads linger)."""
        self._handle = None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        item = self._serialize()

        def run() -> None:
            error: BaseException | None = None
            try:
                self._write(item)
            except Exception as err:  # noqa: BLE001 - reported in the loop
                error = err
            loop.call_soon_threadsafe(self._finished, future, error)

        thread = threading.Thread(target=run, name="zevvy-sandbox-save", daemon=True)
        self._threads.add(thread)
        future.add_done_callback(lambda _: self._threads.discard(thread))
        self._futures.add(future)
        thread.start()

    def _finished(
        self, future: asyncio.Future[None], error: BaseException | None
    ) -> None:
        self._futures.discard(future)
        if error is not None:
            _LOGGER.error("Cannot write %s: %s", self.path, error)
        if not future.done():
            future.set_result(None)

    def _write(self, item: tuple[int, str]) -> None:
        sequence, text = item
        with self._lock:
            if sequence <= self._written:
                return
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(self.path)
            self._written = sequence

    async def flush(self) -> None:
        """Write pending changes now and wait until every write is done."""
        if self._handle is not None:
            self._handle.cancel()
            self._save()
        threads = list(self._threads)
        if self._futures:
            await asyncio.gather(*self._futures)
        for thread in threads:
            thread.join()
