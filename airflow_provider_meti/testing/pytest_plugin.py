"""The ``meti`` pytest plugin: test your METI DAGs against a local emulator, offline.

Registered through the ``pytest11`` entry point, so installing the provider is enough::

    def test_register_fields(meti_connection):
        dag_run = dag.test()  # AIRFLOW_CONN_METI_DEFAULT points at a fresh emulator
        assert dag_run.state == "success"
        assert len(meti_connection.emulator.sources()) == 12

Fixtures: ``meti_emulator`` (one emulator per test), ``meti_emulator_session`` (one for the
session) and ``meti_connection`` (``AIRFLOW_CONN_<ID>`` pointing at ``meti_emulator``).
Per-test settings come from the marker::

    @pytest.mark.meti(api_version=2, fault_rate=0.1, seed=1, conn_id="meti_prod")

Markers merge, the closest first: a test's ``meti(fault_rate=0.5)`` under a module's
``pytestmark = pytest.mark.meti(api_version=2, conn_id="meti_prod")`` runs on v2 with
``meti_prod`` and faults.

Loading the plugin imports neither Airflow nor the emulator: the fixtures import what they
need when a test asks for them. ``pytest -p no:meti`` switches the plugin off.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_meti.testing.connection import MetiTestConnection
    from airflow_provider_meti.testing.emulator import MetiTestEmulator
    from airflow_provider_meti.testing.options import MetiOptions

# Kept here, not imported from options.py, so that loading the plugin imports nothing.
_MARKER_LINE = (
    "meti(api_version=1, conn_id='meti_default', extra=None, documented_only=True, "
    "fault_rate=0.0, fault_kinds=None, seed=0, shared=False, sandbox=False, "
    "reply_shape='current', max_page_size=None, list_envelope=None, "
    "envelope_extras=('total', 'limit', 'offset'), echo_request_in_errors=False, "
    "token_reply_form=False): settings of the METI fixtures (meti_emulator, meti_connection) "
    "for one test, class or module; markers merge, the closest winning key by key"
)


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``meti`` marker, so that ``--strict-markers`` accepts it."""
    config.addinivalue_line("markers", _MARKER_LINE)


def _options(request: pytest.FixtureRequest, param: object = None) -> MetiOptions:
    from airflow_provider_meti.testing.options import merged_marker_kwargs, options_for

    markers = list(request.node.iter_markers("meti"))  # the closest first
    if any(marker.args for marker in markers):
        pytest.fail("@pytest.mark.meti takes keyword arguments only", pytrace=False)
    try:
        return options_for(merged_marker_kwargs([marker.kwargs for marker in markers]), param)
    except ValueError as error:
        problem = str(error)
    pytest.fail(problem, pytrace=False)


def _apply_modes(emulator: MetiTestEmulator, options: MetiOptions) -> None:
    emulator.sandbox = options.sandbox
    emulator.set_modes(**options.modes())
    emulator.emulator.list_envelope = options.list_envelope


def _apply_faults(emulator: MetiTestEmulator, options: MetiOptions) -> None:
    if options.fault_rate <= 0:
        return
    if options.fault_kinds is None:
        emulator.set_faults(options.fault_rate, seed=options.seed)
    else:
        emulator.set_faults(options.fault_rate, options.fault_kinds, seed=options.seed)


@pytest.fixture(scope="session")
def meti_emulator_session() -> Iterator[MetiTestEmulator]:
    """One METI emulator for the whole test session, on a free port of 127.0.0.1.

    It does only what METI documents and keeps its state from test to test: call
    ``reset()`` for a clean slate (no sources, tokens, counters or faults). Tests marked
    ``@pytest.mark.meti(shared=True)`` get it as ``meti_emulator`` (and ``meti_connection``
    points at it), reset before the test. Example::

        @pytest.fixture(scope="module")
        def fields(meti_emulator_session):
            meti_emulator_session.reset()
            meti_emulator_session.seed_sources(10_000, project_id="p1")
            return meti_emulator_session

    Returns a ``MetiTestEmulator`` (``airflow_provider_meti.testing``).
    """
    from airflow_provider_meti.testing.emulator import serve

    with serve(documented_only=True) as emulator:
        yield emulator


