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
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from airflow_ui import (
    AIRFLOW,
    API_SERVER,
    ROOT,
    airflow_env,
    api_get,
    chromium_page,
    components,
    free_port,
    fresh_home,
    healthy,
    migrate,
    wait_for,
)

from airflow_provider_meti.emulator import MetiEmulator

HOME = ROOT / ".airflow" / "screenshot-hitl"
OUTPUT = ROOT / "docs" / "required-actions.png"
LIST_OUTPUT = ROOT / "docs" / "required-actions-list.png"
DAG_ID = "meti_conflict_review"
REVIEW_TASK = "review_conflict"
SHOWN_FIELD = "FIELD-008"
COMPONENTS = {
    "api-server": API_SERVER,
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
}


def main() -> int:
    fresh_home(HOME)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with MetiEmulator(port=0) as emulator:
        connection = {
            "conn_type": "meti",
            "host": emulator.url,
            "login": "demo@meti.local",
            "password": "demo-password",
        }
        env = airflow_env(
            HOME,
            port,
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW_CONN_METI_DEFAULT=json.dumps(connection),
        )
        migrate(env)
        with components(HOME, env, COMPONENTS, port) as groups:
            wait_for(lambda: healthy(url), "the API server", groups, HOME)
            wait_for(lambda: api_get(url, f"/api/v2/dags/{DAG_ID}"), "the DAG", groups, HOME)
            run_id = f"screenshot_{secrets.token_hex(3)}"
            for args in (["unpause", DAG_ID], ["trigger", DAG_ID, "--run-id", run_id]):
                subprocess.run([AIRFLOW, "dags", *args], env=env, check=True, capture_output=True)
            questions = wait_for(lambda: open_questions(url, run_id), "the questions", groups, HOME)
            (shown,) = [q for q in questions if SHOWN_FIELD in q["subject"]]
            take_screenshots(url, run_id, shown["task_instance"]["map_index"])
    print(f"Wrote {OUTPUT.relative_to(ROOT)} and {LIST_OUTPUT.relative_to(ROOT)}")
    return 0


def open_questions(url: str, run_id: str) -> list[dict[str, Any]] | None:
    found = api_get(url, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/hitlDetails")
    details = list(found["hitl_details"]) if found else []
    return details if len(details) == 2 else None


def take_screenshots(url: str, run_id: str, map_index: int) -> None:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    question = f"{url}/dags/{DAG_ID}/runs/{run_id}/tasks/{REVIEW_TASK}/mapped/{map_index}"
    with chromium_page(1400, 1100) as page:
        page.goto(f"{url}/required_actions", wait_until="networkidle")
        page.get_by_text(SHOWN_FIELD).first.wait_for()
        page.wait_for_timeout(500)
        page.screenshot(path=str(LIST_OUTPUT))
        page.goto(f"{question}/required_actions", wait_until="networkidle")
        page.get_by_text("Withdraw ours").first.wait_for()
        page.wait_for_timeout(800)  # let the Markdown and the buttons settle
        page.screenshot(path=str(OUTPUT))


if __name__ == "__main__":
    sys.exit(main())
