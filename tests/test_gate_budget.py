"""The gate: every request of a call (token requests and 401 replays included) is counted
against one budget, checked against one deadline, and given one whole-request timeout.

Against small scripted servers on 127.0.0.1; counts are asserted, and wall time only as a
generous upper bound where a timeout is the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import itertools
import json
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from airflow_provider_meti.aio.client import AsyncMetiClient
from airflow_provider_meti.auth import EmailPasswordAuth
from airflow_provider_meti.client import MetiClient
from airflow_provider_meti.exceptions import MetiApiError, MetiBudgetError, MetiConnectionError
from airflow_provider_meti.retries import RetryPolicy
from airflow_provider_meti.settings import ClientSettings

PASSWORD = "pw-gate-Secret-0123456789"
SOURCE = "src_0123456789abc"


class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers as ``server.script(handler)`` decides; counts every request."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        with self.server.lock:
            self.server.seen[f"{self.command} {self.path.split('?')[0]}"] += 1
        self.server.script(self)

    def reply(self, status: int, body: bytes = b"{}", content_type: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, status: int, payload: object) -> None:
        self.reply(status, json.dumps(payload).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[Callable[..., http.server.ThreadingHTTPServer]]:
    servers = []

    def start(script: Callable[[Scripted], None]) -> http.server.ThreadingHTTPServer:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
        server.daemon_threads = True
        server.script = script
        server.seen = Counter()
        server.lock = threading.Lock()
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


def url_of(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def settings_for(url: str, **retry: float) -> tuple[ClientSettings, EmailPasswordAuth]:
    timeout = retry.pop("timeout", 5.0)
    policy = RetryPolicy(**{"initial_wait": 0.001, "max_wait": 0.002, **retry})
    settings = ClientSettings(base_url=url, timeout=timeout, retry=policy)
    return settings, EmailPasswordAuth(token_url=f"{url}/token", email="a@b.c", password=PASSWORD)


def get_source_sync(settings: ClientSettings, auth: EmailPasswordAuth) -> None:
    with MetiClient(settings, auth) as client:
        client.get_source(SOURCE)


def get_source_async(settings: ClientSettings, auth: EmailPasswordAuth) -> None:
    async def main() -> None:
        async with AsyncMetiClient(settings, auth) as client:
            await client.get_source(SOURCE)

    asyncio.run(main())


PATHS = [pytest.param(get_source_sync, id="sync"), pytest.param(get_source_async, id="asyncio")]


def refuses_each_new_token_then_fails_each_replay() -> Callable[[Scripted], None]:
    """#25.7: a 401 to each first use of a (new) token, a 503 to each replay after it."""
    tokens = itertools.count()
    gets = itertools.count()

    def script(request: Scripted) -> None:
        if request.command == "POST":
            request.reply_json(200, {"token": f"tok-{next(tokens)}", "expires_in": 3600})
        elif next(gets) % 2 == 0:
            request.reply_json(401, {"message": "token not accepted"})
        else:
            request.reply_json(503, {"message": "try later"})

    return script


@pytest.mark.parametrize("get_source", PATHS)
def test_401s_and_503s_send_no_request_more_than_max_retries_plus_one_times(scripted, get_source):
    server = scripted(refuses_each_new_token_then_fails_each_replay())
    settings, auth = settings_for(url_of(server), max_retries=3)

    with pytest.raises(MetiApiError):
        get_source(settings, auth)

    assert 1 <= server.seen["POST /token"] <= 4, server.seen
    assert 2 <= server.seen["GET /sources/"] <= 4, server.seen


@pytest.mark.parametrize("get_source", PATHS)
def test_with_no_retries_a_401_still_gets_its_one_renewal_and_replay(scripted, get_source):
    server = scripted(refuses_each_new_token_then_fails_each_replay())
    settings, auth = settings_for(url_of(server), max_retries=0)

    with pytest.raises(MetiApiError, match="HTTP 503"):
        get_source(settings, auth)

    assert server.seen == {"POST /token": 2, "GET /sources/": 2}


