"""A throwaway Airflow on 127.0.0.1 and headless Chromium, for the screenshot scripts.

Each script gets its own ``AIRFLOW_HOME`` (SQLite, wiped first), starts the components it
needs in their own process groups and stops them whole at the end, on success or failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "topology"))

from processes import ProcessGroups  # noqa: E402
from servers import free_port  # noqa: E402, F401 - the scripts take it from here

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
API_SERVER = ["api-server", "--host", "127.0.0.1", "--port", "{port}"]


def fresh_home(home: Path) -> None:
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)


def airflow_env(home: Path, port: int, **settings: str) -> dict[str, str]:
    """This process's environment without its Airflow settings, for a server on ``port``."""
    api_url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    return {
        **env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        # Every visitor is an admin: no login page in the way of a throwaway server.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__API__BASE_URL": api_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        **settings,
    }


def migrate(env: Mapping[str, str]) -> None:
    subprocess.run(
        [AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=180
    )


@contextmanager
def components(
    home: Path, env: Mapping[str, str], commands: Mapping[str, list[str]], port: int
) -> Iterator[ProcessGroups]:
    """Run each ``airflow`` command (``{port}`` filled in) until the block ends.

    The topology run's process groups: each logs to ``<home>/<name>.log``, runs in its own
    process group and is stopped whole; anything that left its group is swept up at the end.
    """
    groups = ProcessGroups(log_dir=home, groups_file=home / "process-groups", run_id=home.name)
    try:
        for name, args in commands.items():
            groups.start(name, [AIRFLOW, *(arg.format(port=port) for arg in args)], dict(env))
        yield groups
    finally:
        groups.stop()
        groups.sweep()
        groups.forget_groups_file()


def wait_for(
    condition: Callable[[], Any],
    what: str,
    groups: ProcessGroups,
    home: Path,
    limit: float = 240.0,
) -> Any:
    """Poll ``condition`` each second until it returns something truthy, and return that."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if groups.exited():
            raise SystemExit(f"{', '.join(groups.exited())} exited; see the logs in {home}")
        with suppress(requests.RequestException, ValueError, KeyError):
            result = condition()
            if result:
                return result
        time.sleep(1)
    raise SystemExit(f"gave up waiting for {what}; see the logs in {home}")


def healthy(url: str) -> bool:
    return requests.get(f"{url}/api/v2/monitor/health", timeout=5).ok


def api_get(url: str, path: str) -> Any:
    """GET a public API path as the (all-admin) default user; None unless HTTP 200."""
    token = requests.get(f"{url}/auth/token", timeout=10).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    response = requests.get(f"{url}{path}", headers=headers, timeout=10)
    return response.json() if response.status_code == 200 else None


@contextmanager
def chromium_page(width: int, height: int) -> Iterator[Any]:
    """A page in headless Debian Chromium (through Playwright), closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()
