"""Screenshot a METI conflict review waiting in Airflow's Required Actions page.

Starts the METI emulator and a throwaway Airflow (home ``.airflow/screenshot-hitl``, SQLite,
LocalExecutor, everything on 127.0.0.1): API server, scheduler and DAG processor. Runs the
example DAG ``meti_conflict_review`` until its questions wait for an answer, then opens
them in headless Chromium and writes ``docs/required-actions.png`` (the question for
FIELD-008, with both sources and the answers) and ``docs/required-actions-list.png`` (the
list under Browse → Required Actions). Nothing is answered; everything is stopped at the end.

Needs Debian's Chromium and Playwright's Python package (no downloaded browsers)::

    apt-get install chromium
    .venv/bin/pip install playwright
    .venv/bin/python scripts/screenshot_required_actions.py
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airflow_provider_meti.emulator import MetiEmulator  # noqa: E402

HOME = ROOT / ".airflow" / "screenshot-hitl"
OUTPUT = ROOT / "docs" / "required-actions.png"
LIST_OUTPUT = ROOT / "docs" / "required-actions-list.png"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "meti_conflict_review"
REVIEW_TASK = "review_conflict"
SHOWN_FIELD = "FIELD-008"
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_LIMIT = 240.0


def main() -> int:
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with MetiEmulator(port=0) as emulator:
        env = airflow_env(port, emulator.url)
        subprocess.run(
            [AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=180
        )
        with airflow_components(env, port) as processes:
            wait_for(lambda: api_get(url, "/api/v2/monitor/health"), "the API server", processes)
            wait_for(lambda: api_get(url, f"/api/v2/dags/{DAG_ID}"), "the DAG", processes)
            run_id = f"screenshot_{secrets.token_hex(3)}"
            for args in (["unpause", DAG_ID], ["trigger", DAG_ID, "--run-id", run_id]):
                subprocess.run([AIRFLOW, "dags", *args], env=env, check=True, capture_output=True)
            questions = wait_for(lambda: open_questions(url, run_id), "the questions", processes)
            (shown,) = [q for q in questions if SHOWN_FIELD in q["subject"]]
            take_screenshots(url, run_id, shown["task_instance"]["map_index"])
    print(f"Wrote {OUTPUT.relative_to(ROOT)} and {LIST_OUTPUT.relative_to(ROOT)}")
    return 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def airflow_env(port: int, meti_url: str) -> dict[str, str]:
    api_url = f"http://127.0.0.1:{port}"
    connection = {
        "conn_type": "meti",
        "host": meti_url,
        "login": "demo@meti.local",
        "password": "demo-password",
    }
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    return {
        **env,
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # Every visitor is an admin: no login page in the way of a throwaway server.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__API__BASE_URL": api_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW_CONN_METI_DEFAULT": json.dumps(connection),
    }


@contextmanager
def airflow_components(env: dict[str, str], port: int) -> Iterator[list[subprocess.Popen]]:
    """Run the API server, scheduler and DAG processor until the block ends."""
    processes = []
    try:
        for name, args in COMPONENTS.items():
            with (HOME / f"{name}.log").open("w") as log:
                processes.append(
                    subprocess.Popen(
                        [AIRFLOW, *[arg.format(port=port) for arg in args]],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group, stopped whole
                    )
                )
        yield processes
    finally:
        for process in processes:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def api_get(url: str, path: str) -> Any:
    token = requests.get(f"{url}/auth/token", timeout=10).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    response = requests.get(f"{url}{path}", headers=headers, timeout=10)
    return response.json() if response.status_code == 200 else None


def open_questions(url: str, run_id: str) -> list[dict[str, Any]] | None:
    found = api_get(url, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/hitlDetails")
    details = list(found["hitl_details"]) if found else []
    return details if len(details) == 2 else None


def wait_for(condition: Callable[[], Any], what: str, processes: list[subprocess.Popen]) -> Any:
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            raise SystemExit(f"an Airflow component exited; see the logs in {HOME}")
        with suppress(requests.RequestException, ValueError, KeyError):
            result = condition()
            if result:
                return result
        time.sleep(1)
    raise SystemExit(f"gave up waiting for {what}; see the logs in {HOME}")


def take_screenshots(url: str, run_id: str, map_index: int) -> None:
    from playwright.sync_api import sync_playwright

    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    question = f"{url}/dags/{DAG_ID}/runs/{run_id}/tasks/{REVIEW_TASK}/mapped/{map_index}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{url}/required_actions", wait_until="networkidle")
            page.get_by_text(SHOWN_FIELD).first.wait_for()
            page.wait_for_timeout(500)
            page.screenshot(path=str(LIST_OUTPUT))
            page.goto(f"{question}/required_actions", wait_until="networkidle")
            page.get_by_text("Withdraw ours").first.wait_for()
            page.wait_for_timeout(800)  # let the Markdown and the buttons settle
            page.screenshot(path=str(OUTPUT))
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
