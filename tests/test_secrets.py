"""Secrets never leak, and credentials only travel where they should.

The example DAGs run with a distinctive password while tokens are revoked and requests fail;
then everything Airflow and the provider produced (task output and log files, trigger
output, XComs, rendered templates, trigger and task instance rows, the whole metadata
database file, exception texts, reprs) is searched for the password and every issued token.
Transport: plain http to another host is refused before any byte is sent, TLS is verified
by default (and against the ``verify`` CA bundle), and a redirect to another host does not
carry the Authorization header.
"""

from __future__ import annotations

import asyncio
import datetime
import http.server
import itertools
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_meti._compat import TaskDeferred
from airflow_provider_meti.aio.client import AsyncMetiClient
from airflow_provider_meti.auth import EmailPasswordAuth
from airflow_provider_meti.exceptions import MetiApiError, MetiAuthError, MetiConfigError
from airflow_provider_meti.hooks.meti import MetiHook
from airflow_provider_meti.operators.meti import (
    MetiCreateSourcesOperator,
    MetiGetSourceOperator,
    MetiListSourcesOperator,
)
from airflow_provider_meti.retries import RetryPolicy
from airflow_provider_meti.sensors.meti import MetiSourceSensor
from airflow_provider_meti.settings import ClientSettings
from airflow_provider_meti.triggers.meti import MetiSourceTrigger
from tests import airflow_compat
from tests.airflow_context import trigger_events
from tests.api_versions import add_credentials
from tests.features import collection, square_feature
from tests.test_example_dags import (  # noqa: F401 - fixtures, shared with the DAG tests
    airflow_db,
    dag_bag,
    example_dags_folder,
    run_dag,
    states,
)

LOGIN = "leak-test@example.com"
PASSWORD = "Zq9!distinctive-PASSWORD-7731"
WRONG_PASSWORD = PASSWORD + "-but-wrong"


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def issued_tokens(emulator, monkeypatch) -> list[str]:
    """Every token the emulator hands out from now on (read in-process, never over HTTP)."""
    tokens: list[str] = []
    issue = emulator.state.tokens.issue

    def recording_issue(*args: Any, **kwargs: Any) -> str:
        token = issue(*args, **kwargs)
        tokens.append(token)
        return token

    monkeypatch.setattr(emulator.state.tokens, "issue", recording_issue)
    return tokens


@pytest.fixture
def leak_test_connection(emulator, meti_api_version, meti_connection) -> dict[str, Any]:
    """``meti_default`` with the distinctive credentials, registered with the emulator."""
    add_credentials(emulator, meti_api_version, LOGIN, PASSWORD)
    return meti_connection(login=LOGIN, password=PASSWORD)


@pytest.fixture
def token_churn(emulator, monkeypatch) -> Iterator[None]:
    """Tokens revoked every 10th authenticated request, and one request in ten failing.

    Counted, not timed: a revocation on a clock could fall between a renewal and its replay
    on a loaded machine, which METI would not do to a token it has just issued.
    """
    emulator.set_faults(rate=0.1, kinds=["503", "429", "drop"], retry_after=0.05, seed=2)
    tokens = emulator.state.tokens
    account_of = tokens.account_of
    checked = itertools.count(1)

    def account_of_with_churn(token: str) -> str | None:
        if next(checked) % 10 == 0:
            tokens.expire_all()
        return account_of(token)

    monkeypatch.setattr(tokens, "account_of", account_of_with_churn)
    yield
    emulator.clear_faults()


