"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports Airflow, so it reads this home's config instead of ~/airflow.
os.environ.setdefault(
    "AIRFLOW_HOME", str(Path(__file__).resolve().parent.parent / ".airflow" / "pytest-home")
)
# Under pytest-xdist each worker gets a home (and SQLite database) of its own: two processes
# migrating or writing one SQLite file lock each other out.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["AIRFLOW_HOME"] += "-" + os.environ["PYTEST_XDIST_WORKER"]

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_meti.emulator import MetiEmulator
from tests.airflow_context import make_context
from tests.api_versions import API_VERSION_IDS, API_VERSIONS, connection_fields


@pytest.fixture(autouse=True)
def private_token_cache(tmp_path_factory, monkeypatch) -> Path:
    """Each test's host token cache (``token_cache.default_directory()``) in a folder of its
    own: no test reads a token another test's emulator issued, and ~/.cache stays clean."""
    home = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "airflow-provider-meti"


@pytest.fixture
def emulator() -> Iterator[MetiEmulator]:
    """A METI emulator on a free port of 127.0.0.1 that does only what METI documents.

    Client, hook and operator tests run against it, so that they cannot rely on the
    emulator's extras. Stopped after the test.
    """
    with MetiEmulator(port=0, documented_only=True) as meti:
        yield meti


@pytest.fixture
def emulator_with_extras() -> Iterator[MetiEmulator]:
    """A METI emulator with its extras (listing filters beyond METI's docs) switched on."""
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


@pytest.fixture
def memory_storage(monkeypatch) -> Iterator[None]:
    """Registers fsspec's in-memory filesystem as Airflow object storage (``memory://``)."""
    from fsspec.implementations.memory import MemoryFileSystem

    _register_filesystem(monkeypatch, "memory", lambda conn_id, options=None: MemoryFileSystem())
    yield
    _forget_filesystems()
    MemoryFileSystem.store.clear()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """A real S3 protocol server (moto) on 127.0.0.1 for the session; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_storage(monkeypatch, moto_s3) -> Iterator[Any]:
    """``s3://`` object storage backed by the moto server through s3fs; yields the fs.

    Each test gets a fresh, empty bucket ``extracts``.
    """
    import s3fs

    def new_fs(conn_id=None, options=None):
        return s3fs.S3FileSystem(
            key="testing",
            secret="testing",
            endpoint_url=moto_s3,
            client_kwargs={"region_name": "eu-west-1"},
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    fs = new_fs()
    if fs.exists("extracts"):
        fs.rm("extracts", recursive=True)
    fs.mkdir("extracts")
    _register_filesystem(monkeypatch, "s3", new_fs)
    yield fs
    _forget_filesystems()


def _register_filesystem(monkeypatch, scheme: str, factory: Callable[..., Any]) -> None:
    """Make ``scheme://`` paths of Airflow's ObjectStoragePath use ``factory``'s filesystem."""
    from tests.airflow_compat import filesystem_registry

    monkeypatch.setitem(filesystem_registry()._BUILTIN_SCHEME_TO_FS, scheme, factory)
    # Stores are cached per scheme: a fresh cache for the test, the old one back after it.
    monkeypatch.setattr(_object_store_module(), "_STORE_CACHE", {})
    _forget_filesystems()


def _forget_filesystems() -> None:
    from tests.airflow_compat import filesystem_registry

    filesystem_registry()._register_filesystems.cache_clear()


def _object_store_module() -> Any:
    import importlib

    for name in ("airflow.sdk.io.store", "airflow.io.store"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("No object store module in this Airflow")
