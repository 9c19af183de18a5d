"""Fixtures of the end-to-end tests: a real sandbox and a real Home Assistant.

Run by scripts/test-e2e (pytest -p no:homeassistant ...): these tests start
processes and talk HTTP, so the pytest-homeassistant-custom-component plugin and
its socket blocking must stay off.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
import shutil

import pytest

from .harness import ARTIFACTS, HomeAssistantProcess, SandboxProcess, quarter_floor


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """Return artifacts/e2e/<test name>/, emptied."""
    path = ARTIFACTS / request.node.name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture
def sandbox(tmp_path: Path, artifacts: Path) -> Iterator[SandboxProcess]:
    """Start `python -m zevvy_sandbox` on a free port; stop it afterwards."""
    process = SandboxProcess(tmp_path, artifacts / "sandbox.log")
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.fixture
def home_assistant(
    tmp_path: Path, artifacts: Path, sandbox: SandboxProcess
) -> Iterator[HomeAssistantProcess]:
    """Start an onboarded Home Assistant on a copy of config/; stop it afterwards.

    Its clock starts in the middle of a quarter hour, so no quarter-hour reading
    is taken before a test moves the clock on (see HomeAssistantProcess.start).
    """
    process = HomeAssistantProcess(tmp_path / "config", artifacts / "hass.log")
    try:
        process.start(
            clock=quarter_floor(datetime.now(UTC)) + timedelta(minutes=7, seconds=30)
        )
        process.onboard()
        yield process
    finally:
        process.stop(timeout=60)
        # The log stays in artifacts/; Home Assistant's own copy goes with tmp_path.