@pytest.mark.parametrize("get_source", PATHS)
def test_a_failing_token_endpoint_is_asked_at_most_max_retries_plus_one_times(scripted, get_source):
    server = scripted(lambda request: request.reply_json(503, {"message": "down"}))
    settings, auth = settings_for(url_of(server), max_retries=2)

    with pytest.raises(MetiApiError, match="HTTP 503"):
        get_source(settings, auth)

    assert server.seen == {"POST /token": 3}


def gzip_with_long_name(payload: bytes, name: bytes) -> bytes:
    """``payload`` gzipped, its header carrying ``name`` (FNAME): bytes that decode to
    nothing, however many of them arrive."""
    header = b"\x1f\x8b\x08\x08" + b"\x00" * 4 + b"\x00\xff" + name + b"\x00"
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = compressor.compress(payload) + compressor.flush()
    return header + deflated + struct.pack("<II", zlib.crc32(payload), len(payload))


class SlowOrTrickling:
    """A token at once; the GET answered after 3 s, or its body trickled a byte per 0.5 s
    (``gzip``: a gzip body whose 31-byte header, with a 20-byte name, comes a byte per
    0.25 s). Counts the body bytes written before the client left."""

    GZIP_HEADER = 31

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.written = 0
        self.left = threading.Event()

    def __call__(self, request: Scripted) -> None:
        if request.command == "POST":
            request.reply_json(200, {"token": "tok-slow", "expires_in": 3600})
            return
        body = json.dumps({"id": SOURCE, "padding": "x" * 30}).encode()
        try:
            if self.kind == "slow":
                time.sleep(3)
                request.reply(200, body)
                return
            pause = 0.5
            request.send_response(200)
            request.send_header("Content-Type", "application/json")
            if self.kind == "gzip":
                body, pause = gzip_with_long_name(body, b"n" * 20), 0.25
                request.send_header("Content-Encoding", "gzip")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            for byte in body:
                request.wfile.write(bytes([byte]))
                request.wfile.flush()
                self.written += 1
                time.sleep(pause)
        except OSError:  # the client gave up: what the test wants
            self.left.set()


@pytest.mark.parametrize("kind", ["slow", "trickle", "gzip"])
@pytest.mark.parametrize("get_source", PATHS)
def test_a_slow_or_trickled_reply_ends_the_call_at_its_timeout(scripted, get_source, kind):
    script = SlowOrTrickling(kind)
    server = scripted(script)
    settings, auth = settings_for(url_of(server), max_retries=5, max_retry_time=1, timeout=1)

    with pytest.raises(MetiConnectionError, match="no complete response within 1 s"):
        get_source(settings, auth)

    # One whole-request timeout (1 s) and no retry after the 1 s deadline. The trickled body
    # takes 17 s to arrive; with a timeout per read, the call used to run for 14.5 s.
    assert server.seen["GET /sources/"] <= 2
    if kind == "trickle":
        # The client left at its timeout, about two bytes in (two more writes reach a closed
        # socket before one fails), not once the 72-byte body was in.
        assert script.left.wait(60), "the client never left"
        assert script.written < 20
    if kind == "gzip":
        # A decoding read went on receiving until something decoded: the whole header
        # (7.75 s), each receive with the time left. The client now leaves at its timeout,
        # about four bytes in.
        assert script.left.wait(60), "the client never left"
        assert script.written < SlowOrTrickling.GZIP_HEADER


