"""End to end in a real Airflow 3.3: the watcher of ``meti_on_conflict_change`` runs the DAG
once per change in METI, none without one, and exactly once across a triggerer restart.

Scheduler, triggerer, DAG processor and API server run as processes (the helpers of
``test_airflow_e2e``) with a DAGs folder holding only this DAG, polling the emulator every
second. Every wait is on something counted: listings the emulator served, DAG runs, the
stored snapshot; never on a duration.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_meti._compat import AIRFLOW_VERSION, AIRFLOW_VERSION_TUPLE
from airflow_provider_meti.emulator import MetiEmulator
from tests.features import collection, square_feature
from tests.test_airflow_e2e import (
    COMPONENTS,
    HEALTH,
    ROOT,
    AirflowStack,
    api_get,
    free_port,
    stack_env,
    wait_until,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        AIRFLOW_VERSION_TUPLE < (3, 3),
        reason=f"Airflow {AIRFLOW_VERSION}: a watcher's state store came with 3.3",
    ),
]

DAG_ID = "meti_on_conflict_change"
DAG_FILE = ROOT / "example_dags" / f"{DAG_ID}.py"
QUIET_LISTINGS = 3  # listings served with no change, before "no run" is asserted


@pytest.fixture(scope="module")
def stack(request) -> Iterator[AirflowStack]:
    (ROOT / ".airflow").mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="e2e-watch-", dir=ROOT / ".airflow"))
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    failures_before = request.session.testsfailed
    with MetiEmulator(port=0) as emulator:
        emulator.ledger.create(collection(*(square_feature(f"F{n}", x=n) for n in range(3))))
        port = free_port()
        env = {
            **stack_env(home, port, emulator.url),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # A killed triggerer's watchers go to the next one after this many seconds.
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
            "METI_BASE_URL": emulator.url,
            "METI_WATCH_INTERVAL": "1",
            "PYTHONWARNINGS": "ignore::UserWarning",  # the short interval's warning, by design
        }
        airflow = AirflowStack(home, env, f"http://127.0.0.1:{port}", emulator)
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


def listings_served(stack: AirflowStack) -> int:
    """Listings the emulator answered: a page of (fewer than 1,000) sources, then an empty
    one. ``GET /sources/`` (one source, the extract's reads) is counted apart."""
    return stack.emulator.stats()["requests"].get("GET /sources", 0) // 2


def runs(stack: AirflowStack) -> list[tuple[str, str]]:
    return stack.query("SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id", DAG_ID)


def stored_snapshots(stack: AirflowStack) -> int:
    query = "SELECT count(*) FROM asset_state_store WHERE key LIKE 'meti_sources_changed:%'"
    return stack.query(query)[0][0]


def wait_for_listings(stack: AirflowStack, more: int) -> None:
    target = listings_served(stack) + more
    wait_until(lambda: listings_served(stack) >= target, f"{more} more listings", stack)


def finished_runs(stack: AirflowStack, count: int) -> list[tuple[str, str]]:
    def finished() -> list[tuple[str, str]] | None:
        found = runs(stack)
        done = len(found) >= count and all(s in ("success", "failed") for _, s in found)
        return found if done else None

    return wait_until(finished, f"{count} finished run(s)", stack)


def add_source(stack: AirflowStack, alt_id: str, x: int) -> str:
    (created,) = stack.emulator.ledger.create(collection(square_feature(alt_id, x=x)))
    return created["id"]


def extract_lines(stack: AirflowStack, run_id: str) -> list[dict]:
    safe_run_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    path = stack.home / "extracts" / f"meti_changes_{safe_run_id}.ndjson"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_run_per_change_none_without_and_one_across_a_triggerer_restart(stack):
    # The watcher's first listing is its baseline: stored, and no run.
    wait_until(lambda: stored_snapshots(stack) == 1, "the baseline snapshot", stack)
    wait_for_listings(stack, QUIET_LISTINGS)
    assert runs(stack) == []

    added = add_source(stack, "NEW-1", x=10)
    (run,) = finished_runs(stack, 1)
    wait_for_listings(stack, QUIET_LISTINGS)
    assert runs(stack) == [run]
    assert run[1] == "success", stack.log_tails()
    assert extract_lines(stack, run[0]) == [
        {"change": "added", "source": stack.emulator.ledger.get(added)}
    ]

    # Killed before the next poll; the source is withdrawn while no triggerer runs.
    triggerer = stack.processes["triggerer"]
    os.killpg(triggerer.pid, signal.SIGKILL)
    triggerer.wait(timeout=30)
    del stack.processes["triggerer"]
    served_while_down = listings_served(stack)
    stack.emulator.ledger.delete(added)
    assert listings_served(stack) == served_while_down
    stack.start("triggerer-2", COMPONENTS["triggerer"])

    first, second = finished_runs(stack, 2)
    wait_for_listings(stack, QUIET_LISTINGS)
    assert runs(stack) == [first, second]
    assert second[1] == "success", stack.log_tails()
    assert extract_lines(stack, second[0]) == [{"change": "removed", "id": added}]
