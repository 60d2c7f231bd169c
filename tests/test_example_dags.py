"""The example DAGs: they load cleanly, follow the house rules and run to success.

Each DAG runs with ``dag.test()`` against the emulator: tasks run in this process, and the
deferred sensor's trigger runs inline, so a background thread resolves the conflict the
register DAG waits on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_meti import geojson
from airflow_provider_meti.operators.conflict_review import HITL_AVAILABLE
from tests import airflow_compat

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DAGS = ROOT / "example_dags"
FIELDS_FILE = EXAMPLE_DAGS / "data" / "fields.geojson"
DAG_IDS = {"meti_register_sources", "meti_daily_extract", "meti_extract_load", "meti_taskflow"}
CALLS_NO_METI = {"meti_extract_load"}  # so it has no meti_conn_id param
if HITL_AVAILABLE:  # before 3.1 these files define none (see test_example_conflict_review.py)
    DAG_IDS |= {"meti_conflict_review", "meti_on_conflict_change"}
OVERLAPPING_FIELDS = ["FIELD-007", "FIELD-008"]
WAIT_LIMIT = 60.0
DEFAULT_EXTRACT_DIR = os.environ.get("METI_EXTRACT_DIR", "/tmp/meti_extracts")


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The metadata database this process uses (under AIRFLOW_HOME), migrated once."""
    from airflow.configuration import conf

    airflow = str(Path(sys.executable).with_name("airflow"))
    database = conf.get("database", "sql_alchemy_conn")
    result = subprocess.run(
        [airflow, "db", "migrate"],
        env={**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def dag_bag():
    return airflow_compat.dag_bag(str(EXAMPLE_DAGS))


@pytest.fixture
def example_dags_folder(monkeypatch) -> None:
    """Make example_dags Airflow's DAGs folder: ``dag.test()`` runs only DAGs found there."""
    from airflow import settings

    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(EXAMPLE_DAGS))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(EXAMPLE_DAGS))


@pytest.fixture
def run_dag(airflow_db, example_dags_folder, meti_connection, dag_bag):
    """Run one example DAG with ``dag.test()``; failing tasks fail at once (no retries)."""

    def run(dag_id: str, **kwargs: Any):
        dag = dag_bag.dags[dag_id]
        retries = {task.task_id: task.retries for task in dag.tasks}
        try:
            for task in dag.tasks:
                task.retries = 0
            return airflow_compat.run_dag_test(dag, **kwargs)
        finally:
            for task in dag.tasks:
                task.retries = retries[task.task_id]

    return run


# --- helpers ---------------------------------------------------------------------------------


def register_fields(emulator) -> list[dict[str, str]]:
    return emulator.ledger.create(geojson.load_feature_collection(FIELDS_FILE))


def states(dag_run) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}


xcom_value = airflow_compat.xcom_return_value
asset_events = airflow_compat.asset_events


def source_reads(emulator) -> int:
    requests = emulator.stats()["requests"]
    return sum(count for request, count in requests.items() if request.startswith("GET /sources/"))


def withdraw_once_sensed(emulator, alt_id: str) -> dict[str, Any]:
    """In the background: once ``alt_id`` conflicts and a sensor has read it, delete it.

    ``report_conflicts`` reads every new source once, so a read beyond the number of
    stored sources is the sensor's. Returns a dict that gets ``{"withdrawn": id}``.
    """
    outcome: dict[str, Any] = {}

    def withdraw() -> None:
        deadline = time.monotonic() + WAIT_LIMIT
        while time.monotonic() < deadline:
            source = next((s for s in emulator.ledger.all() if s["alt_id"] == alt_id), None)
            if source and source["conflict"] and source_reads(emulator) > emulator.ledger.count():
                emulator.ledger.delete(source["id"])
                outcome["withdrawn"] = source["id"]
                return
            time.sleep(0.1)

    thread = threading.Thread(target=withdraw, name="withdraw-field", daemon=True)
    thread.start()
    outcome["thread"] = thread
    return outcome


# --- loading ---------------------------------------------------------------------------------


def test_every_example_dag_loads_without_import_errors(dag_bag):
    assert dag_bag.import_errors == {}
    assert set(dag_bag.dag_ids) == DAG_IDS


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_example_dag_documents_itself_and_retries(dag_bag, dag_id):
    dag = dag_bag.dags[dag_id]
    assert dag.doc_md and dag.doc_md.strip().startswith("###")
    assert dag.default_args["retries"] == 2
    assert dag.default_args["retry_delay"] >= timedelta(seconds=1)
    assert set(dag.tags) == {"meti", "example"}
    if dag_id not in CALLS_NO_METI:
        assert dag.params["meti_conn_id"] == "meti_default"
    assert all(task.retries == 2 for task in dag.tasks)


