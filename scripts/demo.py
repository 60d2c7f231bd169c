"""Run the example DAGs against a local METI emulator and say what happened.

Usage: ``scripts/demo.sh`` (it installs what is needed, then runs this file).

The emulator runs in this process on a free loopback port. Each DAG runs with
``airflow dags test`` in its own process, writing its output to ``.airflow/demo/logs/``.
While ``meti_register_sources`` waits for its conflict to be resolved, a background thread
plays the neighbouring grower and deletes one of the two overlapping fields from the emulator,
as someone would through METI's request form.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_meti.emulator import MetiEmulator

ROOT = Path(__file__).resolve().parents[1]
DEMO_HOME = ROOT / ".airflow" / "demo"
LOG_DIR = DEMO_HOME / "logs"
EXTRACT_DIR = DEMO_HOME / "extracts"
EMAIL, PASSWORD = "demo@meti.local", "demo-password"
REGISTER_CONF = {"poke_interval": 1, "sensor_timeout": 60}
# The field the neighbour drew into FIELD-007; deleting it resolves the conflict.
FIELD_TO_WITHDRAW = "FIELD-008"
DAG_TIMEOUT = 300
RESOLVE_AFTER_AT_MOST = 20.0


@dataclass
class DagOutcome:
    dag_id: str
    returncode: int
    seconds: float
    log_path: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class Resolution:
    """What the background "neighbour" saw and did."""

    conflicting: list[str] = field(default_factory=list)
    withdrawn: str | None = None


def main() -> int:
    started = time.monotonic()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    EXTRACT_DIR.mkdir(parents=True, exist_ok=True)
    with MetiEmulator(host="127.0.0.1", port=0, users={EMAIL: PASSWORD}) as emulator:
        print(f"METI emulator on {emulator.url}")
        env = airflow_env(emulator.url)
        if not migrate_database(env):
            return 1
        resolution = Resolution()
        resolver = threading.Thread(
            target=resolve_conflict, args=(emulator, resolution), daemon=True
        )
        resolver.start()
        outcomes = [run_dag("meti_register_sources", env, conf=REGISTER_CONF)]
        resolver.join(timeout=1)
        registered = emulator.stats()["sources_created"]
        outcomes.append(run_dag("meti_daily_extract", env))
        # The downstream step, scheduled on the extract's asset: it loads the file just written.
        outcomes.append(run_dag("meti_extract_load", env))
        outcomes.append(run_dag("meti_taskflow", env))
        remaining = emulator.ledger.count()
    print_summary(outcomes, resolution, registered, remaining, time.monotonic() - started)
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def airflow_env(meti_url: str) -> dict[str, str]:
    """The environment of every ``airflow`` command of the demo."""
    connection = {"conn_type": "meti", "host": meti_url, "login": EMAIL, "password": PASSWORD}
    return {
        **os.environ,
        "AIRFLOW_HOME": str(DEMO_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "AIRFLOW_CONN_METI_DEFAULT": json.dumps(connection),
        "METI_EXTRACT_DIR": str(EXTRACT_DIR),
    }


def migrate_database(env: dict[str, str]) -> bool:
    log_path = LOG_DIR / "db-migrate.log"
    print("Preparing Airflow's database ...", flush=True)
    with log_path.open("w") as log:
        result = subprocess.run(
            [airflow_bin(), "db", "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        print(f"airflow db migrate failed; see {log_path}")
        print_tail(log_path)
    return result.returncode == 0


def run_dag(dag_id: str, env: dict[str, str], *, conf: dict[str, Any] | None = None) -> DagOutcome:
    """``airflow dags test dag_id`` with its output in a log file."""
    command = [airflow_bin(), "dags", "test", dag_id]
    if conf:
        command += ["-c", json.dumps(conf)]
    log_path = LOG_DIR / f"{dag_id}.log"
    print(f"Running {dag_id} ...", end=" ", flush=True)
    started = time.monotonic()
    with log_path.open("w") as log:
        try:
            returncode = subprocess.run(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=DAG_TIMEOUT
            ).returncode
        except subprocess.TimeoutExpired:
            returncode = -1
    outcome = DagOutcome(dag_id, returncode, time.monotonic() - started, log_path)
    outcome_word = "ok" if outcome.ok else f"FAILED (exit {returncode})"
    print(f"{outcome_word} in {outcome.seconds:.1f} s", flush=True)
    if not outcome.ok:
        print_tail(log_path)
    return outcome


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def resolve_conflict(emulator: MetiEmulator, resolution: Resolution) -> None:
    """Wait until the sensor polls a conflicting source, then withdraw the neighbour's field."""
    deadline = time.monotonic() + DAG_TIMEOUT
    conflicting: list[dict[str, Any]] = []
    while not conflicting and time.monotonic() < deadline:
        time.sleep(0.2)
        conflicting = [source for source in emulator.ledger.all() if source.get("conflict")]
    if not conflicting:
        return
    resolution.conflicting = sorted(source["alt_id"] for source in conflicting)
    wait_until_sensor_polls(emulator, deadline=time.monotonic() + RESOLVE_AFTER_AT_MOST)
    withdrawn = next(
        (source for source in conflicting if source["alt_id"] == FIELD_TO_WITHDRAW),
        conflicting[-1],
    )
    emulator.ledger.delete(withdrawn["id"])
    resolution.withdrawn = withdrawn["alt_id"]


