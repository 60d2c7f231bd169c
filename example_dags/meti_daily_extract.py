"""
### Extract every METI source once a day to a GeoParquet file

1. **wait_for_sources** asks METI for one source, every ten minutes in reschedule mode, until
   the account has at least one: an empty account has nothing to extract yet.
2. **extract_filters** decides what to ask for: everything (the default), or, when the
   `incremental` param is true, only the sources updated since the start of the run's data
   interval.
3. **extract_sources** pages through `GET /sources` and streams the sources, one row group
   per page, to `{output_dir}/meti_sources_{ds_nodash}.parquet` (GeoParquet: load it into
   DuckDB, BigQuery, Snowflake or geopandas as it is). The sources never pass through XCom:
   only `{"path", "count"}` does. The task updates the asset `file://<default output_dir>`,
   so DAGs scheduled on it run after each extract.
4. **summarise_extract** reads the file back, one row group at a time (one line at a time for
   NDJSON), and returns the source count, the total area in hectares and the sources METI
   flags as conflicting.

**Params:** `meti_conn_id` (the Airflow connection), `output_dir` (default: the
`METI_EXTRACT_DIR` environment variable, else `/tmp/meti_extracts`; a local directory or an
object storage URL such as `s3://bucket/meti`), `output_format` (`parquet`, the default, needs
`airflow-provider-meti[parquet]`; or `ndjson`, one GeoJSON Feature per line), `incremental`
(extract only recent changes).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

try:
    from airflow.sdk import Asset, ObjectStoragePath, Param, dag, task
except ImportError:  # Airflow 2.11
    from airflow.datasets import Dataset as Asset
    from airflow.decorators import dag, task
    from airflow.io.path import ObjectStoragePath
    from airflow.models.param import Param

from airflow_provider_meti.operators.meti import MetiListSourcesOperator
from airflow_provider_meti.sensors.meti import MetiSensor

log = logging.getLogger("airflow.task")

DEFAULT_OUTPUT_DIR = os.environ.get("METI_EXTRACT_DIR", "/tmp/meti_extracts")
# [START howto_asset_meti_extract]
EXTRACTS = Asset(f"file://{DEFAULT_OUTPUT_DIR}")  # a Dataset on Airflow 2.11
# [END howto_asset_meti_extract]

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
}


@task
def extract_filters(**context: Any) -> dict[str, str]:
    """No filter for a full extract; ``updated_since`` for an incremental one."""
    if not context["params"]["incremental"]:
        return {}
    return {"updated_since": context["data_interval_start"].isoformat()}


def parquet_rows(path: ObjectStoragePath) -> Iterator[dict[str, Any]]:
    """The rows of a GeoParquet extract, read one row group at a time (no geometry needed)."""
    import pyarrow.parquet as pq

    with path.open("rb") as handle:
        parquet = pq.ParquetFile(handle)
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=["id", "alt_id", "hectares", "conflict"])
            yield from table.to_pylist()


def ndjson_rows(path: ObjectStoragePath) -> Iterator[dict[str, Any]]:
    """The properties (and id) of each Feature of an NDJSON extract, one line at a time."""
    with path.open("r") as handle:
        # readline, not iteration: the file wrapper of Airflow 2.11 and 3.0 is not iterable.
        for line in iter(handle.readline, ""):
            if line.strip():
                feature = json.loads(line)
                yield {"id": feature.get("id"), **(feature.get("properties") or {})}


@task
def summarise_extract(extract: dict[str, Any]) -> dict[str, Any]:
    """Count, total hectares and conflicting sources of the extract file."""
    path = ObjectStoragePath(extract["path"])
    rows = parquet_rows(path) if extract["path"].endswith(".parquet") else ndjson_rows(path)
    count = 0
    hectares = 0.0
    conflicts = []
    for row in rows:
        count += 1
        hectares += float(row.get("hectares") or 0.0)
        if row.get("conflict"):
            conflicts.append(row.get("alt_id") or row.get("id"))
    summary = {
        "count": count,
        "hectares": round(hectares, 3),
        "conflicts": sorted(conflicts),
        "path": extract["path"],
    }
    log.info("Extract summary: %s", summary)
    return summary


@dag(
    dag_id="meti_daily_extract",
    schedule="@daily",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    params={
        "meti_conn_id": Param("meti_default", type="string", description="METI connection id"),
        "output_dir": Param(
            DEFAULT_OUTPUT_DIR, type="string", description="Where the daily files go"
        ),
        "output_format": Param(
            "parquet",
            type="string",
            enum=["parquet", "ndjson"],
            description="GeoParquet, or newline-delimited GeoJSON",
        ),
        "incremental": Param(
            False, type="boolean", description="Only sources updated in the data interval"
        ),
    },
    tags=["meti", "example"],
)
def meti_daily_extract() -> None:
    # [START howto_sensor_meti]
    has_sources = MetiSensor(
        task_id="wait_for_sources",
        meti_conn_id="{{ params.meti_conn_id }}",
        endpoint="/sources",
        request_params={"limit": 1},
        response_check=lambda sources: len(sources) > 0,
        mode="reschedule",  # frees the worker slot between checks
        poke_interval=10 * 60,
        timeout=6 * 60 * 60,
    )
    # [END howto_sensor_meti]
    # [START howto_operator_meti_list_sources]
    extract = MetiListSourcesOperator(
        task_id="extract_sources",
        meti_conn_id="{{ params.meti_conn_id }}",
        filters=extract_filters(),
        # The format's name is also the file's suffix: .parquet or .ndjson.
        output_path=(
            "{{ params.output_dir }}/meti_sources_{{ ds_nodash }}.{{ params.output_format }}"
        ),
        output_format="{{ params.output_format }}",
        outlets=[EXTRACTS],
    )
    # [END howto_operator_meti_list_sources]
    has_sources >> extract
    summarise_extract(extract.output)


meti_daily_extract()
