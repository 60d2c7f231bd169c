"""Airflow set up the way a task process sees it: connections from ``AIRFLOW_CONN_*``."""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks.emulator_process import EMAIL, PASSWORD

ROOT = Path(__file__).resolve().parent.parent


def child_environment() -> dict[str, str]:
    """The environment for benchmark subprocesses (same Airflow home, repo importable)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def define_meti_connection(base_url: str, **extra: Any) -> str:
    """A new METI connection (``AIRFLOW_CONN_*``) with its own id, hence its own client.

    The hook shares one client per connection configuration in a process; a fresh id makes
    a run start as a new task would, without a token or an open connection.
    """
    conn_id = f"meti_bench_{uuid.uuid4().hex[:12]}"
    spec = {"conn_type": "meti", "host": base_url, "login": EMAIL, "password": PASSWORD}
    if extra:
        spec["extra"] = extra
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(spec)
    return conn_id


def define_http_connection(base_url: str) -> str:
    """An ``http`` connection for the HttpHook baseline."""
    conn_id = "meti_http_peer"
    spec = {"conn_type": "http", "host": base_url}
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(spec)
    return conn_id


def task_context() -> dict[str, Any]:
    """The little of a task context the METI operators read (first try)."""
    from airflow.sdk.bases.operator import ExecutorSafeguard

    # execute() is called directly, as tests do; without this Airflow warns on every call.
    ExecutorSafeguard.test_mode = True
    return {"ti": SimpleNamespace(try_number=1), "params": {}}


def quiet_task_logs() -> None:
    """Send the log output of standard ``logging`` (e.g. retry warnings) to ``os.devnull``.

    Log lines are still formatted (a real task pays for that too) but do not clutter the
    benchmark's output.
    """
    import airflow.sdk  # noqa: F401  (configures logging)

    devnull = open(os.devnull, "w")  # noqa: SIM115  (for the life of the process)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(devnull)
