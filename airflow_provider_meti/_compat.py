"""The one module that knows where Airflow 2.11 and Airflow 3.0 to 3.3 keep things.

Everything else in the provider (and its example DAGs) imports Airflow names from here, so
supporting another Airflow line means changing this file only.

Each name is looked up where the newest Airflow keeps it first, then where older lines kept
it: Airflow 3.0 still has hooks, exceptions and the secret masker in its core package, and
3.1 and 3.2 sit between, so a lookup by place is sturdier than one by version number. Type
checking sees the newest Airflow's names only.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from airflow import __version__ as AIRFLOW_VERSION
from airflow.triggers.base import BaseTrigger, TriggerEvent


def _version_tuple(version: str) -> tuple[int, int]:
    major, minor = (re.match(r"\d+", part) for part in version.split(".")[:2])
    return int(major.group()) if major else 0, int(minor.group()) if minor else 0


T = TypeVar("T")
AIRFLOW_VERSION_TUPLE = _version_tuple(AIRFLOW_VERSION)
AIRFLOW_V_3 = AIRFLOW_VERSION_TUPLE >= (3, 0)
# Airflow 3.2 builds the connection form's extra fields from ``conn-fields`` in the provider
# info; older lines build them from the hook's ``get_connection_form_widgets``.
AIRFLOW_READS_CONN_FIELDS = AIRFLOW_VERSION_TUPLE >= (3, 2)
ASSET_NAME = "Asset" if AIRFLOW_V_3 else "Dataset"


def import_first(name: str, *modules: str) -> Any:
    """``name`` from the first of ``modules`` that has it (newest place first)."""
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"None of {', '.join(modules)} has {name} (Airflow {AIRFLOW_VERSION}).")


if TYPE_CHECKING:
    from airflow.sdk import (
        DAG,
        Asset,
        BaseHook,
        BaseOperator,
        BaseSensorOperator,
        Connection,
        Context,
        ObjectStoragePath,
        Param,
        PokeReturnValue,
        dag,
        task,
    )
    from airflow.sdk.configuration import conf
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
    from airflow.sdk.log import mask_secret
else:
    _SDK = "airflow.sdk"
    _SDK_EXCEPTIONS = ("airflow.sdk.exceptions", "airflow.exceptions")

    BaseHook = import_first("BaseHook", _SDK, "airflow.hooks.base")
    BaseOperator = import_first("BaseOperator", _SDK, "airflow.models.baseoperator")
    BaseSensorOperator = import_first("BaseSensorOperator", _SDK, "airflow.sensors.base")
    PokeReturnValue = import_first("PokeReturnValue", _SDK, "airflow.sensors.base")
    Connection = import_first("Connection", _SDK, "airflow.models.connection")
    Context = import_first("Context", _SDK, "airflow.utils.context")
    ObjectStoragePath = import_first("ObjectStoragePath", _SDK, "airflow.io.path")
    DAG = import_first("DAG", _SDK, "airflow.models.dag")
    Param = import_first("Param", _SDK, "airflow.models.param")
    dag = import_first("dag", _SDK, "airflow.decorators")
    # ``task`` is looked up on first use, by ``__getattr__`` below.
    Asset = import_first(ASSET_NAME, _SDK, "airflow.datasets")
    conf = import_first("conf", "airflow.sdk.configuration", "airflow.configuration")

    AirflowException = import_first("AirflowException", *_SDK_EXCEPTIONS)
    AirflowRescheduleException = import_first("AirflowRescheduleException", *_SDK_EXCEPTIONS)
    AirflowSensorTimeout = import_first("AirflowSensorTimeout", *_SDK_EXCEPTIONS)
    AirflowSkipException = import_first("AirflowSkipException", *_SDK_EXCEPTIONS)
    TaskDeferred = import_first("TaskDeferred", *_SDK_EXCEPTIONS)

    mask_secret = import_first(
        "mask_secret",
        "airflow.sdk.log",
        "airflow.sdk.execution_time.secrets_masker",
        "airflow.utils.log.secrets_masker",
    )


def __getattr__(name: str) -> Any:
    # ``task`` loads the standard provider's Python operators (~12 ms); the provider's own
    # modules never use it, so only DAG files that import it pay for it, when they do.
    if name == "task":
        value = import_first("task", "airflow.sdk", "airflow.decorators")
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def asset(uri: str) -> Asset:
    """An ``Asset`` for ``uri`` (a ``Dataset`` on Airflow 2.11)."""
    return Asset(uri)


async def aget_connection(conn_id: str) -> Connection:
    """Look a connection up from inside a trigger without blocking the event loop."""
    lookup = getattr(BaseHook, "aget_connection", None)
    if lookup is not None:  # Airflow 3.1 and newer
        connection: Connection = await lookup(conn_id)
        return connection
    from asgiref.sync import sync_to_async

    return await sync_to_async(BaseHook.get_connection)(conn_id)


async def to_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a blocking call from a trigger in a worker thread (``asyncio.to_thread``).

    On Airflow 3.0 through asgiref instead: what the call sends to the triggerer's supervisor
    (a connection lookup, a secret to mask) must reach the trigger's own event loop, and only
    asgiref's threads know which loop that is; from a plain thread the triggerer crashes.
    """
    if AIRFLOW_VERSION_TUPLE != (3, 0):
        return await asyncio.to_thread(func, *args, **kwargs)
    from asgiref.sync import sync_to_async

    return await sync_to_async(func, thread_sensitive=False)(*args, **kwargs)


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` setting."""
    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))


__all__ = [
    "AIRFLOW_READS_CONN_FIELDS",
    "AIRFLOW_VERSION",
    "AIRFLOW_VERSION_TUPLE",
    "AIRFLOW_V_3",
    "ASSET_NAME",
    "DAG",
    "AirflowException",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "Asset",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
    "BaseTrigger",
    "Connection",
    "Context",
    "ObjectStoragePath",
    "Param",
    "PokeReturnValue",
    "TaskDeferred",
    "TriggerEvent",
    "aget_connection",
    "asset",
    "dag",
    "default_deferrable",
    "import_first",
    "mask_secret",
    "task",
    "to_thread",
]
