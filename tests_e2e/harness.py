"""Processes and HTTP helpers for the end-to-end tests.

Starts the zevvy sandbox and a real Home Assistant as subprocesses, each in its own
process group so that stopping them also stops anything they started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
import contextlib
from datetime import UTC, datetime, timedelta
import os
from pathlib import Path
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import aiohttp
import requests

ROOT = Path(__file__).resolve().parents[1]
# scripts/test-e2e-newest keeps the newest Home Assistant's artifacts apart.
ARTIFACTS = Path(os.environ.get("ZEVVY_E2E_ARTIFACTS", ROOT / "artifacts" / "e2e"))
BIN = Path(sys.executable).parent

sys.path.insert(0, str(ROOT / "scripts"))
import ha_onboard  # noqa: E402

HA_USER = "e2e"
HA_PASSWORD = "e2e-password"
CLIENT_ID = "zevvy-e2e"
CLIENT_SECRET = "e2e-secret"  # the sandbox's, not a real one


QUARTER = timedelta(minutes=15)


def quarter_floor(moment: datetime) -> datetime:
    """Return the quarter hour at or before moment."""
    return moment.replace(
        minute=moment.minute - moment.minute % 15, second=0, microsecond=0
    )


def next_quarter(moment: datetime) -> datetime:
    """Return the first quarter hour after moment."""
    return quarter_floor(moment) + QUARTER


def faketime_library() -> str:
    """Return the path of Debian's libfaketimeMT (package faketime)."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))
    if not found:
        raise RuntimeError("libfaketime is missing: apt-get install faketime")
    return str(found[0])


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.2,
    message: str = "condition",
) -> Any:
    """Call condition until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            if result := condition():
                return result
        except (requests.RequestException, OSError) as err:
            last_error = err
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out waiting for {message} ({last_error!r})")
        time.sleep(interval)


def _with_parent_death_signal(args: list[str]) -> list[str]:
    """Return args run so that the child gets SIGTERM if the test process dies.

    Even a SIGKILLed pytest then leaves no Home Assistant or sandbox behind
    (util-linux setpriv sets PR_SET_PDEATHSIG, kept across exec).
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *args] if setpriv else args


