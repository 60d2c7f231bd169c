"""HTTP transport of the emulator: keep-alive connections, injected faults, clean shutdown."""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from airflow_provider_meti.emulator.faults import ADMIN_PREFIX, Fault
from airflow_provider_meti.emulator.routes import (
    OAUTH_TOKEN_PATH,
    SANDBOX_PREFIX,
    Request,
    Response,
    error_response,
    handle,
)
from airflow_provider_meti.emulator.state import EmulatorState

log = logging.getLogger("airflow_provider_meti.emulator")

MAX_BODY_BYTES = 64 * 1024 * 1024
IDLE_TIMEOUT_S = 120
ERROR_FAULTS = {
    "500": (500, "Internal server error."),
    "503": (503, "Service unavailable. Please retry later."),
    "429": (429, "Too many requests. Please retry later."),
}


class MetiRequestHandler(BaseHTTPRequestHandler):
    """Serves one connection, request after request (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "METI-Emulator/1.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    # Headers and body leave in one write, without waiting on Nagle's algorithm: otherwise
    # every keep-alive request stalls ~40 ms on the client's delayed ACK.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024
    server: MetiHTTPServer
    counted = False
    """Whether the current request shows in the counters (admin requests do not)."""
    request_body = b""
    """The body of the current request (quoted in errors when ``echo_request_in_errors``)."""
    trickled = False
    """Whether the current reply's body goes out slowly (``trickle_bytes_per_second``)."""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _serve(self) -> None:
        self.counted = False
        self.request_body = b""
        self.trickled = False
        body = self._read_body()
        if body is None:
            return
        self.request_body = body
        url = urlsplit(self.path)
        path = self._api_path(url.path)
        if path is None:
            self._send(error_response(404, f"Not found: {url.path}"))
            return
        request = Request(
            method=self.command,
            path=path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers=cast("Mapping[str, str]", self.headers),
            body=body,
        )
        state = self.server.state
        self.counted = not path.startswith(ADMIN_PREFIX)
        if self.counted:
            state.counters.request(request.method, request.path)
        # The sandbox's routes are the same routes: faults and trickles for /sources hit both.
        route_path = path[len(SANDBOX_PREFIX) :] if path.startswith(SANDBOX_PREFIX + "/") else path
        self.trickled = state.modes.trickle_bytes_per_second is not None and route_path.startswith(
            "/sources"
        )
        fault = state.faults.decide(request.method, route_path)
        if fault is None:
            self._send(self._route(request))
            return
        state.counters.fault(fault.kind)
        self._serve_with_fault(request, fault)

    def _api_path(self, path: str) -> str | None:
        """The path without the base path, or None when it lies outside it.

        Admin routes and the OAuth2 token endpoint (a separate tenant in the real service)
        answer with or without the base path.
        """
        base = self.server.base_path
        if not base or path.startswith(ADMIN_PREFIX) or path == OAUTH_TOKEN_PATH:
            return path
        if path == base or path.startswith(base + "/"):
            return path[len(base) :] or "/"
        return None

    def _serve_with_fault(self, request: Request, fault: Fault) -> None:
        if fault.kind == "drop":
            self._drop()
        elif fault.kind in ERROR_FAULTS:
            self._send(_fault_response(fault))
        elif fault.kind == "latency":
            if self._hung_up_within(fault.latency):
                self._drop()  # the client left, or the server is stopping: do not answer late
            else:
                self._send(self._route(request))
        elif fault.kind == "stored_then_drop":
            self._route(request)
            self._drop()

    def _hung_up_within(self, seconds: float) -> bool:
        """Wait ``seconds``; True as soon as the client hangs up or the server stops.

        A client that gives up on a slow request (a cancelled trigger, a timeout) closes its
        connection; the emulator notices at once and counts it as ``abandoned``, so tests can
        see that a request is really gone.
        """
        deadline = time.monotonic() + seconds
        if hasattr(select, "poll"):  # not select(): descriptors above 1,024 are common here
            poller = select.poll()
            poller.register(self.connection, select.POLLIN | select.POLLHUP | select.POLLERR)
            woken = poller.poll(seconds * 1000)
            if woken and not self.server.stopping.is_set() and self._peer_closed():
                self.server.state.counters.abandoned()
                return True
        remaining = max(0.0, deadline - time.monotonic())  # early bytes: pipelining
        return self.server.stopping.wait(remaining)

    def _peer_closed(self) -> bool:
        try:
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _route(self, request: Request) -> Response:
        try:
            return handle(self.server.state, request)
        except Exception:
            log.exception("unexpected error serving %s %s", request.method, request.path)
            return error_response(500, "Internal emulator error.")

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering a malformed request."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self._refuse(400, "Invalid Content-Length header.")
            return None
        if length > MAX_BODY_BYTES:
            self._refuse(413, "Request body too large.")
            return None
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        size_total = 0
        while True:
            line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                self._refuse(400, "Malformed chunked body.")
                return None
            size_total += size
            if size_total > MAX_BODY_BYTES:
                self._refuse(413, "Request body too large.")
                return None
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _refuse(self, status: int, message: str) -> None:
        self.close_connection = True
        self._send(error_response(status, message))

    def _send(self, response: Response) -> None:
        if self.counted:
            self.server.state.counters.response(response.status)
        body = response.body
        if response.status >= 400 and self.server.state.modes.echo_request_in_errors:
            body = _with_request_quoted(body, self.request_body)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.trickled and body:
            self._trickle(body)
        else:
            self.wfile.write(body)

    def _trickle(self, body: bytes) -> None:
        """Send ``body`` a chunk at a time at the mode's rate; stop if the client leaves."""
        modes = self.server.state.modes
        chunk = modes.trickle_chunk_bytes
        pause = chunk / (modes.trickle_bytes_per_second or 1.0)
        for start in range(0, len(body), chunk):
            try:
                self.wfile.write(body[start : start + chunk])
                self.wfile.flush()
            except OSError:  # the client gave up (its deadline): the rest is not sent
                self.server.state.counters.abandoned()
                self.close_connection = True
                return
            if start + chunk < len(body) and self.server.stopping.wait(pause):
                self.close_connection = True
                return

    def _drop(self) -> None:
        """Close the connection without a byte of response."""
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines only (never bodies); shown with --verbose.
        log.debug("%s %s", self.address_string(), format % args)


