"""End to end: real Airflow components run the register DAG against the emulator.

The scheduler, triggerer, DAG processor and API server run as processes with a throwaway
``AIRFLOW_HOME`` under ``.airflow/`` (SQLite, LocalExecutor). The test triggers
``meti_register_sources``, waits until its sensors are deferred to the triggerer, resolves
the conflict in the emulator and waits for the run to succeed. The same stack serves the
checks of the provider's registration: hooks list, connection form and connection test.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_meti._compat import AIRFLOW_V_3, AIRFLOW_VERSION
from airflow_provider_meti.emulator import MetiEmulator
from tests.airflow_compat import connection_form_needs_fab

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(420),
    pytest.mark.skipif(
        not AIRFLOW_V_3,
        reason=f"Airflow {AIRFLOW_VERSION} has no api-server, dag-processor or /api/v2 (3.x only)",
    ),
]

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
}
DAG_ID = "meti_register_sources"
SENSOR_TASK = "wait_for_conflict_resolution"
HEALTH = "/api/v2/monitor/health"
WAIT_LIMIT = 180.0
STOP_GRACE = 10.0


@dataclass
class AirflowStack:
    """The running components, their environment and where they log."""

    home: Path
    env: dict[str, str]
    api_url: str
    emulator: MetiEmulator
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def database(self) -> Path:
        return self.home / "airflow.db"

    def log_path(self, name: str) -> Path:
        return self.home / "component-logs" / f"{name}.log"

    def start(self, name: str, args: list[str]) -> None:
        self.log_path(name).parent.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("w") as log:
            self.processes[name] = subprocess.Popen(
                [AIRFLOW, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, so it can be stopped whole
            )

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def query(self, sql: str, *params: Any) -> list[tuple]:
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql, params).fetchall()

    def stopped_early(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def log_tails(self, lines: int = 30) -> str:
        parts = []
        for name in self.processes:
            text = self.log_path(name).read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {name} (last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL what is left after a grace period."""
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)
        _kill_strays(self.home)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _kill_strays(home: Path) -> None:
    """Kill processes that left our groups but still run with our AIRFLOW_HOME."""
    import psutil

    for process in psutil.process_iter(["pid"]):
        try:
            if process.environ().get("AIRFLOW_HOME") == str(home) and process.pid != os.getpid():
                process.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], Any], what: str, stack: AirflowStack) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with the logs otherwise."""
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        early = stack.stopped_early()
        if early:
            pytest.fail(f"{', '.join(early)} exited while waiting for {what}\n{stack.log_tails()}")
        try:
            result = condition()
        except (requests.RequestException, sqlite3.OperationalError):
            result = None
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"gave up after {WAIT_LIMIT:.0f} s waiting for {what}\n{stack.log_tails()}")


def stack_env(home: Path, api_port: int, meti_url: str) -> dict[str, str]:
    api_url = f"http://127.0.0.1:{api_port}"
    connection = {
        "conn_type": "meti",
        "host": meti_url,
        "login": "demo@meti.local",
        "password": "demo-password",
    }
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    return {
        **env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": api_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "AIRFLOW_CONN_METI_DEFAULT": json.dumps(connection),
        "METI_EXTRACT_DIR": str(home / "extracts"),
    }


@pytest.fixture(scope="module")
def stack(request) -> Iterator[AirflowStack]:
    """Every Airflow component running against one emulator; all stopped afterwards."""
    (ROOT / ".airflow").mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="e2e-", dir=ROOT / ".airflow"))
    failures_before = request.session.testsfailed
    with MetiEmulator(port=0) as emulator:
        port = free_port()
        airflow = AirflowStack(
            home, stack_env(home, port, emulator.url), f"http://127.0.0.1:{port}", emulator
        )
        try:
            migrated = airflow.cli("db", "migrate", timeout=180)
            assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
            for name, args in COMPONENTS.items():
                airflow.start(name, [arg.format(port=port) for arg in args])
            wait_until(lambda: api_get(airflow, HEALTH), "the API server", airflow)
            yield airflow
        finally:
            airflow.stop()
    if request.session.testsfailed == failures_before:
        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"Kept {home} for inspection")


def api_token(stack: AirflowStack) -> str:
    """A JWT from the simple auth manager (every user is an admin in this setup)."""
    response = requests.get(f"{stack.api_url}/auth/token", timeout=10)
    response.raise_for_status()
    return response.json()["access_token"]


def api_get(stack: AirflowStack, path: str) -> Any:
    headers = {"Authorization": f"Bearer {api_token(stack)}"}
    response = requests.get(f"{stack.api_url}{path}", headers=headers, timeout=10)
    return response.json() if response.status_code == 200 else None


def sensor_states(stack: AirflowStack, run_id: str) -> list[str]:
    rows = stack.query(
        "SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?",
        DAG_ID,
        run_id,
        SENSOR_TASK,
    )
    return [state for (state,) in rows]


def run_state(stack: AirflowStack, run_id: str) -> str | None:
    rows = stack.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", DAG_ID, run_id)
    return rows[0][0] if rows else None


def trigger_count(stack: AirflowStack) -> int:
    return stack.query("SELECT count(*) FROM trigger")[0][0]


# --- the provider as Airflow sees it ---------------------------------------------------------


def test_airflow_lists_the_meti_provider_and_hook(stack):
    providers = stack.cli("providers", "list")
    hooks = stack.cli("providers", "hooks")

    assert "airflow-provider-meti" in providers.stdout, providers.stdout + providers.stderr
    meti = [line for line in hooks.stdout.splitlines() if line.startswith("meti ")]
    assert meti, hooks.stdout + hooks.stderr
    assert "airflow_provider_meti.hooks.meti.MetiHook" in meti[0]


@connection_form_needs_fab
def test_connection_form_shows_meti_fields_relabelled(stack):
    forms = wait_until(lambda: api_get(stack, "/ui/connections/hook_meta"), "hook_meta", stack)

    (meti,) = [form for form in forms if form["connection_type"] == "meti"]
    assert meti["hook_name"] == "METI"
    fields = meti["standard_fields"]
    assert fields["host"]["title"] == "Base URL"
    assert fields["host"]["placeholder"] == "https://api.meti.millpont.com"
    assert fields["login"]["title"] == "Email (v2: client ID)"
    assert fields["password"]["title"] == "Password (v2: client secret)"
    assert fields["port"]["hidden"] is True
    assert fields["url_schema"]["hidden"] is True
    extras = meti["extra_fields"]
    assert {"api_version", "timeout", "max_retries", "verify", "token_url"} <= set(extras)


def test_connection_test_succeeds_from_cli_and_api(stack):
    cli = stack.cli("connections", "test", "meti_default")
    body = {
        "connection_id": "meti_form",
        "conn_type": "meti",
        "host": stack.emulator.url,
        "login": "demo@meti.local",
        "password": "demo-password",
    }
    headers = {"Authorization": f"Bearer {api_token(stack)}"}
    api = requests.post(
        f"{stack.api_url}/api/v2/connections/test", json=body, headers=headers, timeout=30
    )

    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "Connection success" in cli.stdout
    assert api.status_code == 200, api.text
    assert api.json()["status"] is True, api.json()
    assert "Authenticated with METI" in api.json()["message"]


# --- a DAG run with a deferred sensor --------------------------------------------------------


def test_register_dag_defers_until_the_conflict_is_resolved(stack):
    run_id = f"e2e_{secrets.token_hex(4)}"
    conf = json.dumps({"poke_interval": 1, "sensor_timeout": 300})
    wait_until(lambda: api_get(stack, f"/api/v2/dags/{DAG_ID}"), "the DAG to be parsed", stack)

    unpaused = stack.cli("dags", "unpause", DAG_ID)
    triggered = stack.cli("dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", conf)
    assert unpaused.returncode == 0, unpaused.stdout + unpaused.stderr
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr

    def sensors_deferred() -> bool:
        states = sensor_states(stack, run_id)
        return len(states) == 2 and set(states) == {"deferred"} and trigger_count(stack) > 0

    wait_until(sensors_deferred, "both sensors to be deferred with triggers", stack)
    neighbour = next(s for s in stack.emulator.ledger.all() if s["alt_id"] == "FIELD-008")
    stack.emulator.ledger.delete(neighbour["id"])

    final = wait_until(
        lambda: run_state(stack, run_id) in ("success", "failed") and run_state(stack, run_id),
        "the run to finish",
        stack,
    )
    assert final == "success", f"{sensor_states(stack, run_id)}\n{stack.log_tails()}"
    assert sensor_states(stack, run_id) == ["success", "success"]
    stored = stack.emulator.ledger.all()
    assert len(stored) == 11
    assert not any(source["conflict"] for source in stored)
