"""Bad input and malformed replies end in one clear METI error, never a deep traceback.

Invalid FeatureCollections are generated with hypothesis and given to the create operator
against the emulator: each must raise ``MetiValidationError`` naming the broken feature, with
nothing sent. Malformed server replies (from ``responses``, or raw bytes from a socket on
127.0.0.1 for what ``responses`` cannot fake) must raise ``MetiApiError`` or ``MetiAuthError``.
"""

from __future__ import annotations

import copy
import gc
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_meti.auth import EmailPasswordAuth
from airflow_provider_meti.client import ClientSettings, MetiClient
from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiAuthError,
    MetiConnectionError,
    MetiError,
    MetiPartialCreateError,
    MetiValidationError,
)
from airflow_provider_meti.operators.meti import (
    MetiCreateSourcesOperator,
    MetiListSourcesOperator,
)
from airflow_provider_meti.retries import RetryPolicy, may_have_been_processed
from tests.api_versions import v1_only
from tests.features import collection, square_feature

NO_RETRY = RetryPolicy(max_retries=0)


def deterministic(max_examples: int) -> settings:
    """Same examples on every run, bounded; fixtures are shared by the examples on purpose
    (no example may send anything, so the emulator's counters add up to zero)."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- invalid FeatureCollections --------------------------------------------------------------

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
NOT_ISO_DATES = st.one_of(
    st.sampled_from(
        [
            "01/11/2024",
            "2024/11/01",
            "Nov 1 2024",
            "2024-13-01T00:00:00Z",
            "2024-11-31",
            "2024-11-01T25:00:00Z",
            "2024-11-01T00:00:00+25:00",
            "1730419200",
            "yesterday",
            "",
            "2024-11-01T00:00:00ZZ",
        ]
    ),
    st.text(alphabet="0123456789-:TZ/. ", max_size=12).filter(lambda text: not _is_timestamp(text)),
)
OTHER_GEOMETRIES = [
    {"type": "Point", "coordinates": [-95.99, 32.77]},
    {"type": "LineString", "coordinates": [[-95.99, 32.77], [-95.98, 32.78]]},
    {"type": "MultiPolygon", "coordinates": []},  # a MultiPolygon with no parts
    {"type": "GeometryCollection", "geometries": []},
    {"type": "polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
    {"type": "Feature", "geometry": None},
]


def _is_timestamp(text: str) -> bool:
    from airflow_provider_meti.geojson import parse_timestamp

    try:
        parse_timestamp(text)
    except ValueError:
        return False
    return True


def _wrong_type(feature: dict[str, Any], data: st.DataObject) -> Any:
    where = data.draw(st.sampled_from(["feature", "type", "properties", "geometry"]))
    junk = data.draw(JUNK.filter(lambda value: not isinstance(value, dict)))
    if where == "feature":
        return junk  # the feature itself is not an object
    if where == "type" and junk == "Feature":
        junk = None
    feature[where] = junk
    return feature


def _missing_id(feature: dict[str, Any], data: st.DataObject) -> Any:
    if data.draw(st.booleans()):
        del feature["id"]
    else:
        feature["id"] = data.draw(st.sampled_from([None, "", "   ", 7, 3.5, True, ["A"]]))
    return feature


def _long_id(feature: dict[str, Any], data: st.DataObject) -> Any:
    feature["id"] = data.draw(st.text(min_size=50, max_size=80))
    return feature


def _open_or_short_ring(feature: dict[str, Any], data: st.DataObject) -> Any:
    ring = feature["geometry"]["coordinates"][0]
    if data.draw(st.booleans()):
        ring[-1] = [ring[-1][0] + data.draw(st.floats(1e-7, 1e-3)), ring[-1][1]]
    else:
        keep = data.draw(st.integers(0, 3))
        closed = ring[:keep] + ring[:1] if keep and data.draw(st.booleans()) else ring[:keep]
        feature["geometry"]["coordinates"][0] = closed[:3]
    return feature


def _out_of_range(feature: dict[str, Any], data: st.DataObject) -> Any:
    ring = feature["geometry"]["coordinates"][0]
    axis = data.draw(st.integers(0, 1))
    limit = 180 if axis == 0 else 90
    value = data.draw(
        st.one_of(
            st.floats(min_value=limit + 1e-9, max_value=1e12),
            st.floats(max_value=-limit - 1e-9, min_value=-1e12),
        )
    )
    index = data.draw(st.integers(0, len(ring) - 1))
    ring[index][axis] = value
    if index in (0, len(ring) - 1):
        ring[0][axis] = ring[-1][axis] = value  # keep the ring closed: only the range is wrong
    return feature


def _end_not_after_start(feature: dict[str, Any], data: st.DataObject) -> Any:
    start = "2024-11-01T00:00:00Z"
    end = data.draw(
        st.sampled_from(
            [
                start,
                "2024-10-01T00:00:00Z",
                "2024-11-02T00:00:00Z",  # exactly one day: still too short
                "2024-11-01T23:59:59+00:00",
                "2024-11-01T18:00:00-05:00",  # 23:00 UTC
            ]
        )
    )
    feature["properties"] = {"start_at": start, "end_at": end}
    return feature


def _non_iso_date(feature: dict[str, Any], data: st.DataObject) -> Any:
    key = data.draw(st.sampled_from(["start_at", "end_at"]))
    feature["properties"][key] = data.draw(NOT_ISO_DATES)
    return feature


def _non_polygon(feature: dict[str, Any], data: st.DataObject) -> Any:
    feature["geometry"] = copy.deepcopy(data.draw(st.sampled_from(OTHER_GEOMETRIES)))
    return feature


def _self_intersecting(feature: dict[str, Any], data: st.DataObject) -> Any:
    west, south = feature["geometry"]["coordinates"][0][0]
    bowtie = [[west, south], [west + 1e-3, south + 1e-3], [west + 1e-3, south]]
    bowtie += [[west, south + 1e-3], [west, south]]
    feature["geometry"]["coordinates"] = [bowtie]
    return feature


FEATURE_MUTATIONS = [
    _wrong_type,
    _missing_id,
    _long_id,
    _open_or_short_ring,
    _out_of_range,
    _end_not_after_start,
    _non_iso_date,
    _non_polygon,
    _self_intersecting,
]


@st.composite
def broken_collections(draw: st.DrawFn) -> tuple[Any, set[int | None]]:
    """An invalid collection and the feature indexes (None: the collection) that break it."""
    size = draw(st.integers(1, 5))
    features: list[Any] = [square_feature(f"F-{i}", x=i) for i in range(size)]
    kind = draw(st.sampled_from(["features", "duplicate", "collection"]))
    if kind == "collection":
        breakage = draw(st.sampled_from(["empty", "type", "features", "not an object"]))
        if breakage == "empty":
            return collection(), {None}
        if breakage == "not an object":
            return draw(st.sampled_from([[], [features], "features", 42, None])), {None}
        value = collection(*features)
        if breakage == "type":
            value["type"] = draw(st.sampled_from(["Feature", "featurecollection", None, 1]))
        else:
            value["features"] = draw(st.sampled_from([None, {}, "[]", features[0]]))
        return value, {None}
    if kind == "duplicate" and size > 1:
        later = draw(st.integers(1, size - 1))
        features[later]["id"] = features[draw(st.integers(0, later - 1))]["id"]
        return collection(*features), {later}
    broken = draw(st.sets(st.integers(0, size - 1), min_size=1))
    for index in sorted(broken):
        mutation = draw(st.sampled_from(FEATURE_MUTATIONS))
        features[index] = mutation(features[index], draw(st.data()))
    return collection(*features), broken


def as_input(value: Any, form: str, tmp_path) -> Any:
    """The collection as the operator may get it: a dict, JSON text or a file path."""
    if form == "dict" and isinstance(value, dict):
        return value
    text = json.dumps(value)
    if form == "file":
        path = tmp_path / f"collection-{time.monotonic_ns()}.geojson"
        path.write_text(text)
        return str(path)
    # Text that does not start with "{" or "[" would be read as a path.
    return text if text.lstrip()[:1] in "{[" else f"[{text}]"


def sent_anything(emulator) -> bool:
    stats = emulator.stats()
    return bool(stats["requests"]) or stats["token_requests"] > 0


@deterministic(200)
@given(case=broken_collections(), form=st.sampled_from(["dict", "text", "file"]))
def test_invalid_collections_are_refused_before_anything_is_sent(
    meti_connection, emulator, task_context, tmp_path, case, form
):
    value, broken = case
    operator = MetiCreateSourcesOperator(
        task_id="register", feature_collection=as_input(value, form, tmp_path)
    )
    with pytest.raises(MetiValidationError) as raised:
        operator.execute(task_context)

    message = str(raised.value)
    assert "nothing was sent" in message
    named = {problem.index for problem in raised.value.problems}
    assert named == broken or (None in broken and None in named)
    for index in broken - {None}:
        assert f"feature {index} (id=" in message
    assert not sent_anything(emulator)


# --- a huge file -------------------------------------------------------------------------------


def twelve_gon(alt_id: str, index: int, *, short_window: bool) -> dict[str, Any]:
    """A 12-vertex field boundary: 100,000 of them weigh just over 50 MB."""
    feature = square_feature(alt_id, x=index % 1000, y=index // 1000, methodology="regen-ag-v1")
    west, south = feature["geometry"]["coordinates"][0][0]
    ring = [[round(west + dx, 9), round(south + dy, 9)] for dx, dy in TWELVE_GON]
    feature["geometry"]["coordinates"] = [[*ring, ring[0]]]
    if short_window:
        feature["properties"]["end_at"] = "2024-11-01T12:00:00Z"
    return feature


TWELVE_GON = [
    (0.002 * (1 + math.cos(math.pi * k / 6)), 0.002 * (1 + math.sin(math.pi * k / 6)))
    for k in range(12)
]


@pytest.mark.slow
@v1_only  # validation happens before the API version matters
def test_a_50_mb_file_of_100000_features_is_rejected_quickly_with_a_capped_message(
    meti_connection, emulator, task_context, tmp_path, record_property
):
    features = [twelve_gon(f"FIELD-{i:06}", i, short_window=i % 2 == 1) for i in range(100_000)]
    path = tmp_path / "huge.geojson"
    path.write_text(json.dumps(collection(*features)))
    megabytes = path.stat().st_size / 1e6
    operator = MetiCreateSourcesOperator(task_id="register", feature_collection=str(path))

    started = time.monotonic()
    with pytest.raises(MetiValidationError) as raised:
        operator.execute(task_context)  # reads, parses and checks every feature
    elapsed = time.monotonic() - started

    message = str(raised.value)
    assert megabytes >= 50
    assert len(raised.value.problems) == 50_000
    assert "(50000 problems)" in message and "... and 49950 more" in message
    assert message.count("\n  - ") == 50
    assert len(message) < 10_000
    assert not sent_anything(emulator)
    # The error's traceback keeps both copies of the collection alive in a reference cycle:
    # free them here rather than in a garbage collection pause during a later test.
    del raised, features
    gc.collect()
    record_property("megabytes", round(megabytes, 1))
    record_property("seconds", round(elapsed, 2))
    record_property("message_chars", len(message))
    print(
        f"\nreliability: 100,000 features ({megabytes:.1f} MB file) read, validated and "
        f"rejected (50,000 problems) in {elapsed:.2f} s; message {len(message)} chars"
    )


# --- malformed replies, through responses ---------------------------------------------------

BASE = "https://meti.test"
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**400),
        st.floats(),
        st.text(max_size=8),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                ["id", "alt_id", "token", "expires_in", "message", "data", "total", "status"]
            ),
            children,
            max_size=4,
        ),
    ),
    max_leaves=12,
)
GOOD_BODIES = {
    "token": {"token": "tok-0123456789", "expires_in": 3600},
    "get": {"id": "src_0123456789abc", "alt_id": "A"},
    "list": [{"id": "src_0123456789abc", "alt_id": "A"}],
    "create": {"id": "src_0123456789abc", "message": "Source created successfully."},
    "delete": {"message": "Source deleted successfully."},
}
ROUTES = {
    "token": (responses.POST, "/token"),
    "get": (responses.GET, "/sources/"),
    "list": (responses.GET, "/sources"),
    "create": (responses.POST, "/sources"),
    "delete": (responses.DELETE, "/sources/"),
}


@st.composite
def malformed_bodies(draw: st.DrawFn, endpoint: str) -> bytes:
    good = json.dumps(GOOD_BODIES[endpoint])
    kinds = ["bytes", "html", "truncated", "json", "json list", "wrong types", "empty"]
    kind = draw(st.sampled_from(kinds))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "html":
        return b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    if kind == "truncated":
        return good[: draw(st.integers(1, len(good) - 1))].encode()
    if kind == "empty":
        return b""
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    if kind == "json list":
        return json.dumps(draw(st.lists(JSON_VALUES, min_size=1, max_size=4))).encode()
    body = copy.deepcopy(GOOD_BODIES[endpoint])
    item = body[0] if isinstance(body, list) else body
    key = draw(st.sampled_from(sorted(item)))
    item[key] = draw(JSON_VALUES)
    return json.dumps(body).encode()


def call(client: MetiClient, endpoint: str) -> Any:
    if endpoint == "token":
        return client.get_token()
    if endpoint == "get":
        return client.get_source("src_0123456789abc")
    if endpoint == "list":
        return list(client.iter_sources(page_size=10))
    if endpoint == "create":
        return client.create_sources(collection(square_feature("A")))
    return client.delete_source("src_0123456789abc")


RESULT_TYPES = {
    "token": str,
    "get": dict,
    "list": list,
    "create": list,
    "delete": type(None),
}


@deterministic(400)
@given(
    endpoint=st.sampled_from(sorted(ROUTES)),
    status=st.one_of(  # half the replies claim success: their bodies must be checked
        st.sampled_from([200, 201, 204]),
        st.sampled_from([400, 401, 403, 404, 422, 429, 500, 502, 503]),
    ),
    content_type=st.sampled_from(["application/json", "text/html", "text/plain", None]),
    retry_after=st.sampled_from([None, "1", "-3", "soon", "nan", "1e999", ""]),
    data=st.data(),
)
def test_malformed_replies_raise_meti_errors_only(
    endpoint, status, content_type, retry_after, data
):
    body = data.draw(malformed_bodies(endpoint), label="body")
    method, path = ROUTES[endpoint]
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    auth = EmailPasswordAuth(token_url=f"{BASE}/token", email="a@b.c", password="pw-secret")
    client = MetiClient(ClientSettings(base_url=BASE, retry=NO_RETRY), auth)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        if endpoint != "token":
            mock.add(responses.POST, f"{BASE}/token", json=GOOD_BODIES["token"])
        mock.add(
            method, f"{BASE}{path}", status=status, body=body, content_type=content_type,
            headers=headers,
        )  # fmt: skip
        try:
            result = call(client, endpoint)
        except MetiError as error:
            message = str(error)
            assert isinstance(error, (MetiApiError, MetiAuthError)), repr(error)
            assert "/token" in message or "/sources" in message, message
            # A create whose answer was lost (broke off, a 5xx) names its feature in doubt.
            cause = error.cause if isinstance(error, MetiPartialCreateError) else error
            if isinstance(error, MetiPartialCreateError):
                assert may_have_been_processed(cause) and error.in_doubt == ["A"], message
            # "no response" only when none arrived; a bad reply says what was wrong with it.
            assert ("no response" in message) == isinstance(cause, MetiConnectionError), message
            assert "pw-secret" not in message
        else:
            assert isinstance(result, RESULT_TYPES[endpoint])
            if endpoint == "list":
                assert all(isinstance(source, dict) for source in result)


# --- malformed replies at the transport level (raw bytes from 127.0.0.1) --------------------


class RawServer:
    """Answers each connection on 127.0.0.1 with ``reply(request_bytes)``, then closes it."""

    def __init__(self, reply: Callable[[bytes], bytes]) -> None:
        self._reply = reply
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.05)  # so that the loop notices close() quickly
        self._stopping = threading.Event()
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                connection.settimeout(5)
                request = _read_request(connection)
                self.requests.append(request)
                connection.sendall(self._reply(request))

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._socket.close()


def _read_request(connection: socket.socket) -> bytes:
    # The whole request, body included: closing with unread bytes would reset the connection.
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def http_reply(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


_TOKEN_BODY = b'{"token": "tok-0123456789", "expires_in": 60}'
TOKEN_REPLY = http_reply(
    f"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: {len(_TOKEN_BODY)}",
    _TOKEN_BODY,
)


TRANSPORT_FAULTS = {
    "body shorter than Content-Length": http_reply(
        "HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: 100", b'{"id": "src_'
    ),
    "gzip that is not gzip": http_reply(
        "HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Encoding: gzip\n"
        "Content-Length: 10",
        b"not gzip!!",
    ),
    "broken chunked encoding": http_reply(
        "HTTP/1.1 200 OK\nContent-Type: application/json\nTransfer-Encoding: chunked",
        b"zz\r\n{}\r\n",
    ),
    "garbage status line": b"HTCPCP/1.0 418 I'm a teapot\r\n\r\n",
    "headers cut off": b"HTTP/1.1 200 OK\r\nContent-Ty",
    "redirect loop": http_reply("HTTP/1.1 302 Found\nLocation: /sources/?id=x\nContent-Length: 0"),
    "redirect to another scheme": http_reply(
        "HTTP/1.1 302 Found\nLocation: ftp://127.0.0.1/sources\nContent-Length: 0"
    ),
}


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[bytes], bytes]], RawServer]]:
    servers: list[RawServer] = []

    def start(reply: Callable[[bytes], bytes]) -> RawServer:
        servers.append(RawServer(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("fault", sorted(TRANSPORT_FAULTS))
@pytest.mark.parametrize("endpoint", ["token", "get"])
def test_broken_http_replies_raise_meti_errors(raw_server, fault, endpoint):
    broken = TRANSPORT_FAULTS[fault]
    server = raw_server(
        lambda request: (
            broken if endpoint == "token" or not request.startswith(b"POST /token") else TOKEN_REPLY
        )
    )
    auth = EmailPasswordAuth(token_url=f"{server.url}/token", email="a@b.c", password="pw")
    settings_ = ClientSettings(base_url=server.url, retry=NO_RETRY, timeout=5)
    with MetiClient(settings_, auth) as client, pytest.raises(MetiError) as raised:
        call(client, endpoint)
    assert isinstance(raised.value, (MetiApiError, MetiAuthError)), repr(raised.value)
    assert ("/token" if endpoint == "token" else "/sources/") in str(raised.value)


# --- malformed token replies, through an Airflow connection and operator ----------------------


class TokenReplyHandler(BaseHTTPRequestHandler):
    """Answers every token request with the server's canned reply; records every path."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type, body = self.server.reply  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


