"""
### React to what changes in METI: review new conflicts, extract new and withdrawn sources

The DAG has no time schedule. It runs when the `meti://` asset of the account's sources
changes: a `MetiSourcesChangedTrigger` watcher lists the sources every `METI_WATCH_INTERVAL`
seconds (default 300) in the triggerer and fires one asset event per poll that found sources
added, withdrawn, newly in conflict or out of conflict. Polls that find nothing new start
nothing; the watcher's first poll only records what is there.

1. **read_changes** merges the payloads of the asset events that started the run
   (`triggering_asset_events`): the ids added, removed, newly in conflict and out of conflict.
2. **review_conflict** asks a person about each source whose conflict was raised (both sources
   of each new pair), as in `meti_conflict_review`: *Withdraw ours* runs **withdraw_ours**,
   *Keep both and wait* runs **wait_for_resolution**.
3. **extract_changes** runs when sources were added or removed: it writes the added sources
   and a tombstone per removed id to `{METI_EXTRACT_DIR}/meti_changes_{run}.ndjson`, written
   to a temporary name and renamed into place, and returns its path and counts.

Needs Airflow 3.1 or newer (asset watchers and human-in-the-loop operators); on older lines
this file defines no DAG and logs why. From Airflow 3.3 the watcher's snapshot survives
triggerer restarts; before, a restarted triggerer takes a new baseline.

**Environment (read when the file is parsed):** `METI_BASE_URL` (names the asset; default
METI's public API), `METI_WATCH_INTERVAL` (seconds between polls), `METI_EXTRACT_DIR`.
**Params:** `meti_conn_id` (the connection the tasks use; the watcher uses `meti_default`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

try:
    from airflow.sdk import Asset, AssetWatcher, Param, dag, task
except ImportError:  # Airflow 2.11: no asset watchers
    from airflow.decorators import dag, task
    from airflow.models.param import Param

    Asset = AssetWatcher = None

from airflow_provider_meti.assets import meti_sources_uri
from airflow_provider_meti.exceptions import MetiNotFoundError
from airflow_provider_meti.hooks.meti import MetiHook
from airflow_provider_meti.operators.conflict_review import (
    HITL_AVAILABLE,
    HITL_UNAVAILABLE_REASON,
    MetiConflictReviewOperator,
)
from airflow_provider_meti.operators.meti import MetiDeleteSourceOperator
from airflow_provider_meti.sensors.meti import MetiSourceSensor
from airflow_provider_meti.triggers.snapshots import KINDS
from airflow_provider_meti.triggers.sources_changed import (
    WATCHERS_AVAILABLE,
    MetiSourcesChangedTrigger,
)

log = logging.getLogger(__name__)

BASE_URL = os.environ.get("METI_BASE_URL", "https://api.meti.millpont.com")
WATCH_INTERVAL = float(os.environ.get("METI_WATCH_INTERVAL", "300"))
EXTRACT_DIR = os.environ.get("METI_EXTRACT_DIR", "/tmp/meti_extracts")
# More added sources than this are read in one listing rather than one GET each.
MOST_SINGLE_READS = 100
ONE_WEEK = timedelta(days=7)

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
}


def merged_changes(triggering_asset_events: Any) -> dict[str, list[str]]:
    """The ids of each kind of change over every watcher event that started the run."""
    found: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for events in triggering_asset_events.values():
        for event in events:
            payload = (event.extra or {}).get("payload") or {}
            for kind in KINDS:
                found[kind].update(payload.get(kind, []))
    return {kind: sorted(ids) for kind, ids in found.items()}


@task
def read_changes(**context: Any) -> dict[str, list[str]]:
    """What changed, from the asset events that started this run."""
    changes = merged_changes(context["triggering_asset_events"])
    log.info("METI changes: %s", {kind: len(ids) for kind, ids in changes.items()})
    return changes


@task
def raised_conflicts(changes: dict[str, list[str]]) -> list[str]:
    """The sources to review: each one whose conflict was raised and that still exists."""
    return [sid for sid in changes["conflict_raised"] if sid not in changes["removed"]]


@task
def wait_arguments(source_ids: list[str]) -> list[dict[str, Any]]:
    return [{"source_id": source_id} for source_id in source_ids]


@task.short_circuit
def sources_added_or_removed(changes: dict[str, list[str]]) -> bool:
    return bool(changes["added"] or changes["removed"])


@task
def extract_changes(changes: dict[str, list[str]], meti_conn_id: str, **context: Any) -> dict:
    """Write the added sources and one tombstone per removed id, one JSON object a line."""
    hook = MetiHook(meti_conn_id)
    added = changes["added"]
    if len(added) <= MOST_SINGLE_READS:
        sources = []
        for source_id in added:
            try:
                sources.append(hook.get_source(source_id))
            except MetiNotFoundError:  # withdrawn since the poll: the next event says so
                continue
    else:
        wanted = set(added)
        sources = [s for s in hook.iter_sources(page_size=1000) if s.get("id") in wanted]
    folder = Path(EXTRACT_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    safe_run_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in context["run_id"])
    target = folder / f"meti_changes_{safe_run_id}.ndjson"
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as out:
        for source in sources:
            out.write(json.dumps({"change": "added", "source": source}) + "\n")
        for source_id in changes["removed"]:
            out.write(json.dumps({"change": "removed", "id": source_id}) + "\n")
    os.replace(out.name, target)
    return {"path": str(target), "added": len(sources), "removed": len(changes["removed"])}


def build() -> None:
    # [START howto_trigger_meti_sources_changed]
    sources = Asset(
        meti_sources_uri(BASE_URL),
        watchers=[
            AssetWatcher(
                name="meti_sources_changed",
                trigger=MetiSourcesChangedTrigger(
                    meti_conn_id="meti_default", poll_interval=WATCH_INTERVAL
                ),
            )
        ],
    )
    # [END howto_trigger_meti_sources_changed]

    @dag(
        dag_id="meti_on_conflict_change",
        schedule=[sources],
        start_date=datetime(2025, 1, 1),
        catchup=False,
        doc_md=__doc__,
        default_args=DEFAULT_ARGS,
        params={
            "meti_conn_id": Param("meti_default", type="string", description="METI connection id")
        },
        tags=["meti", "example"],
    )
    def meti_on_conflict_change() -> None:
        changes = read_changes()
        conflicts = raised_conflicts(changes)
        review = MetiConflictReviewOperator.partial(
            task_id="review_conflict",
            meti_conn_id="{{ params.meti_conn_id }}",
            withdraw_task_id="withdraw_ours",
            wait_task_id="wait_for_resolution",
            response_timeout=ONE_WEEK,
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
            deferrable=True,
            poke_interval=60,
            timeout=ONE_WEEK.total_seconds(),
            map_index_template="{{ task.source_id }}",
        ).expand_kwargs(wait_arguments(conflicts))
        review >> [withdraw, wait]

        extract = extract_changes(changes, meti_conn_id="{{ params.meti_conn_id }}")
        sources_added_or_removed(changes) >> extract

    meti_on_conflict_change()


if not WATCHERS_AVAILABLE or AssetWatcher is None:
    log.warning("meti_on_conflict_change is not defined: this Airflow has no asset watchers.")
elif not HITL_AVAILABLE:
    log.warning("meti_on_conflict_change is not defined: %s.", HITL_UNAVAILABLE_REASON)
else:
    build()
