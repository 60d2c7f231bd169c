"""
### Register field boundaries with METI, then wait until their conflicts are resolved

1. **register_fields** sends `data/fields.geojson` (twelve field boundaries near Lubbock,
   Texas; `FIELD-012` is a MultiPolygon of two parts) to METI. Every feature is validated
   first; nothing is sent if any is invalid. A retry of the task does not store duplicates:
   features already in METI are looked up by their `id` (METI's `alt_id`) before anything is
   re-sent. On a METI API v2 connection it also sends the descriptive fields `methodology`,
   `steward_id` and `project_id` (v1 has none, so they are left unset there).
2. **report_conflicts** reads each new source back and returns a small summary,
   `{"registered": 12, "conflicts": [...]}`. Two of the sample fields (`FIELD-007` and
   `FIELD-008`) overlap by about 140 m, so METI flags both.
3. **wait_for_conflict_resolution** is one deferrable sensor per conflicting source (dynamic
   task mapping). It frees its worker slot while it waits: the triggerer polls METI every
   `poke_interval` seconds until the source no longer conflicts or has been withdrawn
   (`wait_for="resolved"`; with `"no_conflict"` a withdrawn source fails the task instead).

In real life conflicts are resolved by people, through METI's conflict request form, which can
take days: keep `sensor_timeout` generous (the default is one day). When it runs out the
sensor fails, naming the source that still conflicts; resolve it in METI, then clear the task.
The demo (`scripts/demo.sh`) plays the other grower and deletes one of the two overlapping
sources in the local emulator a few seconds after the sensor starts waiting.

**Params:** `meti_conn_id` (the Airflow connection), `fields_file` (the FeatureCollection
to register; default the sample above), `methodology`, `steward_id`, `project_id` (sent on
API v2 only), `poke_interval` (seconds between checks), `sensor_timeout` (seconds before the
sensor gives up).
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
from airflow_provider_meti.operators.meti import MetiCreateSourcesOperator
from airflow_provider_meti.sensors.meti import MetiSourceSensor

log = logging.getLogger("airflow.task")

FIELDS_FILE = Path(__file__).parent / "data" / "fields.geojson"
ONE_DAY = 24 * 60 * 60

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
}


def v2_only(meti_conn_id: str, value: str) -> str:
    """``value`` when the connection speaks METI API v2, else ``""`` (an unset field).

    A template macro: it reads the connection when the task renders, not at parse time.
    """
    from airflow_provider_meti.hooks.meti import client_settings_from_connection

    settings = client_settings_from_connection(MetiHook.get_connection(meti_conn_id))
    return value if settings.api.takes_source_fields else ""


@task
def report_conflicts(created: list[dict[str, str]], meti_conn_id: str) -> dict[str, Any]:
    """Read every new source back; log and return the ones METI flags as conflicting."""
    hook = MetiHook(meti_conn_id)
    conflicts = []
    for item in created:
        source = hook.get_source(item["id"])
        if source.get("conflict"):
            conflicts.append(_conflict_summary(source, item["alt_id"]))
    for conflict in conflicts:
        log.warning(
            "%s (%s) conflicts with %s (%.0f%% of its area)",
            conflict["alt_id"],
            conflict["id"],
            ", ".join(conflict["conflict_with"]),
            100 * conflict["percent_overlap"],
        )
    log.info("Registered %d sources, %d in conflict", len(created), len(conflicts))
    return {"registered": len(created), "conflicts": conflicts}


def _conflict_summary(source: dict[str, Any], alt_id: str) -> dict[str, Any]:
    return {
        "id": source["id"],
        "alt_id": source.get("alt_id") or alt_id,
        "conflict_with": list(source.get("conflict_with") or []),
        "percent_overlap": float(source.get("percent_overlap") or 0.0),
    }


@task
def sensors_for_conflicts(summary: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
    """One set of sensor arguments per conflicting source (params are read at run time)."""
    params = context["params"]
    return [
        {
            "source_id": conflict["id"],
            "poke_interval": float(params["poke_interval"]),
            "timeout": float(params["sensor_timeout"]),
        }
        for conflict in summary["conflicts"]
    ]


@dag(
    dag_id="meti_register_sources",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    user_defined_macros={"v2_only": v2_only},
    params={
        "meti_conn_id": Param("meti_default", type="string", description="METI connection id"),
        "fields_file": Param(
            str(FIELDS_FILE), type="string", description="GeoJSON FeatureCollection to register"
        ),
        "methodology": Param("Agriculture", type="string", description="v2: methodology"),
        "steward_id": Param("Caprock-Growers", type="string", description="v2: steward id"),
        "project_id": Param("LBK-2025", type="string", description="v2: project id"),
        "poke_interval": Param(
            5, type="number", minimum=1, description="Seconds between conflict checks"
        ),
        "sensor_timeout": Param(
            ONE_DAY, type="number", minimum=1, description="Seconds to wait for a resolution"
        ),
    },
    tags=["meti", "example"],
)
def meti_register_sources() -> None:
    # [START howto_operator_meti_create_sources]
    register = MetiCreateSourcesOperator(
        task_id="register_fields",
        meti_conn_id="{{ params.meti_conn_id }}",
        feature_collection="{{ params.fields_file }}",
        methodology="{{ v2_only(params.meti_conn_id, params.methodology) }}",
        steward_id="{{ v2_only(params.meti_conn_id, params.steward_id) }}",
        project_id="{{ v2_only(params.meti_conn_id, params.project_id) }}",
    )
    # [END howto_operator_meti_create_sources]
    summary = report_conflicts(register.output, meti_conn_id="{{ params.meti_conn_id }}")
    # [START howto_sensor_meti_source_deferrable]
    MetiSourceSensor.partial(
        task_id="wait_for_conflict_resolution",
        meti_conn_id="{{ params.meti_conn_id }}",
        wait_for="resolved",  # a withdrawn source settles its conflict too
        deferrable=True,
        map_index_template="{{ task.source_id }}",
    ).expand_kwargs(sensors_for_conflicts(summary))
    # [END howto_sensor_meti_source_deferrable]


meti_register_sources()