def raw_json(text: str) -> tuple[str, bytes]:
    return "application/json", text.encode()


def token_body(key: str, **fields: Any) -> tuple[str, bytes]:
    return "application/json", json.dumps({key: "tok-0123456789", **fields}).encode()


TOKEN_REPLIES: dict[str, Callable[[str], tuple[str, bytes]]] = {
    "no token": lambda key: ("application/json", b'{"expires_in": 3600}'),
    "no expires_in": lambda key: token_body(key),
    "negative expires_in": lambda key: token_body(key, expires_in=-60),
    "zero expires_in": lambda key: token_body(key, expires_in=0),
    "string expires_in": lambda key: token_body(key, expires_in="3600"),
    "huge expires_in": lambda key: raw_json(f'{{"{key}": "t", "expires_in": 1{"0" * 400}}}'),
    "infinite expires_in": lambda key: raw_json(f'{{"{key}": "t", "expires_in": Infinity}}'),
    "HTML page": lambda key: ("text/html", b"<html><body><h1>Login</h1></body></html>"),
    "truncated JSON": lambda key: raw_json(f'{{"{key}": "tok-01'),
    "a JSON list": lambda key: ("application/json", b'["tok-0123456789", 3600]'),
    "empty body": lambda key: ("application/json", b""),
}  # fmt: skip