@pytest.fixture
def meti_emulator(request: pytest.FixtureRequest) -> Iterator[MetiTestEmulator]:
    """A METI API emulator (v1 and v2) on a free port of 127.0.0.1, stopped after the test.

    By default it does only what METI documents (it ignores the listing filters METI does
    not promise) and never fails. ``@pytest.mark.meti(...)`` sets ``documented_only``,
    ``fault_rate``, ``fault_kinds``, ``seed``, ``shared`` (use the session-wide
    emulator, reset first), ``sandbox`` (the helpers below use the sandbox's store) and the
    answering modes ``reply_shape``, ``max_page_size``, ``list_envelope``,
    ``envelope_extras``, ``echo_request_in_errors``, ``token_reply_form``. Returns a
    ``MetiTestEmulator``: ``url``, ``token_url``, ``set_modes(...)``,
    ``set_faults(rate, kinds, seed=, ...)``, ``clear_faults()``, ``expire_all_tokens()``,
    ``stats()``, ``faults_injected()``, ``create_sources(fc)``, ``seed_sources(n)``,
    ``sources()``, ``source(id)``, ``delete_source(id)``, ``reset()``, ``ledger``.
    Example::

        @pytest.mark.meti(fault_rate=0.2, fault_kinds=["503", "drop"], seed=1)
        def test_extract_survives_faults(meti_emulator, meti_connection):
            meti_emulator.seed_sources(500)
            ...  # run the DAG
            assert meti_emulator.faults_injected() > 0
    """
    from airflow_provider_meti.testing.options import MetiOptions

    options = _options(request)
    if options.shared:
        emulator: MetiTestEmulator = request.getfixturevalue("meti_emulator_session")
        emulator.reset()
        emulator.documented_only = options.documented_only
        _apply_modes(emulator, options)
        _apply_faults(emulator, options)
        try:
            yield emulator
        finally:
            emulator.clear_faults()
            _apply_modes(emulator, MetiOptions())  # the next test starts from the defaults
            emulator.documented_only = True
        return

    from airflow_provider_meti.testing.emulator import serve

    with serve(documented_only=options.documented_only, seed=options.seed) as emulator:
        _apply_modes(emulator, options)
        _apply_faults(emulator, options)
        yield emulator


@pytest.fixture
def meti_connection(
    request: pytest.FixtureRequest,
    meti_emulator: MetiTestEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> MetiTestConnection:
    """An Airflow connection to ``meti_emulator``, as ``AIRFLOW_CONN_<ID>`` (JSON form).

    ``meti_default`` and API v1 (the emulator's demo user) unless the test says otherwise;
    v2 uses the demo OAuth2 client and the emulator's ``token_url``. The variable is
    removed after the test. Its token cache (extra ``token_cache_dir``) is a temporary
    folder of the test's own. Choose with the marker, ``@pytest.mark.meti(api_version=2,
    conn_id="meti_prod", extra={"max_retries": 8})``, or per case with an indirect param
    (a dict of ``api_version``, ``conn_id``, ``extra``, ``sandbox``, or just the API
    version). ``sandbox=True`` adds the extra ``sandbox: true``, so the provider sends every
    source request under ``/sandbox``::

        @pytest.mark.parametrize("meti_connection", [1, 2], indirect=True)
        def test_register_fields(meti_connection):
            dag_run = dag.test()
            assert dag_run.state == "success"
            assert len(meti_connection.emulator.sources()) == 3

    Returns a ``MetiTestConnection``: ``conn_id``, ``env_var``, ``api_version``,
    ``emulator`` and ``spec`` (the connection as a dict).
    """
    from airflow_provider_meti.testing.connection import (
        MetiTestConnection,
        connection_spec,
        env_var_name,
    )

    options = _options(request, getattr(request, "param", None))
    extra = {"sandbox": True, **options.extra} if options.sandbox else dict(options.extra)
    # A token cache of the test's own: no token outlives the test or reaches ~/.cache.
    extra.setdefault("token_cache_dir", str(tmp_path_factory.mktemp("meti-token-cache")))
    meti_emulator.sandbox = options.sandbox
    spec = connection_spec(meti_emulator, options.api_version, extra)
    env_var = env_var_name(options.conn_id)
    monkeypatch.setenv(env_var, json.dumps(spec))
    return MetiTestConnection(
        conn_id=options.conn_id,
        env_var=env_var,
        api_version=options.api_version,
        emulator=meti_emulator,
        spec=spec,
    )
