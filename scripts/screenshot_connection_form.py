"""Screenshot Airflow's "Add Connection" form with the METI connection type chosen.

Starts a throwaway Airflow API server (home ``.airflow/screenshot``, 127.0.0.1, a free port),
opens the form in headless Chromium and writes ``docs/connection-form.png`` (the relabelled
standard fields) and ``docs/connection-form-extras.png`` (the METI extras).

Needs Debian's Chromium and Playwright's Python package (no downloaded browsers)::

    apt-get install chromium
    .venv/bin/pip install playwright
    .venv/bin/python scripts/screenshot_connection_form.py
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".airflow" / "screenshot"
OUTPUT = ROOT / "docs" / "connection-form.png"
EXTRAS_OUTPUT = ROOT / "docs" / "connection-form-extras.png"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
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
STARTUP_LIMIT = 120.0


def main() -> int:
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    port = free_port()
    env = airflow_env(port)
    subprocess.run(
        [AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=180
    )
    with api_server(env, port) as url:
        take_screenshot(url)
    print(f"Wrote {OUTPUT.relative_to(ROOT)} and {EXTRAS_OUTPUT.relative_to(ROOT)}")
    return 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def airflow_env(port: int) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        # Every visitor is an admin: no login page in the way of a throwaway server.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__WORKERS": "1",
    }


@contextmanager
def api_server(env: dict[str, str], port: int) -> Iterator[str]:
    """Run ``airflow api-server`` on 127.0.0.1 until the block ends; yield its URL."""
    url = f"http://127.0.0.1:{port}"
    with (HOME / "api-server.log").open("w") as log:
        server = subprocess.Popen(
            [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_health(url, server)
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


def wait_for_health(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the API server exited; see {HOME / 'api-server.log'}")
        with suppress(requests.RequestException):
            if requests.get(f"{url}/api/v2/monitor/health", timeout=5).ok:
                return
        time.sleep(1)
    raise SystemExit(f"the API server did not start; see {HOME / 'api-server.log'}")


def take_screenshot(url: str) -> None:
    from playwright.sync_api import sync_playwright

    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(f"{url}/connections", wait_until="networkidle")
            page.get_by_role("button", name="Add Connection").click()
            form = page.get_by_role("dialog")
            form.get_by_label("Connection ID").fill("meti_default")
            connection_type = form.get_by_role("combobox")
            connection_type.click()
            connection_type.fill("METI")
            page.keyboard.press("Enter")
            form.get_by_text("Base URL").wait_for()
            page.wait_for_timeout(500)  # let the accordion finish opening
            form.screenshot(path=str(OUTPUT))
            form.get_by_role("button", name="Extra Fields", exact=True).click()
            form.get_by_text("API version").wait_for()
            page.wait_for_timeout(500)
            form.screenshot(path=str(EXTRAS_OUTPUT))
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