@pytest.fixture
def token_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenReplyHandler)
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("api_version", [1, 2], ids=["v1", "v2"])
@pytest.mark.parametrize("reply", sorted(TOKEN_REPLIES))
def test_malformed_token_replies_fail_the_task_with_an_auth_error(
    token_server, task_context, monkeypatch, api_version, reply
):
    from airflow_provider_meti.hooks import meti as meti_hooks

    monkeypatch.setattr(meti_hooks, "_clients", {})
    url = f"http://127.0.0.1:{token_server.server_address[1]}"
    token_key, token_path = ("token", "/token")
    if api_version == 2:
        token_key, token_path = ("access_token", "/oauth/token")
    token_server.reply = TOKEN_REPLIES[reply](token_key)  # type: ignore[attr-defined]
    extra = {"max_retries": 0}
    if api_version == 2:
        extra.update(api_version=2, token_url=url + token_path)
    connection = {"conn_type": "meti", "host": url, "login": "a@b.c", "password": "pw-secret"}
    monkeypatch.setenv("AIRFLOW_CONN_METI_DEFAULT", json.dumps({**connection, "extra": extra}))

    with pytest.raises(MetiAuthError) as raised:
        MetiListSourcesOperator(task_id="list").execute(task_context)

    message = str(raised.value)
    assert f"token endpoint {token_path}" in message or f"at {token_path}" in message, message
    assert "pw-secret" not in message
    assert token_server.paths == [token_path]  # no source request went out with a bad token


