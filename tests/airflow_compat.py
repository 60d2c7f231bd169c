"""What the tests need of Airflow that lives in different places on 2.11, 3.0 and 3.3.

The provider's own names come from ``airflow_provider_meti._compat``; this module adds what
only tests use (metadata-database models, the secret masker's ``redact``, test switches).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_meti._compat import (
    AIRFLOW_V_3,
    AIRFLOW_VERSION,
    AIRFLOW_VERSION_TUPLE,
    import_first,
)

# Airflow 3.2 builds the connection form's extra fields from ``conn-fields`` in the provider
# info; older lines build them from the hook's ``get_connection_form_widgets``.
AIRFLOW_READS_CONN_FIELDS = AIRFLOW_VERSION_TUPLE >= (3, 2)

# Reschedule mode itself works on 2.11; these tests cannot drive it there without a scheduler.
reschedule_with_stand_in_ti = pytest.mark.skipif(
    not AIRFLOW_V_3,
    reason=(
        f"Airflow {AIRFLOW_VERSION}'s reschedule mode reads the first try's start from the "
        "metadata database, not from the stand-in task instance these tests pass (3.x reads it)"
    ),
)


# Before 3.2, Airflow builds a connection form's custom fields from wtforms widgets, which
# on 3.x need the FAB provider (flask_appbuilder); without it every form shows plain fields.
connection_form_needs_fab = pytest.mark.skipif(
    AIRFLOW_V_3
    and not AIRFLOW_READS_CONN_FIELDS
    and importlib.util.find_spec("flask_appbuilder") is None,
    reason=(
        f"Airflow {AIRFLOW_VERSION} shows custom connection form fields only with the FAB "
        "provider installed (3.2 and newer read conn-fields)"
    ),
)


def executor_safeguard() -> Any:
    """The class whose ``test_mode`` lets tests call ``execute()`` outside a task runner."""
    return import_first(
        "ExecutorSafeguard", "airflow.sdk.bases.operator", "airflow.models.baseoperator"
    )


def redact(value: Any) -> Any:
    """``value`` as Airflow's secret masker would log it."""
    return import_first(
        "redact",
        "airflow.sdk._shared.secrets_masker",
        "airflow.sdk.execution_time.secrets_masker",
        "airflow.utils.log.secrets_masker",
    )(value)


def filesystem_registry() -> Any:
    """The module holding Airflow's object storage schemes (``_BUILTIN_SCHEME_TO_FS``)."""
    for name in ("airflow.sdk.io.fs", "airflow.io"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "_BUILTIN_SCHEME_TO_FS"):
            return module
    raise ImportError(f"No object storage registry in Airflow {AIRFLOW_VERSION}")


def dag_bag(dag_folder: str) -> Any:
    """A ``DagBag`` of ``dag_folder``."""
    dag_bag_class = import_first("DagBag", "airflow.dag_processing.dagbag", "airflow.models.dagbag")
    # Airflow 3.3's DagBag has no include_examples (it never loads the examples itself).
    if "include_examples" not in inspect.signature(dag_bag_class).parameters:
        return dag_bag_class(dag_folder=dag_folder)
    return dag_bag_class(dag_folder=dag_folder, include_examples=False)


def utcnow() -> Any:
    return import_first("utcnow", "airflow.sdk.timezone", "airflow.utils.timezone")()


def run_dag_test(dag: Any, *, logical_date: Any = None, **kwargs: Any) -> Any:
    """``dag.test()``; Airflow 2.11 calls the logical date ``execution_date``."""
    if logical_date is not None:
        kwargs["logical_date" if AIRFLOW_V_3 else "execution_date"] = logical_date
    if AIRFLOW_VERSION_TUPLE < (3, 1):
        _sync_to_db(dag)
    return dag.test(**kwargs)


def _sync_to_db(dag: Any) -> None:
    """Store the DAG and its assets as the DAG processor would.

    ``dag.test()`` does so itself from Airflow 3.1 on. Before, an asset outlet fails the task
    on 3.0 (an inactive asset) and records no event on 2.11 (an unknown dataset).
    """
    if not AIRFLOW_V_3:
        dag_bag(dag.fileloc).sync_to_db()
        return
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    dag_bag(dag.fileloc).sync_to_db(bundle_name="dags-folder", bundle_version=None)


def xcom_return_value(dag_run: Any, task_id: str, map_index: int = -1) -> Any:
    """The return value a task of ``dag_run`` pushed, read from the metadata database."""
    from airflow.utils.session import create_session

    xcom = import_first("XComModel", "airflow.models.xcom") if AIRFLOW_V_3 else None
    xcom = xcom or import_first("XCom", "airflow.models.xcom")
    with create_session() as session:
        # Up to 3.0 get_many takes the session; 3.3 only builds a select() statement.
        takes_session = "session" in inspect.signature(xcom.get_many).parameters
        query = xcom.get_many(
            run_id=dag_run.run_id,
            dag_ids=dag_run.dag_id,
            task_ids=task_id,
            map_indexes=map_index,
            key="return_value",
            **({"session": session} if takes_session else {}),
        )
        # A legacy Query up to 3.0, a select() statement since.
        row = query.first() if hasattr(query, "first") else session.scalars(query).first()
        assert row is not None, f"no XCom from {task_id}[{map_index}]"
        # Airflow 2.11 deserializes the value as the row loads.
        return xcom.deserialize_value(row) if AIRFLOW_V_3 else row.value


def stored_xcoms(session: Any, run_ids: list[str]) -> Iterator[tuple[Any, Any]]:
    """``(row, value)`` of every XCom the DAG runs ``run_ids`` stored."""
    from sqlalchemy import select

    if AIRFLOW_V_3:
        model = import_first("XComModel", "airflow.models.xcom")
        for row in session.scalars(select(model).where(model.run_id.in_(run_ids))):
            yield row, model.deserialize_value(row)
        return
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XCom

    query = select(XCom).join(DagRun, XCom.dag_run_id == DagRun.id)
    for row in session.scalars(query.where(DagRun.run_id.in_(run_ids))):
        yield row, row.value


def without_mask_secret_echo(output: str) -> str:
    """``output`` less the debug lines in which Airflow 3.0's ``dag.test()`` echoes each
    request its tasks send to the in-process supervisor, secrets to mask included (newer
    Airflow omits their bodies)."""
    if AIRFLOW_VERSION_TUPLE != (3, 0):
        return output
    return "\n".join(line for line in output.splitlines() if "msg=MaskSecret(" not in line)


def asset_events(dag_run: Any) -> list[tuple[str, str]]:
    """``(asset uri, source task)`` of every asset (2.11: dataset) event the run emitted."""
    from airflow.utils.session import create_session
    from sqlalchemy import select

    if AIRFLOW_V_3:
        from airflow.models.asset import AssetEvent as Event
        from airflow.models.asset import AssetModel as Model

        event_key = Event.asset_id
    else:
        from airflow.models.dataset import DatasetEvent as Event
        from airflow.models.dataset import DatasetModel as Model

        event_key = Event.dataset_id
    query = (
        select(Model.uri, Event.source_task_id)
        .join(Event, event_key == Model.id)
        .where(Event.source_run_id == dag_run.run_id)
    )
    with create_session() as session:
        return [tuple(row) for row in session.execute(query)]
