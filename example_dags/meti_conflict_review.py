"""
### Register field boundaries, then let a person decide each conflict METI flags

1. **register_fields** sends `data/fields.geojson` (twelve fields near Lubbock, Texas; two of
   them, `FIELD-007` and `FIELD-008`, overlap) to METI.
2. **find_conflicts** reads each new source back and returns the ids of those in conflict.
3. **review_conflict** asks one question per conflicting source (dynamic task mapping) in
   Airflow's *Required Actions* page (Browse → Required Actions) or through the REST API. The
   question shows both sides of the conflict: `alt_id`, METI id, validity window, hectares and
   overlap, and which source is ours. The answers:
   - *Withdraw ours* runs **withdraw_ours**, which deletes our source from METI;
   - *Keep both and wait* runs **wait_for_resolution**, a deferrable sensor that waits until
     METI no longer flags the source (the other steward withdrew theirs, or METI's conflict
     request form settled it);
   - *Fail the run* fails the review without touching METI.

   Nobody answering within seven days counts as *Keep both and wait*. Airflow records who
   answered what, and when.

Answer *i* decides the withdraw or wait task with the same map index. Those run once every
question of the run is answered.

Needs Airflow 3.1 or newer (human-in-the-loop operators); on older lines this file defines
no DAG and logs why.

**Params:** `meti_conn_id` (the Airflow connection), `poke_interval` (seconds between checks
while waiting), `sensor_timeout` (seconds before the wait gives up), `deferrable` (wait in the
triggerer; off: reschedule mode, which frees the worker slot between checks too).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

try:
    from airflow.sdk import Param, dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task
    from airflow.models.param import Param

from airflow_provider_meti.hooks.meti import MetiHook
from airflow_provider_meti.operators.conflict_review import (
    HITL_AVAILABLE,
    HITL_UNAVAILABLE_REASON,
    MetiConflictReviewOperator,
)
from airflow_provider_meti.operators.meti import MetiCreateSourcesOperator, MetiDeleteSourceOperator
from airflow_provider_meti.sensors.meti import MetiSourceSensor

log = logging.getLogger(__name__)

FIELDS_FILE = Path(__file__).parent / "data" / "fields.geojson"
ONE_WEEK = timedelta(days=7)

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
}


@task
def find_conflicts(created: list[dict[str, str]], meti_conn_id: str) -> list[str]:
    """The METI ids of the new sources METI flags as conflicting, in registration order."""
    hook = MetiHook(meti_conn_id)
    return [item["id"] for item in created if hook.get_source(item["id"]).get("conflict")]


@task
def wait_arguments(source_ids: list[str], **context: Any) -> list[dict[str, Any]]:
    """The wait sensor's arguments per source, in the reviews' order (params read at run time)."""
    params = context["params"]
    deferrable = bool(params["deferrable"])
    return [
        {
            "source_id": source_id,
            "poke_interval": float(params["poke_interval"]),
            "timeout": float(params["sensor_timeout"]),
            "deferrable": deferrable,
            "mode": "poke" if deferrable else "reschedule",
        }
        for source_id in source_ids
    ]


@dag(
    dag_id="meti_conflict_review",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    params={
        "meti_conn_id": Param("meti_default", type="string", description="METI connection id"),
        "poke_interval": Param(
            60, type="number", minimum=1, description="Seconds between checks while waiting"
        ),
        "sensor_timeout": Param(
            ONE_WEEK.total_seconds(),
            type="number",
            minimum=1,
            description="Seconds to wait for a resolution after 'Keep both and wait'",
        ),
        "deferrable": Param(
            True, type="boolean", description="Wait in the triggerer, or else in reschedule mode"
        ),
    },
    tags=["meti", "example"],
)
def meti_conflict_review() -> None:
    register = MetiCreateSourcesOperator(
        task_id="register_fields",
        meti_conn_id="{{ params.meti_conn_id }}",
        feature_collection=str(FIELDS_FILE),
    )
    conflicts = find_conflicts(register.output, meti_conn_id="{{ params.meti_conn_id }}")
    # [START howto_operator_meti_conflict_review]
    review = MetiConflictReviewOperator.partial(
        task_id="review_conflict",
        meti_conn_id="{{ params.meti_conn_id }}",
        withdraw_task_id="withdraw_ours",
        wait_task_id="wait_for_resolution",
        allow_fail=True,
        response_timeout=ONE_WEEK,  # then: "Keep both and wait" (default_option)
        map_index_template="{{ task.source_id }}",
    ).expand(source_id=conflicts)
    withdraw = MetiDeleteSourceOperator.partial(
        task_id="withdraw_ours",
        meti_conn_id="{{ params.meti_conn_id }}",
        map_index_template="{{ task.source_id }}",
    ).expand(source_id=conflicts)
    wait = MetiSourceSensor.partial(
        task_id="wait_for_resolution",
        meti_conn_id="{{ params.meti_conn_id }}",
        wait_for="resolved",
        map_index_template="{{ task.source_id }}",
    ).expand_kwargs(wait_arguments(conflicts))
    review >> [withdraw, wait]
    # [END howto_operator_meti_conflict_review]


if HITL_AVAILABLE:
    meti_conflict_review()
else:
    log.warning("meti_conflict_review is not defined: %s.", HITL_UNAVAILABLE_REASON)