def _with_request_quoted(body: bytes, request_body: bytes) -> bytes:
    """An error body that also quotes the request, as some gateways' error pages do."""
    if not request_body:
        return body
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if not isinstance(payload, dict):
        return body
    payload["request_body"] = request_body.decode("utf-8", "replace")
    return json.dumps(payload).encode()


def _fault_response(fault: Fault) -> Response:
    status, message = ERROR_FAULTS[fault.kind]
    headers: tuple[tuple[str, str], ...] = ()
    if status == 429:
        seconds = fault.retry_after
        headers = (("Retry-After", f"{seconds:g}" if seconds % 1 else str(int(seconds))),)
    return error_response(status, message, headers)


class MetiHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that can close its keep-alive connections when it stops.

    :param address: (host, port) to bind; port 0 picks a free one
    :param state: what the handlers serve
    :param base_path: a prefix such as ``/meti/api`` that every API path must carry
    """

    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 refuses bursts of new connections (many workers or
    # triggers connecting at once) that a real server would accept; a full queue drops SYNs,
    # which clients retry only after a second. The kernel caps it at net.core.somaxconn.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], state: EmulatorState, base_path: str = "") -> None:
        self.state = state
        self.base_path = base_path
        self.stopping = threading.Event()
        self._workers: dict[threading.Thread, socket.socket] = {}
        self._workers_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, MetiRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"meti-emulator-connection-{client_address[1]}",
            daemon=True,
        )
        with self._workers_lock:
            self._workers[worker] = request
        worker.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._workers_lock:
                self._workers.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError, OSError)):
            log.debug("connection from %s ended: %r", client_address, error)
        else:
            log.exception("error serving a connection from %s", client_address)

    def close_connections(self) -> None:
        """Cut every open connection, so idle keep-alive workers return."""
        self.stopping.set()
        with self._workers_lock:
            sockets = list(self._workers.values())
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by its worker
                sock.shutdown(socket.SHUT_RDWR)

    def join_workers(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds in total for the connection workers to finish."""
        deadline = time.monotonic() + timeout
        with self._workers_lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