def wait_until_sensor_polls(emulator: MetiEmulator, *, deadline: float) -> None:
    """Return once some source was read more often than there are sources (or at deadline).

    ``report_conflicts`` reads each new source once; any further read is the sensor's.
    """
    while time.monotonic() < deadline:
        reads = sum(
            count
            for request, count in emulator.stats()["requests"].items()
            if request.startswith("GET /sources/")
        )
        if reads > emulator.ledger.count():
            return
        time.sleep(0.2)


def extract_summary(path: Path) -> dict[str, Any]:
    """Rows, total hectares and format of one extract: GeoParquet or NDJSON."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        hectares_column = pq.read_table(path, columns=["hectares"]).column("hectares")
        values = [value for value in hectares_column.to_pylist() if value is not None]
        return {"rows": len(hectares_column), "hectares": sum(values), "format": "GeoParquet"}
    rows = 0
    hectares = 0.0
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                rows += 1
                hectares += float(json.loads(line)["properties"].get("hectares") or 0.0)
    return {"rows": rows, "hectares": hectares, "format": "NDJSON"}


def newest_extract() -> Path | None:
    files = sorted(EXTRACT_DIR.glob("meti_sources_*.*"), key=lambda path: path.stat().st_mtime)
    return files[-1] if files else None


def print_summary(
    outcomes: list[DagOutcome],
    resolution: Resolution,
    registered: int,
    remaining: int,
    elapsed: float,
) -> None:
    print()
    print("METI demo summary")
    for outcome in outcomes:
        state = "success" if outcome.ok else "FAILED"
        log = outcome.log_path.relative_to(ROOT)
        print(f"  {outcome.dag_id:<24} {state:<8} {outcome.seconds:5.1f} s   log: {log}")
    conflicts = ", ".join(resolution.conflicting) or "none"
    print(f"  sources registered       {registered}")
    print(f"  conflicts found          {conflicts}")
    if resolution.withdrawn:
        print(f"  conflict resolved by     withdrawing {resolution.withdrawn} (deleted in METI)")
    extract = newest_extract()
    if extract is not None:
        totals = extract_summary(extract)
        print(f"  rows extracted           {totals['rows']}")
        print(f"  total area               {totals['hectares']:.1f} ha")
        print(f"  extract file             {extract} ({totals['format']})")
    print(f"  sources left in METI     {remaining}")
    print(f"  elapsed                  {elapsed:.1f} s")


def print_tail(path: Path, lines: int = 40) -> None:
    tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    print(f"--- last {len(tail)} lines of {path} ---")
    print("\n".join(tail))
    print("---")


if __name__ == "__main__":
    sys.exit(main())
