"""The DAG runs: six registrations (each its own fields) and six daily extracts to S3.

Each ``meti_register_sources`` run registers the sample's twelve fields moved north by its own
offset and renamed ``R<n>-FIELD-…``, so the runs never overlap each other; inside each run
``FIELD-007`` and ``FIELD-008`` overlap as in the sample. Once both of a run's sensors are
deferred to the triggerer, the script withdraws that run's ``FIELD-008``, as the neighbouring
grower would through METI's request form. The extracts start once METI holds a source (their
first sensor waits ten minutes between pokes), on six logical dates, while registrations and
sensors are still running.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow_stack import AirflowStack
from metadata import Metadata
from servers import Emulator

REGISTER = "meti_register_sources"
EXTRACT = "meti_daily_extract"
SENSOR = "wait_for_conflict_resolution"
RUNS_EACH = 6
LATITUDE_STEP = 0.05  # about 5.5 km: the sample spans 0.018 degrees of latitude
WITHDRAWN_FIELD = "FIELD-008"
REGISTER_CONF = {"poke_interval": 1, "sensor_timeout": 600}
FINISHED = ("success", "failed")


@dataclass
class RegisterRun:
    run_id: str
    fields_file: Path
    alt_ids: list[str]
    withdraw_alt_id: str
    withdrawn_source: str | None = None
    deferred_triggers: dict[int, int] = field(default_factory=dict)


@dataclass
class Runs:
    register: dict[str, RegisterRun] = field(default_factory=dict)
    extract: dict[str, str] = field(default_factory=dict)  # run_id -> logical date
    most_deferred_at_once: int = 0
    extracts_started_with_sources: int = 0
    states: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def expected_alt_ids(self) -> set[str]:
        return {
            alt_id
            for run in self.register.values()
            for alt_id in run.alt_ids
            if alt_id != run.withdraw_alt_id
        }


def register_run_id(index: int) -> str:
    return f"topology_register_r{index}"


def alt_id_prefix(index: int) -> str:
    """What every alt_id of registration ``index`` starts with."""
    return f"R{index}-"


def write_fields(sample: Path, target_dir: Path, index: int) -> tuple[Path, list[str]]:
    """The sample collection moved ``index`` steps north, its ids prefixed ``R<index>-``."""
    collection = json.loads(sample.read_text())
    for feature in collection["features"]:
        feature["id"] = alt_id_prefix(index) + feature["id"]
        geometry = feature["geometry"]
        polygons = geometry["coordinates"]
        if geometry["type"] == "Polygon":
            polygons = [polygons]
        moved = [
            [[[lon, lat + index * LATITUDE_STEP] for lon, lat in ring] for ring in polygon]
            for polygon in polygons
        ]
        geometry["coordinates"] = moved[0] if geometry["type"] == "Polygon" else moved
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / f"fields-r{index}.geojson"
    path.write_text(json.dumps(collection))
    return path, [feature["id"] for feature in collection["features"]]


def trigger_registrations(stack: AirflowStack, sample: Path, fields_dir: Path, runs: Runs) -> None:
    stack.wait_for_dag(REGISTER)
    for index in range(1, RUNS_EACH + 1):
        path, alt_ids = write_fields(sample, fields_dir, index)
        run_id = register_run_id(index)
        conf = {**REGISTER_CONF, "fields_file": str(path)}
        stack.api("POST", f"/dags/{REGISTER}/dagRuns", _run_body(run_id, None, conf))
        withdrawn = alt_id_prefix(index) + WITHDRAWN_FIELD
        runs.register[run_id] = RegisterRun(run_id, path, alt_ids, withdrawn)
    stack.api("PATCH", f"/dags/{REGISTER}", {"is_paused": False})


def trigger_extracts(stack: AirflowStack, output_dir: str, runs: Runs) -> None:
    """Six runs ending on the DAG's next scheduled date, so the scheduler adds none of its own."""
    details = stack.wait_for_dag(EXTRACT)
    newest = datetime.fromisoformat(details["next_dagrun_logical_date"].replace("Z", "+00:00"))
    conf: dict[str, Any] = {"output_dir": output_dir}
    formats = details.get("params", {}).get("output_format", {}).get("schema", {}).get("enum")
    if "ndjson" in (formats or []):
        conf["output_format"] = "ndjson"  # line counts are the check; GeoParquet is the default
    for days_back in range(RUNS_EACH):
        logical = newest - timedelta(days=days_back)
        run_id = f"topology_extract_{logical:%Y%m%d}"
        stack.api("POST", f"/dags/{EXTRACT}/dagRuns", _run_body(run_id, logical, conf))
        runs.extract[run_id] = logical.isoformat()
    stack.api("PATCH", f"/dags/{EXTRACT}", {"is_paused": False})