def test_parsing_the_example_dags_calls_nothing(emulator, meti_connection):
    airflow_compat.dag_bag(str(EXAMPLE_DAGS))
    assert emulator.stats()["requests"] == {}


def test_sample_fields_conflict_only_where_they_overlap(emulator):
    created = register_fields(emulator)
    conflicting = sorted(s["alt_id"] for s in emulator.ledger.all() if s["conflict"])
    assert len(created) == 12
    assert conflicting == OVERLAPPING_FIELDS


# --- running ---------------------------------------------------------------------------------


def test_register_sources_waits_until_the_conflict_is_resolved(run_dag, emulator, meti_api_version):
    neighbour = withdraw_once_sensed(emulator, "FIELD-008")

    dag_run = run_dag("meti_register_sources", run_conf={"poke_interval": 1, "sensor_timeout": 60})

    neighbour["thread"].join(timeout=5)
    assert "withdrawn" in neighbour, "the sensor never read the conflicting source"
    assert dag_run.state == "success", states(dag_run)
    summary = xcom_value(dag_run, "report_conflicts")
    assert summary["registered"] == 12
    assert sorted(c["alt_id"] for c in summary["conflicts"]) == OVERLAPPING_FIELDS
    assert all(c["percent_overlap"] > 0.1 for c in summary["conflicts"])
    sensors = {k: v for k, v in states(dag_run).items() if k[0] == "wait_for_conflict_resolution"}
    assert sorted(sensors.values()) == ["success", "success"]
    stored = emulator.ledger.all()
    assert len(stored) == 11
    assert not any(source["conflict"] for source in stored)
    by_alt_id = {source["alt_id"]: source for source in stored}
    assert by_alt_id["FIELD-012"]["geojson"]["geometry"]["type"] == "MultiPolygon"
    # The documented-only emulator stores v2's descriptive fields; v1 has none.
    fields = {(s["methodology"], s["steward_id"], s["project_id"]) for s in stored}
    if meti_api_version == 2:
        assert fields == {("Agriculture", "Caprock-Growers", "LBK-2025")}
    else:
        assert fields == {(None, None, None)}


def test_daily_extract_writes_geoparquet_and_summarises_it(run_dag, emulator, tmp_path):
    import pyarrow.parquet as pq

    register_fields(emulator)
    emulator.ledger.seed(30)

    dag_run = run_dag("meti_daily_extract", run_conf={"output_dir": str(tmp_path)})

    assert dag_run.state == "success", states(dag_run)
    (extract,) = tmp_path.glob("meti_sources_*.parquet")
    table = pq.read_table(extract)
    stored = {source["id"]: source for source in emulator.ledger.all()}
    assert table.num_rows == 42
    assert set(table.column("id").to_pylist()) == set(stored)
    assert b"geo" in pq.ParquetFile(extract).schema_arrow.metadata
    assert_summarised(dag_run, extract, stored)


def assert_summarised(dag_run, extract, stored: dict[str, dict]) -> None:
    """The extract task names its file and count, the summary reads it, the asset is emitted."""
    assert xcom_value(dag_run, "extract_sources") == {"path": str(extract), "count": 42}
    summary = xcom_value(dag_run, "summarise_extract")
    assert summary["count"] == 42
    assert summary["hectares"] == pytest.approx(sum(s["hectares"] for s in stored.values()))
    assert summary["conflicts"] == OVERLAPPING_FIELDS
    assert asset_events(dag_run) == [(f"file://{DEFAULT_EXTRACT_DIR}", "extract_sources")]


def test_daily_extract_writes_ndjson_when_asked(run_dag, emulator, tmp_path):
    register_fields(emulator)
    emulator.ledger.seed(30)

    run_conf = {"output_dir": str(tmp_path), "output_format": "ndjson"}
    dag_run = run_dag("meti_daily_extract", run_conf=run_conf)

    assert dag_run.state == "success", states(dag_run)
    (extract,) = tmp_path.glob("meti_sources_*.ndjson")
    features = [json.loads(line) for line in extract.read_text().splitlines()]
    stored = {source["id"]: source for source in emulator.ledger.all()}
    assert len(features) == 42
    assert {feature["id"] for feature in features} == set(stored)
    assert all(feature["type"] == "Feature" for feature in features)
    assert_summarised(dag_run, extract, stored)


