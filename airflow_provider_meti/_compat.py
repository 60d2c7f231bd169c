"""The one module that knows where Airflow 2.11 and Airflow 3.0 to 3.3 keep things.

The provider's modules import Airflow names from here, so supporting another Airflow line
means changing this file only. (Example DAGs import from ``airflow.sdk``, as users should.)

Each name is looked up where the newest Airflow keeps it first, then where older lines kept
it: Airflow 3.0 still has hooks, exceptions and the secret masker in its core package, and
3.1 and 3.2 sit between, so a lookup by place is sturdier than one by version number. Type
checking sees the newest Airflow's names only.

Why not ``airflow.providers.common.compat.sdk``, which the apache providers use for the
same lookups: its ``sdk`` module arrived in recent common-compat releases, so depending on it
would make users of Airflow 2.11 and 3.0 upgrade a provider that their deployment's
constraints pin, for about twenty names; and half of this module is what common-compat does
not offer (``to_thread`` through asgiref on 3.0, ``aget_connection`` before 3.1,
``default_deferrable``). The lookups here run on every supported line in CI. Lineage, where
common-compat is the only public way in, is imported from it where it is installed.
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
    from airflow.providers.standard.operators.hitl import HITLBranchOperator
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
    from airflow.sdk.definitions.retry_policy import RetryAction, RetryDecision, RetryPolicy
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
    from airflow.sdk.log import mask_secret

    HITL_AVAILABLE: bool
    RETRY_POLICY_AVAILABLE: bool
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

    AirflowFailException = import_first("AirflowFailException", *_SDK_EXCEPTIONS)

    # Retry policies (AIP-105) came with Airflow 3.3; before, there is nothing to subclass
    # and BaseOperator takes no ``retry_policy``.
    try:
        from airflow.sdk.definitions.retry_policy import RetryAction, RetryDecision, RetryPolicy
    except ImportError:
        RetryAction = RetryDecision = RetryPolicy = None
    RETRY_POLICY_AVAILABLE = RetryPolicy is not None


def __getattr__(name: str) -> Any:
    # ``task`` loads the standard provider's Python operators (~12 ms); the provider's own
    # modules never use it, so only DAG files that import it pay for it, when they do.
    if name == "task":
        value = import_first("task", "airflow.sdk", "airflow.decorators")
        globals()[name] = value
        return value
    if name in ("HITLBranchOperator", "HITL_AVAILABLE"):
        # Loaded on first use too: only DAGs with a conflict review need the HITL operators.
        branch_operator, available = _load_hitl_branch_operator()
        globals().update(HITLBranchOperator=branch_operator, HITL_AVAILABLE=available)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _load_hitl_branch_operator() -> tuple[type[Any], bool]:
    """Airflow's ``HITLBranchOperator`` and True, or a stand-in that refuses to run and False.

    Human-in-the-loop operators came with Airflow 3.1. On older lines the standard provider's
    ``hitl`` module is missing or refuses to import, with an exception class that differs
    between lines; hence the broad ``except``.
    """
    try:
        from airflow.providers.standard.operators.hitl import HITLBranchOperator
    except Exception:
        pass
    else:
        return HITLBranchOperator, True

    class HITLUnavailable(BaseOperator):
        """Stands in where Airflow has no human-in-the-loop operators (before 3.1)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise AirflowException(
                f"{type(self).__name__} needs Airflow 3.1 or newer (human-in-the-loop "
                f"operators); this is Airflow {AIRFLOW_VERSION}."
            )

    return HITLUnavailable, False


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


async def amask_secret(secret: str) -> None:
    """Register ``secret`` with Airflow's secret masker from a coroutine, without blocking.

    Airflow 3.3's ``amask_secret`` tells the triggerer's supervisor asynchronously; older
    lines get the blocking ``mask_secret`` in a thread (once per token, not per check).
    """
    try:
        masker = import_first("amask_secret", "airflow.sdk.log")
    except ImportError:
        await to_thread(mask_secret, secret)
        return
    await masker(secret)


async def aconnection_extras(connection: Connection) -> dict[str, Any]:
    """A connection's extras (``extra_dejson``) read without blocking the event loop.

    Reading them registers sensitive extras with the masker, which on Airflow 3 talks to the
    supervisor: asynchronously with ``aextra_dejson`` (3.3), in a thread before that.
    """
    read = getattr(connection, "aextra_dejson", None)
    if read is not None:
        extras: dict[str, Any] = await read()
        return extras
    return await to_thread(lambda: dict(connection.extra_dejson))


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` setting."""
    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))


__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_VERSION_TUPLE",
    "AIRFLOW_V_3",
    "ASSET_NAME",
    "DAG",
    "HITL_AVAILABLE",
    "RETRY_POLICY_AVAILABLE",
    "AirflowException",
    "AirflowFailException",
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
    "HITLBranchOperator",
    "ObjectStoragePath",
    "Param",
    "PokeReturnValue",
    "RetryAction",
    "RetryDecision",
    "RetryPolicy",
    "TaskDeferred",
    "TriggerEvent",
    "aconnection_extras",
    "aget_connection",
    "amask_secret",
    "asset",
    "dag",
    "default_deferrable",
    "import_first",
    "mask_secret",
    "task",
    "to_thread",
]