@pytest.fixture
def built_triggers(monkeypatch) -> list[MetiSourceTrigger]:
    """Every MetiSourceTrigger built from now on, e.g. by dag.test() from serialized kwargs."""
    triggers: list[MetiSourceTrigger] = []
    init = MetiSourceTrigger.__init__

    def recording_init(self: MetiSourceTrigger, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        triggers.append(self)

    monkeypatch.setattr(MetiSourceTrigger, "__init__", recording_init)
    return triggers


def everything_printed(capfd: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> str:
    """What this test printed, wherever it went: Airflow's structlog loggers may keep writing
    to the stream that was sys.stdout when they were set up (pytest's own capture, when an
    earlier test ran a DAG), which ``capfd`` does not see."""
    printed = "".join(capfd.readouterr())
    capture_manager = request.config.pluginmanager.getplugin("capturemanager")
    if capture_manager is not None:
        printed += "".join(capture_manager.read_global_capture())
    return printed


def assert_no_secret(texts: dict[str, str], secrets: list[str]) -> None:
    """No ``secrets`` in any of ``texts`` (named by where they came from)."""
    leaks = [
        f"{where} contains secret #{index}"
        for where, text in texts.items()
        for index, secret in enumerate(secrets)
        if secret and secret in text
    ]
    assert leaks == []


# --- what Airflow stored -------------------------------------------------------------------


def database_texts(dag_runs: list[Any]) -> dict[str, str]:
    """XComs, rendered template fields and task instance rows of ``dag_runs``, and the raw
    bytes of the metadata database file."""
    from airflow.configuration import conf
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session
    from sqlalchemy import select

    texts: dict[str, str] = {}
    run_ids = [dag_run.run_id for dag_run in dag_runs]
    with create_session() as session:
        for row, value in airflow_compat.stored_xcoms(session, run_ids):
            where = f"XCom {row.task_id}[{row.map_index}].{row.key}"
            texts[where] = json.dumps(value, default=str)
        rendered = select(RenderedTaskInstanceFields).where(
            RenderedTaskInstanceFields.run_id.in_(run_ids)
        )
        for row in session.scalars(rendered):
            where = f"rendered fields of {row.task_id}[{row.map_index}]"
            texts[where] = json.dumps(row.rendered_fields, default=str)
    for dag_run in dag_runs:
        for ti in dag_run.get_task_instances():
            columns = {column.name: getattr(ti, column.name) for column in ti.__table__.columns}
            where = f"task instance {ti.task_id}[{ti.map_index}] of {dag_run.dag_id}"
            texts[where] = json.dumps(columns, default=str)
    url = conf.get("database", "sql_alchemy_conn")
    if url.startswith("sqlite:///"):
        database = Path(url.removeprefix("sqlite:///"))
        for path in (database, database.with_name(database.name + "-wal")):
            if path.exists():
                texts[f"database file {path.name}"] = path.read_bytes().decode("latin-1")
    return texts


def log_files_since(started: float) -> dict[str, str]:
    """Task log files Airflow wrote under its log folder since ``started``."""
    from airflow.configuration import conf

    folder = Path(conf.get("logging", "base_log_folder"))
    if not folder.exists():
        return {}
    return {
        f"log file {path}": path.read_text(errors="replace")
        for path in folder.rglob("*")
        if path.is_file() and path.stat().st_mtime >= started
    }


def token_cache_texts(folder: Path) -> dict[str, str]:
    """The names and the raw bytes (as Latin-1, so any byte sequence is searched) of the host
    token cache's files."""
    texts = {}
    for path in folder.rglob("*"):
        texts[f"token cache file name {path.name}"] = path.name
        if path.is_file():
            texts[f"token cache file {path.name}"] = path.read_bytes().decode("latin-1")
    return texts


def reprs(dag_bag_: Any, triggers: list[MetiSourceTrigger]) -> dict[str, str]:
    """repr() and serialize() of the operators, their hooks and clients, and the triggers."""
    texts = {}
    for dag in dag_bag_.dags.values():
        for task in dag.tasks:
            texts[f"repr of {dag.dag_id}.{task.task_id}"] = repr(task)
    hook = MetiHook()
    client = hook.get_conn()
    texts["repr of the hook"] = repr(hook)
    texts["repr of the client"] = repr(client)
    texts["repr of the token source"] = repr(client._token_source)
    texts["repr of the client settings"] = repr(client.settings)
    for index, trigger in enumerate(triggers):
        texts[f"repr of trigger {index}"] = repr(trigger)
        texts[f"serialized trigger {index}"] = json.dumps(trigger.serialize())
    return texts


# --- the example DAGs --------------------------------------------------------------------------


@pytest.mark.slow
def test_running_the_example_dags_leaks_neither_password_nor_tokens(
    leak_test_connection,
    run_dag,  # noqa: F811
    dag_bag,  # noqa: F811
    emulator,
    issued_tokens,
    built_triggers,
    token_churn,
    tmp_path,
    capfd,
    caplog,
    monkeypatch,
    request,
    private_token_cache,
):
    caplog.set_level(logging.DEBUG, logger="airflow_provider_meti")
    started = time.time()

    runs = [
        # Nobody resolves the conflict: the deferred sensors fail, with their messages.
        run_dag("meti_register_sources", run_conf={"poke_interval": 1, "sensor_timeout": 2}),
        run_dag("meti_daily_extract", run_conf={"output_dir": str(tmp_path)}),
        run_dag("meti_taskflow"),
    ]
    monkeypatch.setenv(
        "AIRFLOW_CONN_METI_DEFAULT",
        json.dumps({**leak_test_connection, "password": WRONG_PASSWORD}),
    )
    from airflow_provider_meti.hooks import meti as meti_hooks

    monkeypatch.setattr(meti_hooks, "_clients", {})
    runs.append(run_dag("meti_taskflow"))  # fails: the password is wrong

    output = everything_printed(capfd, request)
    texts = {
        "task and trigger output": airflow_compat.without_mask_secret_echo(output),
        "captured log records": "\n".join(record.getMessage() for record in caplog.records),
        **log_files_since(started),
        **token_cache_texts(private_token_cache),
        **database_texts(runs),
        **reprs(dag_bag, built_triggers),
    }
    # The runs did what leaks would come from: tokens, retries, triggers, failures.
    assert [run.state for run in runs] == ["failed", "success", "success", "failed"], [
        states(run) for run in runs
    ]
    assert len(issued_tokens) >= 3
    assert emulator.stats()["responses"].get("401", 0) >= 1
    assert len(built_triggers) >= 2
    assert any(name.startswith("token cache file ") for name in texts), "no token was cached"
    logged = output + texts["captured log records"]
    assert "was still not free of conflicts" in logged
    assert "authentication failed" in logged
    assert "retry 1 in" in logged
    assert_no_secret(texts, [PASSWORD, WRONG_PASSWORD, *issued_tokens])


# --- direct runs: trigger, sensor, operators, hook ---------------------------------------------


def test_triggers_sensors_and_errors_hold_no_secret(
    leak_test_connection,
    meti_connection,
    emulator,
    issued_tokens,
    token_churn,
    task_context,
    capfd,
    caplog,
    request,
):
    caplog.set_level(logging.DEBUG)
    (source_id,) = (s["id"] for s in emulator.ledger.create(collection(square_feature("A"))))
    texts: dict[str, str] = {}

    sensor = MetiSourceSensor(
        task_id="wait", source_id=source_id, wait_for="deleted", deferrable=True, timeout=1
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(task_context)
    trigger = deferred.value.trigger
    (event,) = trigger_events(trigger)  # times out after a second of polling
    texts["trigger event"] = json.dumps(event.payload)
    texts["trigger kwargs"] = json.dumps(trigger.serialize())
    texts["repr of trigger"] = repr(trigger)
    with pytest.raises(Exception) as timed_out:
        sensor.execute_complete(task_context, event.payload)
    texts["sensor timeout"] = str(timed_out.value)

    emulator.expire_all_tokens()  # the next call is refused, renews and replays
    created = MetiCreateSourcesOperator(
        task_id="create", feature_collection=collection(square_feature("B", x=3))
    ).execute(task_context)
    emulator.expire_all_tokens()
    listed = MetiListSourcesOperator(task_id="list").execute(task_context)
    got = MetiGetSourceOperator(task_id="get", source_id=source_id).execute(task_context)
    texts["operator results"] = json.dumps([created, listed, got])

    meti_connection(login=LOGIN, password=WRONG_PASSWORD)
    failures: list[BaseException] = []
    for run in (
        lambda: MetiListSourcesOperator(task_id="list").execute(task_context),
        lambda: MetiSourceSensor(task_id="s", source_id=source_id, timeout=5).execute(task_context),
    ):
        with pytest.raises(MetiAuthError) as failed:
            run()
        failures.append(failed.value)
    (error_event,) = trigger_events(MetiSourceTrigger("meti_default", source_id, "exists", 0.1))
    ok, message = MetiHook().test_connection()
    texts["exceptions"] = "\n".join(f"{error!s} {error!r}" for error in failures)
    texts["trigger error event"] = json.dumps(error_event.payload)
    texts["test_connection"] = message
    texts["output"] = everything_printed(capfd, request)
    texts["log records"] = "\n".join(record.getMessage() for record in caplog.records)

    assert event.payload["status"] == "timeout"
    assert error_event.payload["status"] == "error" and not ok
    assert len(issued_tokens) >= 3
    assert_no_secret(texts, [PASSWORD, WRONG_PASSWORD, *issued_tokens])


# --- plain http to another host ----------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch) -> list[Any]:
    """Records (and blocks) every attempt to open a connection or send a request."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", refuse)
    return attempts


def set_connection(monkeypatch, **fields: Any) -> None:
    from airflow_provider_meti.hooks import meti as meti_hooks

    monkeypatch.setattr(meti_hooks, "_clients", {})
    spec = {"conn_type": "meti", "login": LOGIN, "password": PASSWORD, **fields}
    monkeypatch.setenv("AIRFLOW_CONN_METI_DEFAULT", json.dumps(spec))


@pytest.mark.parametrize(
    ("host", "extra"),
    [
        ("http://api.meti.example.com", {}),
        ("http://10.0.0.8:8080/meti", {}),
        ("http://localhost.example.com", {}),
        ("http://127.0.0.1.nip.io", {}),
        ("http://127.0.0.1:8765", {"token_url": "http://auth.example.com/token"}),
        (
            "https://api.example.com",
            {"api_version": 2, "token_url": "http://tenant.example.com/oauth/token"},
        ),
    ],
    ids=["name", "private-ip", "localhost-lookalike", "loopback-lookalike", "v1-token", "v2"],
)
def test_plain_http_to_another_host_is_refused_before_sending_anything(
    monkeypatch, no_network, task_context, host, extra
):
    set_connection(monkeypatch, host=host, extra=extra)
    with pytest.raises(MetiConfigError, match="allow_insecure_http") as refused:
        MetiListSourcesOperator(task_id="list").execute(task_context)
    assert no_network == []
    assert PASSWORD not in str(refused.value)


def test_plain_http_to_another_host_is_allowed_only_when_asked_for(monkeypatch, no_network):
    set_connection(
        monkeypatch, host="http://meti.internal.example", extra={"allow_insecure_http": True}
    )
    client = MetiHook().get_conn()  # built, but nothing is sent to that address
    assert client.settings.base_url == "http://meti.internal.example"
    assert no_network == []


@pytest.mark.parametrize("host", ["http://127.0.0.1:1", "http://[::1]:1", "http://localhost:1"])
def test_plain_http_to_loopback_needs_no_opt_in(monkeypatch, no_network, host):
    set_connection(monkeypatch, host=host)
    assert MetiHook().get_conn().settings.base_url == host


# --- TLS verification --------------------------------------------------------------------------


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1: (ca, cert, key) PEM paths."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "METI test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class TinyMeti(http.server.BaseHTTPRequestHandler):
    """A minimal METI v1: a token for anyone, one source; optionally redirects or 401s."""

    protocol_version = "HTTP/1.1"
    server: Any

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply({"token": "tok-tiny-0123456789", "expires_in": 3600})

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.server.refuse:
            self.reply({"message": "token not accepted"}, status=401)
            return
        if self.server.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.reply({"id": "src_0123456789abc", "alt_id": "A"})

    def reply(self, payload: dict[str, Any], status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tiny_meti() -> Iterator[Callable[..., http.server.ThreadingHTTPServer]]:
    """Starts TinyMeti servers on 127.0.0.1 (optionally over TLS); stops them afterwards."""
    servers: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []

    def start(
        *,
        tls: ssl.SSLContext | None = None,
        redirect_to: str | None = None,
        refuse: bool = False,
    ) -> http.server.ThreadingHTTPServer:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TinyMeti)
        server.seen = []
        server.redirect_to = redirect_to
        server.refuse = refuse
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
            server.handle_error = lambda request, address: None  # failed handshakes
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def tls_server(tiny_meti, tmp_path) -> tuple[str, Path]:
    """The base URL of a TLS TinyMeti and the path of the CA bundle that signed its cert."""
    ca, cert, key = make_certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = tiny_meti(tls=context)
    return f"https://127.0.0.1:{server.server_address[1]}", ca


def test_tls_is_verified_by_default(monkeypatch, tls_server, task_context):
    url, _ = tls_server
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    set_connection(monkeypatch, host=url, extra={"max_retries": 0})
    assert MetiHook().get_conn().settings.verify is True
    with pytest.raises(MetiApiError, match="TLS verification failed") as failed:
        MetiGetSourceOperator(task_id="get", source_id="src_0123456789abc").execute(task_context)
    assert "/token" in str(failed.value)  # refused at the handshake, before the password left


def test_the_verify_extra_names_the_ca_bundle_to_trust(monkeypatch, tls_server, task_context):
    url, ca = tls_server
    # A CA bundle from the environment must not replace the connection's own.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", requests.certs.where())
    set_connection(monkeypatch, host=url, extra={"verify": str(ca), "max_retries": 0})
    operator = MetiGetSourceOperator(task_id="get", source_id="src_0123456789abc")
    assert operator.execute(task_context)["id"] == "src_0123456789abc"
    assert MetiHook().get_conn().settings.verify == str(ca)


# --- redirects ---------------------------------------------------------------------------------


def test_a_redirect_to_another_host_is_refused_before_anything_reaches_it(
    monkeypatch, tiny_meti, task_context
):
    # Two servers on 127.0.0.1 that the client knows by different host names.
    other = tiny_meti()
    other_url = f"http://localhost:{other.server_address[1]}"
    first = tiny_meti(redirect_to=other_url)
    set_connection(monkeypatch, host=f"http://127.0.0.1:{first.server_address[1]}")

    operator = MetiGetSourceOperator(task_id="get", source_id="src_0123456789abc")
    with pytest.raises(MetiApiError, match=r"refused to follow a redirect .* another host"):
        operator.execute(task_context)

    assert first.seen and all(auth == "Bearer tok-tiny-0123456789" for _, auth in first.seen)
    assert other.seen == []  # the request never went out
    assert len(first.seen) == 1  # and was not retried


# --- the triggers' asyncio client keeps the same TLS and redirect rules ------------------------


def get_source_async(url: str, *, verify: bool | str = True) -> dict[str, Any]:
    """One ``get_source`` through the asyncio client the triggers use, without retries."""
    settings = ClientSettings(base_url=url, verify=verify, retry=RetryPolicy(max_retries=0))
    auth = EmailPasswordAuth(token_url=f"{url}/token", email="a@b.c", password="pw-tiny-Secret")

    async def main() -> dict[str, Any]:
        async with AsyncMetiClient(settings, auth) as client:
            return await client.get_source("src_0123456789abc")

    return asyncio.run(main())


def test_the_async_client_verifies_tls_by_default(monkeypatch, tls_server):
    url, _ = tls_server
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(MetiApiError, match="TLS verification failed") as failed:
        get_source_async(url)
    assert "/token" in str(failed.value)  # refused at the handshake, before the password left
    assert "pw-tiny-Secret" not in str(failed.value)


def test_the_async_client_trusts_the_connections_ca_bundle_over_the_environment(
    monkeypatch, tls_server
):
    url, ca = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", requests.certs.where())
    assert get_source_async(url, verify=str(ca))["id"] == "src_0123456789abc"


def test_the_async_client_refuses_a_redirect_to_another_host(tiny_meti):
    other = tiny_meti()
    first = tiny_meti(redirect_to=f"http://localhost:{other.server_address[1]}")

    with pytest.raises(MetiApiError, match=r"refused to follow a redirect .* another host"):
        get_source_async(f"http://127.0.0.1:{first.server_address[1]}")

    assert [auth for _, auth in first.seen] == ["Bearer tok-tiny-0123456789"]  # not retried
    assert other.seen == []  # the token never went to the other host


def test_the_async_client_raises_an_auth_error_after_one_replay_of_a_refused_token(tiny_meti):
    server = tiny_meti(refuse=True)

    with pytest.raises(MetiAuthError, match="freshly issued token") as caught:
        get_source_async(f"http://127.0.0.1:{server.server_address[1]}")

    assert len(server.seen) == 2, "one request and one replay with a renewed token"
    assert "tok-tiny" not in str(caught.value) and "pw-tiny-Secret" not in str(caught.value)
