"""
### The METI API from TaskFlow functions, through `MetiHook`, and from single-call operators

When no operator fits, call `MetiHook` from a `@task`. The hook turns the Airflow connection
into a client that handles tokens, retries and timeouts, so a task only says what it wants:

1. **create_pastures** registers two pastures near Amarillo, Texas, and returns their ids
   (safe to retry: a second try skips what the first one stored).
2. **read_back** gets each source and returns the area METI computed for it.
3. **list_pastures** lists sources with a filter and checks both pastures are there.
4. **get_north_pasture** (`MetiGetSourceOperator`) and **list_pasture_ids** (`MetiOperator`,
   any endpoint) do the same kind of call without code of their own.
5. **delete_north_pasture** (`MetiDeleteSourceOperator`) deletes the first pasture.
6. **delete_pastures** deletes both (a source already gone is fine). It is a teardown task: it
   runs even when a task before it fails, so the example never leaves sources behind.

**Params:** `meti_conn_id` (the Airflow connection).
"""

from __future__ import annotations

import logging
import zlib
from datetime import datetime, timedelta
from typing import Any

try:
    from airflow.sdk import Param, dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task
    from airflow.models.param import Param

from airflow_provider_meti.hooks.meti import MetiHook
from airflow_provider_meti.operators.meti import (
    MetiDeleteSourceOperator,
    MetiGetSourceOperator,
    MetiOperator,
)

log = logging.getLogger("airflow.task")

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
}
METHODOLOGY = "grazing-management"


def pasture(alt_id: str, west: float, south: float) -> dict[str, Any]:
    """A rectangular pasture of about 700 m x 550 m, for the 2025 grazing season."""
    east, north = west + 0.0075, south + 0.005
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "type": "Feature",
        "id": alt_id,
        "properties": {
            "start_at": "2025-04-01T00:00:00Z",
            "end_at": "2025-10-31T00:00:00Z",
        },
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


@task
def create_pastures(meti_conn_id: str, run_id: str, **context: Any) -> list[dict[str, str]]:
    """Register two pastures; their ``alt_id`` carries the run, so runs never collide.

    A retry first looks up what an earlier try stored (by ``alt_id``), so nothing is
    registered twice; the first try skips that lookup.
    """
    suffix = f"{zlib.crc32(run_id.encode()):08X}"  # the same in every try of this run
    pastures = {
        "type": "FeatureCollection",
        "features": [
            pasture(f"PASTURE-N-{suffix}", -101.845, 35.212),
            pasture(f"PASTURE-S-{suffix}", -101.845, 35.200),
        ],
    }
    retrying = context["ti"].try_number > 1
    hook = MetiHook(meti_conn_id)
    # API v2 stores descriptive fields; v1 has none.
    fields = {"methodology": METHODOLOGY} if hook.get_conn().api.takes_source_fields else None
    created = hook.create_sources(pastures, skip_existing=retrying, source_fields=fields)
    log.info("Created %s", created)
    return created


@task
def read_back(created: list[dict[str, str]], meti_conn_id: str) -> dict[str, float]:
    """Each source's area in hectares, as METI computed it."""
    hook = MetiHook(meti_conn_id)
    areas = {}
    for item in created:
        source = hook.get_source(item["id"])
        areas[item["alt_id"]] = float(source.get("hectares") or 0.0)
        log.info("%s is %s: %.1f ha", item["alt_id"], source["id"], areas[item["alt_id"]])
    return areas


@task
def list_pastures(created: list[dict[str, str]], meti_conn_id: str) -> int:
    """List sources by methodology (v2; every source on v1, which has no methodology); both
    new pastures must be among them."""
    hook = MetiHook(meti_conn_id)
    by_methodology = hook.get_conn().api.takes_source_fields
    filters = {"methodology": METHODOLOGY} if by_methodology else {}
    listed = {source["id"] for source in hook.iter_sources(**filters)}
    missing = [item["alt_id"] for item in created if item["id"] not in listed]
    if missing:
        raise ValueError(f"Listing with {filters or 'no filter'} did not return {missing}")
    log.info("%d sources use %s", len(listed), METHODOLOGY)
    return len(listed)


@task
def delete_pastures(created: list[dict[str, str]], meti_conn_id: str) -> int:
    """Delete what ``create_pastures`` made; a source already gone is fine."""
    hook = MetiHook(meti_conn_id)
    for item in created:
        hook.delete_source(item["id"], missing_ok=True)
    return len(created)


@dag(
    dag_id="meti_taskflow",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    params={
        "meti_conn_id": Param("meti_default", type="string", description="METI connection id"),
    },
    tags=["meti", "example"],
)
def meti_taskflow() -> None:
    conn_id = "{{ params.meti_conn_id }}"
    north_pasture_id = "{{ ti.xcom_pull(task_ids='create_pastures')[0]['id'] }}"
    created = create_pastures(conn_id, run_id="{{ run_id }}")

    # [START howto_operator_meti_get_source]
    get_north = MetiGetSourceOperator(
        task_id="get_north_pasture",
        meti_conn_id=conn_id,
        source_id=north_pasture_id,
    )
    # [END howto_operator_meti_get_source]
    # [START howto_operator_meti]
    list_ids = MetiOperator(
        task_id="list_pasture_ids",
        meti_conn_id=conn_id,
        endpoint="/sources",
        request_params={"methodology": METHODOLOGY, "limit": 10},
        response_filter=lambda sources: [source["id"] for source in sources],
    )
    # [END howto_operator_meti]
    # [START howto_operator_meti_delete_source]
    delete_north = MetiDeleteSourceOperator(
        task_id="delete_north_pasture",
        meti_conn_id=conn_id,
        source_id=north_pasture_id,
    )
    # [END howto_operator_meti_delete_source]

    checks = [read_back(created, conn_id), list_pastures(created, conn_id), get_north, list_ids]
    created >> [get_north, list_ids]
    checks >> delete_north >> delete_pastures(created, conn_id).as_teardown(setups=created)


meti_taskflow()