def gzip_of_zeros(mebibytes: int) -> bytes:
    """A gzip body that decodes to ``mebibytes`` MiB of zeros (about 1 KiB per MiB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1 << 20)
    return b"".join(compressor.compress(block) for _ in range(mebibytes)) + compressor.flush()


@pytest.mark.parametrize("get_source", PATHS)
def test_decoding_a_compressed_body_is_inside_the_timeout(scripted, get_source):
    # 1 MiB on the wire, 1,000 MiB decoded: far more decoding than the 0.2 s timeout
    # allows, though the bytes themselves arrive at once. Decoded only after the last read,
    # the call took 6 s and 2 GiB, and succeeded.
    body = gzip_of_zeros(1000)

    def script(request: Scripted) -> None:
        if request.command == "POST":
            request.reply_json(200, {"token": "tok-bomb", "expires_in": 3600})
            return
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Encoding", "gzip")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        with contextlib.suppress(OSError):  # the client gave up
            request.wfile.write(body)

    server = scripted(script)
    settings, auth = settings_for(url_of(server), max_retries=0, timeout=0.2)

    with pytest.raises(MetiConnectionError, match=r"no complete response within 0\.2 s"):
        get_source(settings, auth)


# The gate's rules, on an injected clock


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_gate_admits_each_request_max_retries_plus_one_times():
    budget = RetryPolicy(max_retries=2).budget(clock=Clock(), sleep=lambda seconds: None)
    for _ in range(3):
        budget.admit("GET /sources/x")
    with pytest.raises(MetiBudgetError, match="already sent 3 times"):
        budget.admit("GET /sources/x")
    budget.admit("POST /token")  # another request has its own count


def test_the_gate_admits_no_request_after_the_deadline():
    clock = Clock()
    budget = RetryPolicy(max_retry_time=10).budget(clock=clock, sleep=lambda seconds: None)
    clock.now = 10.0
    budget.admit("GET /a")  # at the deadline: not after it
    clock.now = 10.001
    with pytest.raises(MetiBudgetError, match="max_retry_time of 10 s has passed"):
        budget.admit("GET /b")


def test_a_refused_request_raises_its_own_last_failure():
    clock = Clock()
    budget = RetryPolicy(max_retries=5, max_retry_time=1).budget(
        clock=clock, sleep=lambda seconds: None
    )
    refusal = MetiApiError("busy", status_code=503, method="GET", path="/a")

    def call() -> None:
        budget.admit("GET /a")
        clock.now += 2  # the request took longer than the whole budget
        raise refusal

    with pytest.raises(MetiApiError) as raised:
        budget.run("GET /a", call)
    assert raised.value is refusal  # the real cause, not "not sent"
    assert budget.sent("GET /a") == 1


def test_inside_a_run_a_replay_counts_as_the_same_request():
    budget = RetryPolicy(max_retries=1).budget(clock=Clock(), sleep=lambda seconds: None)
    sends: list[str] = []

    def call() -> None:
        budget.admit("GET /a")
        sends.append("first")
        with budget.replaying():
            budget.admit("GET /a")  # the 401 replay
            sends.append("replay")
        raise MetiConnectionError("lost", method="GET", path="/a", request_sent=True)

    with pytest.raises(MetiConnectionError):
        budget.run("GET /a", call)
    assert sends == ["first", "replay"]  # max_retries=1: two sendings in all, no retry


def redirecting_slowly(hops: int) -> Callable[[Scripted], None]:
    """A token at once; each GET answered after 0.8 s with a redirect to the next, ``hops``
    times, then the source."""

    def script(request: Scripted) -> None:
        if request.command == "POST":
            request.reply_json(200, {"token": "tok-redirect", "expires_in": 3600})
            return
        hop = int(request.path.rsplit("hop=", 1)[-1]) if "hop=" in request.path else 0
        try:
            time.sleep(0.8)
            if hop < hops:
                request.send_response(302)
                request.send_header("Location", f"/sources/?id={SOURCE}&hop={hop + 1}")
                request.send_header("Content-Length", "0")
                request.end_headers()
            else:
                request.reply_json(200, {"id": SOURCE})
        except OSError:
            pass

    return script


@pytest.mark.parametrize("get_source", PATHS)
def test_redirects_share_the_request_timeout(scripted, get_source):
    server = scripted(redirecting_slowly(hops=4))
    settings, auth = settings_for(url_of(server), max_retries=0, max_retry_time=1, timeout=1)

    with pytest.raises(MetiConnectionError, match="no complete response within 1"):
        get_source(settings, auth)

    # Each hop takes 0.8 s: within one 1 s timeout the second hop cannot end and a third
    # cannot start (each hop with a timeout of its own would have followed all four).
    assert server.seen["GET /sources/"] <= 2


@pytest.mark.parametrize("get_source", PATHS)
def test_a_redirect_within_the_origin_is_followed(scripted, get_source):
    server = scripted(redirecting_slowly(hops=1))
    settings, auth = settings_for(url_of(server), max_retries=0, timeout=5)

    get_source(settings, auth)

    assert server.seen["GET /sources/"] == 2
