"""
### Load the newest METI extract: the downstream ETL step

Scheduled on the asset `meti_daily_extract` updates (`file://<default output_dir>`), so it
runs after every daily extract, without a schedule of its own:

1. **find_latest_extract** picks the newest GeoParquet extract in `extract_dir`:
   `meti_sources_<YYYYMMDD>.parquet`, so the name's date orders them.
2. **load_extract** reads it with pyarrow, one row group at a time (memory stays flat however
   many sources there are), checks the GeoParquet metadata, and reports the row count, the
   total area in hectares and how many sources METI flags as conflicting. Replace the
   counting with your warehouse's load (DuckDB, BigQuery, Snowflake or Spark all read
   GeoParquet as it is).

It calls no METI endpoint. **Params:** `extract_dir` (default: the asset's directory, the
`METI_EXTRACT_DIR` environment variable, else `/tmp/meti_extracts`; a local directory or an
object storage URL such as `s3://bucket/meti`). Needs `airflow-provider-meti[parquet]`.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta
from typing import Any

try:
    from airflow.sdk import Asset, ObjectStoragePath, Param, dag, task
except ImportError:  # Airflow 2.11
    from airflow.datasets import Dataset as Asset
    from airflow.decorators import dag, task
    from airflow.io.path import ObjectStoragePath
    from airflow.models.param import Param

log = logging.getLogger("airflow.task")

DEFAULT_EXTRACT_DIR = os.environ.get("METI_EXTRACT_DIR", "/tmp/meti_extracts")
# The asset meti_daily_extract lists in its extract task's outlets (a Dataset on 2.11).
EXTRACTS = Asset(f"file://{DEFAULT_EXTRACT_DIR}")
EXTRACT_PATTERN = "meti_sources_*.parquet"

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
}


@task
def find_latest_extract(**context: Any) -> str:
    """The newest GeoParquet extract in ``extract_dir`` (by the date in its name)."""
    directory = ObjectStoragePath(context["params"]["extract_dir"])
    extracts = sorted(directory.glob(EXTRACT_PATTERN), key=lambda path: path.name)
    if not extracts:
        raise FileNotFoundError(f"No {EXTRACT_PATTERN} in {directory}: nothing to load yet.")
    log.info("Newest of %d extracts: %s", len(extracts), extracts[-1])
    return str(extracts[-1])


@task
def load_extract(path: str) -> dict[str, Any]:
    """Read the GeoParquet file batch by batch: rows, hectares and conflicts."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rows = conflicts = 0
    hectares = 0.0
    with ObjectStoragePath(path).open("rb") as handle:
        parquet = pq.ParquetFile(handle)
        geo = json.loads((parquet.schema_arrow.metadata or {}).get(b"geo", b"{}"))
        if geo.get("primary_column") != "geometry":
            raise ValueError(f"{path} is not a GeoParquet file (no 'geo' metadata).")
        for batch in parquet.iter_batches(columns=["hectares", "conflict"]):
            rows += batch.num_rows
            hectares += pc.sum(batch.column("hectares")).as_py() or 0.0
            conflicts += pc.sum(batch.column("conflict").cast("int64")).as_py() or 0
    loaded = {
        "path": path,
        "rows": rows,
        "hectares": round(hectares, 3),
        "conflicts": conflicts,
    }
    log.info("Loaded %s", loaded)
    return loaded


@dag(
    dag_id="meti_extract_load",
    schedule=[EXTRACTS],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    params={
        "extract_dir": Param(
            DEFAULT_EXTRACT_DIR, type="string", description="Where meti_daily_extract writes"
        ),
    },
    tags=["meti", "example"],
)
def meti_extract_load() -> None:
    load_extract(find_latest_extract())


meti_extract_load()