def _run_body(run_id: str, logical: datetime | None, conf: dict[str, Any]) -> dict[str, Any]:
    return {
        "dag_run_id": run_id,
        "logical_date": logical.isoformat() if logical else None,
        "conf": conf,
    }


def run_all(
    stack: AirflowStack,
    db: Metadata,
    emulator: Emulator,
    *,
    sample: Path,
    fields_dir: Path,
    output_dir: str,
    timeout: float,
    on_poll: Callable[[Metadata], None] = lambda _db: None,
    excuse: Callable[[list[str]], list[str]] | None = None,
) -> Runs:
    """Trigger every run, resolve conflicts as sensors defer, return when all have finished.

    :param on_poll: called on each look at the runs (about twice a second) while they run
    :param excuse: takes the components found exited before they fail the run (see
        ``AirflowStack.check_running``)
    """
    runs = Runs()
    trigger_registrations(stack, sample, fields_dir, runs)
    ledger = emulator.server.ledger if emulator.server else None
    assert ledger is not None
    _wait(stack, lambda: ledger.count() > 0, "the first registered source", timeout, excuse)
    runs.extracts_started_with_sources = ledger.count()
    trigger_extracts(stack, output_dir, runs)

    def finished() -> bool:
        on_poll(db)
        _resolve_deferred_conflicts(db, emulator, runs)
        runs.states = db.run_states((REGISTER, EXTRACT))
        wanted = len(runs.register) + len(runs.extract)
        return len(runs.states) >= wanted and all(s in FINISHED for s in runs.states.values())

    _wait(stack, finished, "every run to finish", timeout, excuse, lambda: _describe(runs))
    return runs


def _resolve_deferred_conflicts(db: Metadata, emulator: Emulator, runs: Runs) -> None:
    deferred_now = 0
    for run in runs.register.values():
        sensors = db.task_states(REGISTER, run.run_id, SENSOR)
        deferred = {m: trigger for m, state, trigger in sensors if state == "deferred" and trigger}
        deferred_now += len(deferred)
        run.deferred_triggers.update(deferred)
        if run.withdrawn_source is None and len(sensors) == 2 and len(deferred) == 2:
            assert emulator.server is not None
            source = next(
                s for s in emulator.server.ledger.all() if s.get("alt_id") == run.withdraw_alt_id
            )
            emulator.withdraw(source)
            run.withdrawn_source = source["id"]
    runs.most_deferred_at_once = max(runs.most_deferred_at_once, deferred_now)


def _describe(runs: Runs) -> str:
    return ", ".join(f"{run_id}: {state}" for (_, run_id), state in sorted(runs.states.items()))


def _wait(
    stack: AirflowStack,
    condition: Any,
    what: str,
    timeout: float,
    excuse: Callable[[list[str]], list[str]] | None = None,
    describe: Any = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        stack.check_running(excuse)
        time.sleep(0.5)
    raise RuntimeError(f"gave up after {timeout:.0f} s waiting for {what}. {describe()}")
