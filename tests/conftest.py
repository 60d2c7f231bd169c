"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports Airflow, so it reads this home's config instead of ~/airflow.
os.environ.setdefault(
    "AIRFLOW_HOME", str(Path(__file__).resolve().parent.parent / ".airflow" / "pytest-home")
)

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_meti.emulator import MetiEmulator
from tests.airflow_context import METI_EMAIL, METI_PASSWORD, make_context


@pytest.fixture
def emulator() -> Iterator[MetiEmulator]:
    """A METI emulator serving on a free port of 127.0.0.1, stopped after the test."""
    with MetiEmulator(port=0) as meti:
        yield meti


@pytest.fixture
def prefixed_emulator() -> Iterator[MetiEmulator]:
    """Like ``emulator``, but serving the API under ``/meti/api`` as behind a gateway."""
    with MetiEmulator(port=0, base_path="/meti/api") as meti:
        yield meti


@pytest.fixture
def meti_connection(emulator, monkeypatch) -> Callable[..., dict[str, Any]]:
    """``AIRFLOW_CONN_METI_DEFAULT`` pointing at the emulator (demo user), in JSON form.

    Returns a function that (re)defines a connection: ``meti_connection(password="x")``,
    ``meti_connection("other_id", extra={"max_retries": 0})``. Clients shared by earlier
    tests are forgotten, so every test starts without a token.
    """
    from airflow_provider_meti.hooks import meti as meti_hooks

    monkeypatch.setattr(meti_hooks, "_clients", {})

    def connect(conn_id: str = "meti_default", **fields: Any) -> dict[str, Any]:
        spec = {
            "conn_type": "meti",
            "host": emulator.url,
            "login": METI_EMAIL,
            "password": METI_PASSWORD,
            **fields,
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(spec))
        return spec

    connect()
    return connect


@pytest.fixture
def task_context(monkeypatch) -> dict[str, Any]:
    """A context for calling ``execute()`` directly, as the task runner would (try 1)."""
    from airflow.sdk.bases.operator import ExecutorSafeguard

    # Lets tests call execute() without the "outside of the Task Runner" warning.
    monkeypatch.setattr(ExecutorSafeguard, "test_mode", True)
    return make_context()