class ManagedProcess:
    """A subprocess in its own process group, logging to a file."""

    def __init__(self, name: str, log_path: Path) -> None:
        """Remember the name and where the output goes."""
        self.name = name
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {self.name}: {' '.join(args)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                _with_parent_death_signal(args),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        """Return True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the process group: SIGTERM, then SIGKILL after timeout."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
        # Kill the group even after a clean exit: nothing it started may outlive it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        self.process = None

    def kill(self) -> None:
        """Kill the process group with SIGKILL, as a power cut or the OOM killer would.

        Nothing is written on the way out: what is not on disk yet is lost.
        """
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        self.process = None
        # libfaketime cleans its shared memory up only on a normal exit; a later
        # process with the same id would fail to start on the leftovers.
        shm = Path("/dev/shm")  # noqa: S108 (libfaketime's names, not ours)
        for leftover in (
            shm / f"faketime_shm_{process.pid}",
            shm / f"sem.faketime_sem_{process.pid}",
        ):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def log_tail(self, lines: int = 60) -> str:
        """Return the end of the log, for failure messages."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def log_text(self) -> str:
        """Return the whole log."""
        return (
            self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        )


class SandboxProcess(ManagedProcess):
    """`python -m zevvy_sandbox` on a free port, driven through its admin API."""

    def __init__(self, work_dir: Path, log_path: Path) -> None:
        """Prepare a sandbox that keeps its data in work_dir."""
        super().__init__("zevvy sandbox", log_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.url}/realms/zevvy"
        self.api_url = f"{self.url}/api"
        self.data_file = work_dir / "zevvy_sandbox.json"
        self.http = requests.Session()

    def start(self) -> None:
        """Start the sandbox and wait until it answers discovery."""
        self._spawn(
            [
                sys.executable,
                "-m",
                "zevvy_sandbox",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--client-id",
                CLIENT_ID,
                "--client-secret",
                CLIENT_SECRET,
                "--interval",
                "1",
                "--data-file",
                str(self.data_file),
            ]
        )

        def up() -> bool:
            if not self.running:
                raise RuntimeError(f"Sandbox exited:\n{self.log_tail()}")
            return self.http.get(
                f"{self.issuer}/.well-known/openid-configuration", timeout=5
            ).ok

        wait_for(up, timeout=30, message="the sandbox")

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the admin API (/_sandbox/...) and return the JSON answer."""
        response = self.http.request(
            method, f"{self.url}/_sandbox/{path}", json=body, timeout=10
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def readings(self, **query: str) -> list[dict[str, Any]]:
        """Return the stored readings (device_ref, register_ref, read_at, value)."""
        answer = self.http.get(
            f"{self.url}/_sandbox/readings", params=query, timeout=10
        )
        answer.raise_for_status()
        data = answer.json()
        readings: list[dict[str, Any]] = (
            data["readings"] if isinstance(data, dict) else data
        )
        return readings

    def pending(self) -> list[str]:
        """Return the user codes waiting for approval."""
        data = self.admin("GET", "pending")
        codes: list[str] = data["user_codes"] if isinstance(data, dict) else data
        return codes


class HomeAssistantProcess(ManagedProcess):
    """`hass -c <copy of config/> --skip-pip` on a free port."""

    # With a path: the next start reads its clock offset from this file (see
    # jump_clock) instead of the FAKETIME environment variable.
    clock_file: Path | None = None

    def __init__(self, config_dir: Path, log_path: Path) -> None:
        """Copy the development configuration into config_dir."""
        super().__init__("Home Assistant", log_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_dir = config_dir
        self.token: str | None = None
        self.refresh_token: str | None = None
        # Seconds Home Assistant's clock is ahead of the real one (libfaketime).
        self.clock_offset = 0
        self.http = requests.Session()
        config_dir.mkdir(parents=True, exist_ok=True)
        yaml = (ROOT / "config" / "configuration.yaml").read_text()
        yaml, count = re.subn(
            r"server_port: (?:!env_var \w+ )?\d+",
            f"server_port: {self.port}",
            yaml,
            count=1,
        )
        assert count == 1, "configuration.yaml has no http: server_port"
        # More detail in artifacts/e2e/*/hass.log than a developer wants.
        yaml = yaml.replace("  default: warning", "  default: info", 1)
        (config_dir / "configuration.yaml").write_text(yaml)
        (config_dir / ".storage").mkdir(exist_ok=True)
        shutil.copy(
            ROOT / "config" / ".storage_seed" / "energy",
            config_dir / ".storage" / "energy",
        )
        (config_dir / "custom_components").mkdir(exist_ok=True)
        (config_dir / "custom_components" / "zevvy").symlink_to(
            ROOT / "custom_components" / "zevvy"
        )

    def now(self) -> datetime:
        """Return the time as Home Assistant sees it."""
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset)

    def start(self, clock: datetime | None = None) -> None:
        """Start Home Assistant and wait until it answers HTTP.

        clock: the time Home Assistant's clock shows when it starts (it runs on
        from there at the real pace, also across later restarts). The tests use it
        to let a quarter hour come a few seconds after a start; a clock that jumps
        forward over a restart looks to Home Assistant like time it was down.
        """
        if clock is not None:
            self.clock_offset = round((clock - datetime.now(UTC)).total_seconds())
        # Deprecation warnings go to the log (py.warnings), where the tests look
        # for those of the integration.
        env = {
            "PYTHONWARNINGS": "default::DeprecationWarning",
            # The integration's DEBUG lines in hass.log (configuration.yaml).
            "ZEVVY_LOG_LEVEL": "debug",
        }
        if self.clock_offset:
            env |= {
                "LD_PRELOAD": faketime_library(),
                "FAKETIME": f"{self.clock_offset:+d}s",
            }
        self._spawn(
            [str(BIN / "hass"), "-c", str(self.config_dir), "--skip-pip"], env=env
        )

        def up() -> bool:
            if not self.running:
                raise RuntimeError(f"Home Assistant exited:\n{self.log_tail()}")
            # Any answer will do (400 before onboarding). Not /api/: a request
            # without a token there counts as a failed login (a notification).
            self.http.get(f"{self.url}/auth/providers", timeout=5)
            return True

        wait_for(up, timeout=90, message="Home Assistant's HTTP server")
        if self.refresh_token is not None:
            # A clock moved forward may have outdated the access token.
            tokens = ha_onboard.refresh(self.url, self.refresh_token)
            self.token = tokens["access_token"]
            self.wait_running()

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        """Start hass; with clock_file, libfaketime follows that file."""
        if self.clock_file is not None and env is not None and "FAKETIME" in env:
            env = dict(env)
            self.clock_file.write_text(env.pop("FAKETIME") + "\n")
            # libfaketime reads the file again once a second (the default is 10).
            env |= {
                "FAKETIME_TIMESTAMP_FILE": str(self.clock_file),
                "FAKETIME_CACHE_DURATION": "1",
            }
        super()._spawn(args, env)

    def jump_clock(self, seconds: float) -> None:
        """Move the running Home Assistant's clock forward by seconds, at once.

        Like a machine waking from suspend: the wall clock and the monotonic
        clock jump together, so every timer due in between fires right away.
        Needs clock_file set before the last start. Waits until Home Assistant's
        clock shows the jump (at most about 1 s, libfaketime's cache) and
        renews the owner's access token, which may have expired in the jump.
        """
        assert self.clock_file is not None, "set clock_file before starting"
        assert self.clock_offset, "the clock file exists after a start with a clock"
        self.clock_offset += round(seconds)
        self.clock_file.write_text(f"{self.clock_offset:+d}s\n")
        wait_for(
            lambda: self.clock() > self.now() - timedelta(seconds=2),
            timeout=10,
            message="Home Assistant's clock to jump",
        )
        if self.refresh_token is not None:
            self.token = ha_onboard.refresh(self.url, self.refresh_token)[
                "access_token"
            ]

    def clock(self) -> datetime:
        """Return the time Home Assistant's clock shows (its template now())."""
        for attempt in range(2):
            response = self.http.post(
                f"{self.url}/api/template",
                json={"template": "{{ as_timestamp(now()) }}"},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=10,
            )
            if response.status_code != 401 or self.refresh_token is None or attempt:
                break
            # The owner's access token may have expired in a clock jump.
            self.token = ha_onboard.refresh(self.url, self.refresh_token)[
                "access_token"
            ]
        response.raise_for_status()
        return datetime.fromtimestamp(float(response.text), UTC)

    def restart(self, clock: datetime | None = None) -> None:
        """Stop Home Assistant gracefully and start it again on the same port."""
        self.stop(timeout=60)
        self.start(clock)

    def onboard(self) -> None:
        """Create the owner through onboarding and keep an access token."""
        tokens = ha_onboard.onboard(self.url, HA_USER, HA_PASSWORD, name="E2E Owner")
        self.token = tokens["access_token"]
        self.refresh_token = tokens["refresh_token"]
        self.wait_running()
        self.confirm_http_config()

    def confirm_http_config(self) -> None:
        """Confirm the http: settings of configuration.yaml, as the UI asks to.

        Home Assistant 2026.x tries YAML http settings as pending on the first
        start and, unconfirmed within 5 minutes of its clock, reverts them
        (restarting on port 8123). Older versions do not know the command.
        """
        answer = self.websocket({"type": "http/config/promote"})
        if not answer["success"]:
            assert answer["error"]["code"] == "unknown_command", answer

    def websocket(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command over the WebSocket API; return the result message."""

        async def run() -> dict[str, Any]:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(f"{self.url}/api/websocket") as socket_,
            ):
                await socket_.receive_json()  # auth_required
                await socket_.send_json({"type": "auth", "access_token": self.token})
                auth = await socket_.receive_json()
                assert auth["type"] == "auth_ok", auth
                await socket_.send_json({"id": 1, **command})
                result: dict[str, Any] = await socket_.receive_json()
                return result

        # In a thread of its own: the browser tests' thread runs an event loop.
        with ThreadPoolExecutor(1) as executor:
            return executor.submit(
                lambda: asyncio.run(asyncio.wait_for(run(), timeout=30))
            ).result()

    def wait_running(self) -> None:
        """Wait until Home Assistant's state is RUNNING."""
        wait_for(
            lambda: self.api("GET", "config")["state"] == "RUNNING",
            timeout=60,
            message="Home Assistant to be RUNNING",
        )

    def api(
        self, method: str, path: str, body: Any = None, *, expect: int | None = None
    ) -> Any:
        """Call /api/<path> with the owner's token; check the status."""
        response = self.http.request(
            method,
            f"{self.url}/api/{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )
        if expect is not None:
            assert response.status_code == expect, (
                f"{method} /api/{path}: {response.status_code} {response.text}"
            )
        else:
            assert response.ok, (
                f"{method} /api/{path}: {response.status_code} {response.text}"
            )
        return response.json() if response.content else None

    def call_service(
        self, domain: str, service: str, data: dict[str, Any] | None = None
    ) -> requests.Response:
        """Call an action and return the raw response (with its service_response)."""
        return self.http.post(
            f"{self.url}/api/services/{domain}/{service}?return_response",
            json=data or {},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=120,
        )

    def state(self, entity_id: str) -> dict[str, Any] | None:
        """Return the state object of an entity, None if it does not exist."""
        response = self.http.get(
            f"{self.url}/api/states/{entity_id}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def config_entries(self, domain: str) -> list[dict[str, Any]]:
        """Return the config entries of a domain."""
        entries: list[dict[str, Any]] = self.api(
            "GET", f"config/config_entries/entry?domain={domain}"
        )
        return entries

    def deprecations_in_log(self) -> list[str]:
        """Return the log's deprecation reports and warnings about the integration.

        Home Assistant reports a custom integration's use of a deprecated API
        ("Detected that custom integration 'zevvy' ..."); Python's warnings name
        the integration's file.
        """
        return [
            line
            for line in self.log_text().splitlines()
            if re.search(r"integration 'zevvy'|custom_components/zevvy/", line)
            and re.search(r"(?i)deprecat|detected", line)
        ]

    def errors_in_log(self, pattern: str) -> list[str]:
        """Return ERROR lines of the log that match pattern."""
        return [
            line
            for line in self.log_text().splitlines()
            if " ERROR " in line and re.search(pattern, line)
        ]


# ----------------------------------------------------------------------
# Config flows through the REST API
# ----------------------------------------------------------------------


def schema_fields(result: dict[str, Any]) -> list[str]:
    """Return the field names of a form result's data_schema."""
    return [field["name"] for field in result.get("data_schema") or []]


def suggested_values(result: dict[str, Any]) -> dict[str, Any]:
    """Return the values the form shows prefilled (suggested values, defaults)."""
    values: dict[str, Any] = {}
    for field in result.get("data_schema") or []:
        description = field.get("description") or {}
        if "suggested_value" in description:
            values[field["name"]] = description["suggested_value"]
        elif "default" in field:
            values[field["name"]] = field["default"]
    return values


class RestFlow:
    """A config flow driven like the frontend does, through /api/config/..."""

    def __init__(self, home_assistant: HomeAssistantProcess, handler: str) -> None:
        """Start the flow."""
        self.home_assistant = home_assistant
        self.result: dict[str, Any] = home_assistant.api(
            "POST",
            "config/config_entries/flow",
            {"handler": handler, "show_advanced_options": True},
        )
        self.flow_id: str = self.result["flow_id"]

    def submit(self, data: dict[str, Any]) -> dict[str, Any]:
        """Submit the current form."""
        self.result = self.home_assistant.api(
            "POST", f"config/config_entries/flow/{self.flow_id}", data
        )
        return self.result

    def wait_past_progress(self, timeout: float = 60.0) -> dict[str, Any]:
        """Poll the flow until it shows something other than a progress step."""

        def moved_on() -> dict[str, Any] | None:
            result: dict[str, Any] = self.home_assistant.api(
                "GET", f"config/config_entries/flow/{self.flow_id}"
            )
            return None if result["type"] in ("progress", "progress_done") else result

        self.result = wait_for(
            moved_on, timeout=timeout, interval=0.5, message="the flow's progress"
        )
        return self.result