@pytest.mark.parametrize("sandbox", [False, True], ids=["sources", "sandbox"])
def test_a_create_answered_without_ids_names_its_feature_in_doubt(sandbox):
    # A 2xx that names no id may well have stored the feature: the create must not record it
    # as not stored (a resumed try would send it again), on METI's sandbox routes too.
    auth = EmailPasswordAuth(token_url=f"{BASE}/token", email="a@b.c", password="pw-secret")
    client = MetiClient(ClientSettings(base_url=BASE, retry=NO_RETRY), auth)
    client.api = client.api.in_sandbox(sandbox)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, f"{BASE}/token", json=GOOD_BODIES["token"])
        mock.add(responses.POST, f"{BASE}{client.api.sources_path}", status=201, json={"ok": 1})
        with pytest.raises(MetiPartialCreateError) as caught:
            call(client, "create")
    assert caught.value.in_doubt == ["A"]
    assert caught.value.path == client.api.sources_path


def test_a_create_whose_token_request_broke_off_leaves_nothing_in_doubt():
    auth = EmailPasswordAuth(token_url=f"{BASE}/token", email="a@b.c", password="pw-secret")
    client = MetiClient(ClientSettings(base_url=BASE, retry=NO_RETRY), auth)
    dropped = requests.exceptions.ConnectionError(
        "('Connection aborted.', "
        "RemoteDisconnected('Remote end closed connection without response'))"
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, f"{BASE}/token", body=dropped)
        with pytest.raises(MetiConnectionError) as caught:
            call(client, "create")
    assert caught.value.path == "/token"  # the POST of the sources was never sent
    assert not isinstance(caught.value, MetiPartialCreateError)