def test_incremental_extract_asks_for_recent_changes_and_misses_none(run_dag, emulator, tmp_path):
    register_fields(emulator)

    # A run two days ahead covers an interval that starts after these sources were stored.
    dag_run = run_dag(
        "meti_daily_extract",
        logical_date=airflow_compat.utcnow() + timedelta(days=2),
        run_conf={"output_dir": str(tmp_path), "incremental": True},
    )

    assert dag_run.state == "success", states(dag_run)
    filters = xcom_value(dag_run, "extract_filters")
    assert geojson.parse_timestamp(filters["updated_since"]) == dag_run.data_interval_start
    # METI does not document updated_since: a server that ignores it (as the emulator does
    # here, in its documented-only mode) makes the incremental extract a full one, never a
    # short one.
    assert xcom_value(dag_run, "summarise_extract")["count"] == emulator.ledger.count()
    assert emulator.ledger.count() > 0


def test_extract_load_loads_the_newest_geoparquet_extract(run_dag, dag_bag, emulator, tmp_path):
    register_fields(emulator)
    emulator.ledger.seed(30)
    run_conf = {"output_dir": str(tmp_path), "output_format": "parquet"}
    extracted = run_dag("meti_daily_extract", run_conf=run_conf)
    assert extracted.state == "success", states(extracted)
    (extract,) = tmp_path.glob("meti_sources_*.parquet")
    (tmp_path / "meti_sources_20000101.parquet").write_bytes(b"older by name: not chosen")

    dag_run = run_dag("meti_extract_load", run_conf={"extract_dir": str(tmp_path)})

    assert dag_run.state == "success", states(dag_run)
    stored = emulator.ledger.all()
    loaded = xcom_value(dag_run, "load_extract")
    assert loaded["path"] == str(extract)
    assert loaded["rows"] == 42 == len(stored)
    assert loaded["hectares"] == pytest.approx(sum(s["hectares"] for s in stored), abs=1e-3)
    assert loaded["conflicts"] == len(OVERLAPPING_FIELDS)
    # Scheduled on the asset that meti_daily_extract's extract task updates (2.11: dataset).
    (outlet,) = dag_bag.dags["meti_daily_extract"].get_task("extract_sources").outlets
    timetable = dag_bag.dags["meti_extract_load"].timetable
    condition = getattr(timetable, "asset_condition", None) or timetable.dataset_condition
    assert [asset.uri for asset in condition.objects] == [outlet.uri]


def test_taskflow_creates_reads_lists_and_deletes(run_dag, emulator):
    dag_run = run_dag("meti_taskflow")

    assert dag_run.state == "success", states(dag_run)
    created = xcom_value(dag_run, "create_pastures")
    assert [item["alt_id"][:10] for item in created] == ["PASTURE-N-", "PASTURE-S-"]
    areas = xcom_value(dag_run, "read_back")
    assert sorted(areas) == sorted(item["alt_id"] for item in created)
    assert all(30 < hectares < 50 for hectares in areas.values())
    assert xcom_value(dag_run, "list_pastures") == 2
    assert xcom_value(dag_run, "delete_pastures") == 2
    assert emulator.ledger.count() == 0


def test_register_sources_fails_clearly_when_nobody_resolves_the_conflict(run_dag, emulator, capfd):
    dag_run = run_dag("meti_register_sources", run_conf={"poke_interval": 1, "sensor_timeout": 2})

    assert dag_run.state == "failed"
    sensors = {k: v for k, v in states(dag_run).items() if k[0] == "wait_for_conflict_resolution"}
    assert sorted(sensors.values()) == ["failed", "failed"]
    output = "".join(capfd.readouterr())
    for conflict in xcom_value(dag_run, "report_conflicts")["conflicts"]:
        assert f"Source {conflict['id']} was still not free of conflicts" in output


def test_taskflow_runs_the_same_against_the_sandbox(run_dag, emulator, meti_connection):
    meti_connection(extra={"sandbox": True})

    dag_run = run_dag("meti_taskflow")

    assert dag_run.state == "success", states(dag_run)
    created = xcom_value(dag_run, "create_pastures")
    assert all(item["id"].startswith("sandbox_") for item in created)
    assert xcom_value(dag_run, "delete_pastures") == 2
    # Everything went to the sandbox's own store; production saw no source.
    source_calls = [key for key in emulator.stats()["requests"] if "/sources" in key]
    assert source_calls and all("/sandbox/sources" in key for key in source_calls), source_calls
    assert emulator.ledger.count() == 0 and emulator.sandbox_ledger.count() == 0
