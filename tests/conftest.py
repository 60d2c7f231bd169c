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
from tests.airflow_context import make_context
from tests.api_versions import API_VERSION_IDS, API_VERSIONS, connection_fields


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


@pytest.fixture(params=API_VERSIONS, ids=API_VERSION_IDS)
def meti_api_version(request) -> int:
    """The METI API generation ``meti_connection`` speaks: each test runs with 1 and 2.

    Restrict a test to one with ``tests.api_versions.v1_only`` (or ``v2_only``).
    """
    return int(request.param)


@pytest.fixture
def meti_connection(emulator, meti_api_version, monkeypatch) -> Callable[..., dict[str, Any]]:
    """``AIRFLOW_CONN_METI_DEFAULT`` pointing at the emulator, in JSON form.

    v1: the demo user's email and password; v2: the demo OAuth2 client with ``api_version``
    2 and the emulator's ``token_url``. Returns a function that (re)defines a connection:
    ``meti_connection(password="x")``, ``meti_connection("other_id", extra={"max_retries":
    0})``; a given ``extra`` is merged into the version's extras. Clients shared by earlier
    tests are forgotten, so every test starts without a token.
    """
    from airflow_provider_meti.hooks import meti as meti_hooks

    monkeypatch.setattr(meti_hooks, "_clients", {})
    defaults = connection_fields(emulator, meti_api_version)

    def connect(conn_id: str = "meti_default", **fields: Any) -> dict[str, Any]:
        extra = {**defaults["extra"], **fields.pop("extra", {})}
        spec = {"conn_type": "meti", "host": emulator.url, **defaults, **fields}
        if extra:
            spec["extra"] = extra
        else:
            spec.pop("extra")
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(spec))
        return spec

    connect()
    return connect


@pytest.fixture
def task_context(monkeypatch) -> dict[str, Any]:
    """A context for calling ``execute()`` directly, as the task runner would (try 1)."""
    from tests.airflow_compat import executor_safeguard

    # Lets tests call execute() without the "outside of the Task Runner" warning.
    monkeypatch.setattr(executor_safeguard(), "test_mode", True)
    return make_context()
