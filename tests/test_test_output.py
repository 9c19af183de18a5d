"""The test run's own output: a failure shows the test, not the recorder.

Runs a small test module (one passing and one failing test with the recorder)
in a separate pytest with this suite's conftest (imported by one there), and reads what it prints.
"""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).parents[1]

MODULE = '''
import logging
from typing import Any

from homeassistant.components.recorder import Recorder
from homeassistant.core import HomeAssistant
import pytest


@pytest.fixture
def mock_recorder_before_hass(async_test_recorder: Any) -> None:
    """Prepare the recorder's database before hass."""


async def test_passes(recorder_mock: Recorder, hass: HomeAssistant) -> None:
    hass.states.async_set("sensor.meter", "1")
    await hass.async_block_till_done()
    await recorder_mock.async_block_till_done()


async def test_fails(
    recorder_mock: Recorder, hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    hass.states.async_set("sensor.meter", "2")
    await hass.async_block_till_done()
    await recorder_mock.async_block_till_done()
    logging.getLogger("custom_components.zevvy").warning("the test's own line")
    assert False, "the failure"
'''


def test_database_log_stays_out_of_the_output(tmp_path: Path) -> None:
    """No SQL statements or recorder DEBUG lines; the failure shows its log."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa\n")
    (tmp_path / "test_noise.py").write_text(MODULE)
    run = subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--timeout=120",
            "-c",
            str(ROOT / "pyproject.toml"),
            str(tmp_path / "test_noise.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = run.stdout + run.stderr
    assert "1 failed, 1 passed" in output, output
    assert "the failure" in output
    assert "the test's own line" in output
    assert "sqlalchemy.engine" not in output, output
    assert "DEBUG" not in output, output
