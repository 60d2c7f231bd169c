"""Transport: one authenticated request to METI, with the token, the 401 replay and retries.

Everything here is about getting a request there and an answer back: the session, the
bearer token (through ``TokenManager``), turning network failures and error replies into
``MetiError``s that name the real cause, and running requests within a ``CallBudget``.
What the endpoints mean is the client's business.

Every exchange (token request, request, 401 replay) passes the call's budget first
(``CallBudget.admit``) and then has ``timeout`` seconds in all: to connect, for the headers
and for the whole body, however slowly it trickles in.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from airflow_provider_meti._http import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    Reply,
    check_base_url,
    content_summary,
    error_message,
    join_url,
    missing_scope,
    redact,
    redacted_details,
    redirect_refusal,
    retry_after_seconds,
)
from airflow_provider_meti.auth import IssuedToken, TokenManager, TokenSource, token_payload
from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiAuthError,
    MetiConnectionError,
    MetiNotFoundError,
)
from airflow_provider_meti.retries import CallBudget, is_retryable, may_have_been_processed
from airflow_provider_meti.session import BearerAuth, new_session
from airflow_provider_meti.settings import ClientSettings
from airflow_provider_meti.token_cache import HostTokenCache, lock_wait

_fast_decode: Callable[[bytes], Any] | None
try:  # installed with every supported Airflow line; used only when present
    from msgspec.json import Decoder as _JsonDecoder

    _fast_decode = _JsonDecoder().decode
except ImportError:  # pragma: no cover - plain json is the fallback
    _fast_decode = None

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
READ_SIZE = 65536


class _BodyTimeout(Exception):
    """The whole-request timeout ran out while the body was arriving."""


class Transport:
    """Sends requests to one METI base URL with one account's token. Thread-safe.

    :param settings: connection settings
    :param token_source: how to obtain tokens (see ``airflow_provider_meti.auth``)
    :param on_new_token: called with each new token (e.g. Airflow's ``mask_secret``)
    :param host_cache: the token shared by this host's processes (None: this process's own)
    :param clock: a monotonic clock for retry deadlines and token expiry
    :param sleep: waits between retries (default: a real, cancellable wait)
    """

    def __init__(
        self,
        settings: ClientSettings,
        token_source: TokenSource,
        *,
        on_new_token: Callable[[str], None] | None = None,
        host_cache: HostTokenCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        check_base_url(settings.base_url, allow_insecure_http=settings.allow_insecure_http)
        self.settings = settings
        self._base_url = settings.base_url
        self._timeout = settings.timeout
        self._token_source = token_source
        # Room for the workers of any hook sharing this client (``create_sources`` takes its
        # own ``max_workers``); idle connections beyond what is used are never opened.
        self._session = new_session(
            verify=settings.verify, pool_size=max(32, settings.max_workers * 2)
        )
        self._clock = clock
        self._sleep = sleep
        self._host_cache = host_cache
        self._tokens = TokenManager(
            lambda: self._fetch_token(self.new_budget()),
            margin=settings.token_refresh_margin,
            on_new_token=on_new_token,
            clock=clock,
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def new_budget(self, cancelled: threading.Event | None = None) -> CallBudget:
        """A fresh retry budget for one call."""
        return self.settings.retry.budget(clock=self._clock, sleep=self._sleep, cancelled=cancelled)

    def token(self, budget: CallBudget) -> str:
        """A valid token; a renewal, and the wait for another thread's, count against
        ``budget``."""
        return self._tokens.get(
            lambda: self._fetch_token(budget), wait=budget.wait_limit(self._timeout)
        )

    def _fetch_token(self, budget: CallBudget) -> IssuedToken:
        url = self._token_source.token_url
        name = f"POST {url}"

        def ask_endpoint() -> IssuedToken:
            issued: IssuedToken = budget.run(name, lambda: self._post_token(url, name, budget))
            return issued

        if self._host_cache is None:
            return ask_endpoint()
        return self._host_cache.obtain(
            ask_endpoint, wait=lock_wait(budget.remaining(), self._timeout)
        )

    def _post_token(self, url: str, name: str, budget: CallBudget) -> IssuedToken:
        path = urlsplit(url).path or "/"
        source = self._token_source
        # The body goes straight into the call: never a local that a traceback could show.
        # Redirects are refused: one would carry the credentials elsewhere.
        response = self._exchange(
            "POST",
            url,
            budget,
            name,
            path,
            json=source.request_body(),
            allow_redirects=False,
        )
        payload = token_payload(response.status_code, response, url, source.secrets)
        return source.issued_token(payload)

    def request(
        self,
        method: str,
        endpoint: str,
        budget: CallBudget,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send a request, retried within ``budget``; return its parsed JSON body.

        Idempotent methods are retried on every retryable failure; POST and PATCH only when
        the server cannot have acted on them (connection refused, 429, 503).
        """
        method = method.upper()
        response = self.request_reply(method, endpoint, budget, params=params, json=json)
        return self.parse_json(response, method, endpoint)

    def request_reply(
        self,
        method: str,
        endpoint: str,
        budget: CallBudget,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> requests.Response:
        """Like ``request``, but the successful reply itself, its body not yet parsed."""
        method = method.upper()
        return budget.run(
            request_name(method, endpoint, params),
            lambda: self.send(method, endpoint, budget, params=params, json=json),
            retry_if=retry_rule(method),
        )

    def send(
        self,
        method: str,
        endpoint: str,
        budget: CallBudget,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> requests.Response:
        """One request with a bearer token, not retried; on 401, one renewal and one replay.

        The replay and the renewal pass ``budget`` like any request: a replay is one more
        sending of the same request.
        """
        name = request_name(method, endpoint, params)
        token = self.token(budget)
        response = self._send_once(method, endpoint, token, params, json, budget, name)
        if response.status_code == 401:
            self._tokens.invalidate(token)
            if self._host_cache is not None:
                self._host_cache.refuse(token)
            with budget.replaying():
                token = self.token(budget)
                response = self._send_once(method, endpoint, token, params, json, budget, name)
        raise_for_reply(response, response.status_code, method, endpoint, self._redacted)
        return response

    def parse_json(self, response: requests.Response, method: str, endpoint: str) -> Any:
        """The reply's JSON body (None when empty); ``MetiApiError`` when it is not JSON."""
        return json_body(response, response.status_code, method, endpoint, self._redacted)

    def _send_once(
        self,
        method: str,
        endpoint: str,
        token: str,
        params: Mapping[str, Any] | None,
        json: Any,
        budget: CallBudget,
        name: str,
    ) -> requests.Response:
        url = join_url(self._base_url, endpoint)
        started = time.perf_counter()
        response = self._exchange(
            method,
            url,
            budget,
            name,
            endpoint,
            params=params,
            json=json,
            auth=BearerAuth(token),
        )
        if log.isEnabledFor(logging.DEBUG):
            elapsed_ms = (time.perf_counter() - started) * 1000
            log.debug("%s %s -> %d in %.1f ms", method, endpoint, response.status_code, elapsed_ms)
        return response

    def _exchange(
        self,
        method: str,
        url: str,
        budget: CallBudget,
        name: str,
        shown_path: str,
        **arguments: Any,
    ) -> requests.Response:
        """Pass the gate, send once and read the whole reply within ``timeout`` seconds.

        Redirects within the origin are followed here, not by requests, so that every hop
        shares the one ``timeout``, as in the asyncio transport.
        """
        budget.admit(name)
        ends = time.monotonic() + self._timeout
        follow = arguments.pop("allow_redirects", True)
        for _ in range(MAX_REDIRECTS + 1):
            response = self._exchange_once(method, url, ends, shown_path, **arguments)
            location = response.headers.get("Location")
            if not follow or response.status_code not in REDIRECT_STATUSES or not location:
                return response
            target = urljoin(url, location)
            refusal = redirect_refusal(url, target, response.status_code)
            if refusal is not None:
                raise MetiApiError(refusal, method=method, path=shown_path.split("?")[0])
            url = target
            arguments.pop("params", None)  # the Location carries the query
            if response.status_code in (301, 302, 303) and method != "HEAD":
                method = "GET"  # what browsers and requests do
                arguments.pop("json", None)
        raise MetiApiError(
            f"request failed: more than {MAX_REDIRECTS} redirects",
            method=method,
            path=shown_path.split("?")[0],
        )

    def _exchange_once(
        self, method: str, url: str, ends: float, shown_path: str, **arguments: Any
    ) -> requests.Response:
        """One HTTP exchange, the reply read whole before ``ends``."""
        left = max(ends - time.monotonic(), 0.001)
        connect = min(left, self._timeout)
        response: requests.Response = self._guard_network(
            lambda: self._session.request(
                method,
                url,
                # total: connecting and waiting for the headers share what is left.
                timeout=urllib3.Timeout(total=left, connect=connect, read=left),  # type: ignore[arg-type]
                stream=True,
                allow_redirects=False,
                **arguments,
            ),
            method,
            shown_path,
        )
        try:
            self._guard_network(lambda: _read_body(response, ends), method, shown_path)
        except BaseException:
            response.close()
            raise
        response.close()  # the body is read: this returns the connection to the pool
        return response

    def _guard_network(self, call: Callable[[], Any], method: str, endpoint: str) -> Any:
        """Run ``call``; turn requests' network errors into ``MetiConnectionError``."""
        path = endpoint.split("?")[0]
        try:
            return call()
        except requests.exceptions.ConnectTimeout:
            raise MetiConnectionError(
                f"timed out connecting after {self._timeout} s",
                method=method,
                path=path,
                request_sent=False,
            ) from None
        except (_BodyTimeout, requests.exceptions.Timeout):
            raise MetiConnectionError(
                f"no complete response within {self._timeout} s",
                method=method,
                path=path,
                request_sent=True,
            ) from None
        except requests.exceptions.SSLError as error:
            raise MetiApiError(
                f"TLS verification failed: {_root_cause(error)}", method=method, path=path
            ) from None
        except requests.exceptions.ConnectionError as error:
            raise MetiConnectionError(
                f"connection failed: {_root_cause(error)}",
                method=method,
                path=path,
                request_sent=_request_may_have_been_sent(error),
            ) from None
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.DecodeError,
        ) as error:
            # The server answered, but the body broke off or cannot be decoded.
            raise MetiConnectionError(
                f"the response could not be read: {_root_cause(error)}",
                method=method,
                path=path,
                request_sent=True,
            ) from None
        except requests.exceptions.RequestException as error:
            # E.g. a redirect loop or a redirect to a URL requests cannot follow.
            raise MetiApiError(
                f"request failed: {_root_cause(error)}", method=method, path=path
            ) from None

    def _redacted(self, text: str) -> str:
        secrets = (*self._token_source.secrets(), *self._tokens.recent())
        return redact(text, secrets)


def raise_for_reply(
    reply: Reply, status: int, method: str, endpoint: str, redacted: Callable[[str], str]
) -> None:
    """Raise for an error reply, once any 401 has had its renewal and replay.

    Takes the same arguments as :func:`api_error`.
    """
    if status == 401:
        raise MetiAuthError(
            f"{method} {endpoint} was refused with a freshly issued token (HTTP 401): "
            f"{error_message(reply, redacted)}"
        )
    if status >= 400:
        raise api_error(reply, status, method, endpoint, redacted)


def api_error(
    reply: Reply, status: int, method: str, endpoint: str, redacted: Callable[[str], str]
) -> MetiApiError:
    """The error for an error reply (``MetiNotFoundError`` for 404), in the server's words.

    A FastAPI validation error keeps its items in ``details``; a 403 names the missing
    scope when the server says which.

    :param reply: the reply, its body read
    :param status: its HTTP status
    :param method: the request's method
    :param endpoint: the request's path
    :param redacted: removes secrets from the server's message
    """
    kind = MetiNotFoundError if status == 404 else MetiApiError
    message = error_message(reply, redacted)
    if status == 403:
        scope = missing_scope(reply)
        if scope and scope not in message:
            message += f" (missing scope: {redacted(scope)})"
    try:
        details = redacted_details(reply.json(), redacted)
    except ValueError:
        details = []
    return kind(
        message,
        status_code=status,
        method=method,
        path=endpoint,
        retry_after=retry_after_seconds(reply),
        details=details,
    )


def json_body(
    reply: Reply, status: int, method: str, endpoint: str, redacted: Callable[[str], str]
) -> Any:
    """A reply's JSON body (None when empty); ``MetiApiError`` when it is not JSON."""
    if not reply.content:
        return None
    try:
        return _decode_json(reply)
    except ValueError:
        raise MetiApiError(
            f"expected a JSON body, got {content_summary(reply, redacted)}",
            status_code=status,
            method=method,
            path=endpoint,
        ) from None


def request_name(method: str, endpoint: str, params: Mapping[str, Any] | None) -> str:
    """Names one request for its retry budget: method, path and query."""
    if not params:
        return f"{method} {endpoint}"
    query = "&".join(f"{key}={value}" for key, value in sorted(params.items()))
    return f"{method} {endpoint}?{query}"


def retry_rule(method: str) -> Callable[[BaseException], bool]:
    """Which failures a request may be retried on: any retryable one for an idempotent
    method; for POST and PATCH only those the server cannot have acted on."""
    return is_retryable if method in IDEMPOTENT_METHODS else retryable_unprocessed


def retryable_unprocessed(error: BaseException) -> bool:
    """True for a retryable failure the server cannot have acted on."""
    return is_retryable(error) and not may_have_been_processed(error)


def _decode_json(response: Reply) -> Any:
    """The parsed body.

    In a task process, where Airflow keeps ~10^5 objects alive, the garbage collections that
    ``json.loads`` triggers doubled the cost of decoding a 1,000-source page; msgspec's
    decoder is about as quick as ``json.loads`` with the collector paused, and pauses
    nothing. What it refuses (a byte-order mark, another charset, ``NaN``) goes to requests'
    own decoding, which judges it as before.
    """
    if _fast_decode is not None:
        try:
            return _fast_decode(response.content)
        except ValueError:
            pass
    return response.json()


def _read_body(response: requests.Response, ends: float) -> None:
    """Read the whole body into ``response`` before ``ends`` (a ``time.monotonic()``).

    Each read waits at most until ``ends``: a body trickled byte by byte cannot stretch
    the request past its timeout, as a per-read timeout would let it. The bytes are read as
    sent and decoded (``Content-Encoding``) between reads: a decoding read would go on
    receiving, each receive with the whole time left, until something decoded, so a trickled
    gzip header could outlast the deadline; and decoding as the bytes come keeps the
    decoding inside the deadline too.
    """
    raw = response.raw
    # read1 (urllib3 2) returns what one receive brought; urllib3 1's read waits for a
    # whole chunk, so there only the per-receive timeout below bounds a trickle.
    read = getattr(raw, "read1", None) or raw.read
    decoder = _BodyDecoder(raw)
    parts = []
    while True:
        left = ends - time.monotonic()
        if left <= 0:
            raise _BodyTimeout
        # Asked afresh each time: once the last byte is read, urllib3 hands the connection
        # back to the pool, where another thread may take it or close its socket.
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        if isinstance(sock, socket.socket):
            sock.settimeout(left)
        try:
            chunk = read(READ_SIZE, decode_content=False)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise _BodyTimeout from None
        if not chunk:
            break
        parts.append(decoder.feed(chunk))
    parts.append(decoder.end())
    response._content = b"".join(parts)
    response._content_consumed = True  # type: ignore[attr-defined]


class _BodyDecoder:
    """Decodes a body as its ``Content-Encoding`` says, a part at a time, by urllib3's own
    decoders (the ones a decoding read uses: gzip, deflate, and br or zstd where their
    packages are installed), used directly: urllib3 refuses raw reads once its response has
    decoded anything itself."""

    def __init__(self, raw: Any) -> None:
        headers = getattr(raw, "headers", None) or {}
        encoding = headers.get("content-encoding", "").strip().lower()
        self._raw = None if encoding in ("", "identity") else raw
        self._decoder: Any = None
        self._fed = False

    def feed(self, data: bytes) -> bytes:
        if self._raw is None:
            return data
        if not self._fed:
            self._raw._init_decoder()
            self._decoder = self._raw._decoder  # None for an encoding urllib3 cannot decode
            self._fed = True
        if self._decoder is None:
            return data
        return self._decoding(lambda: self._decoder.decompress(data))

    def end(self) -> bytes:
        """What the decoder still holds, once the last byte is in."""
        if self._decoder is None:
            return b""
        return self._decoding(lambda: self._decoder.decompress(b"") + self._decoder.flush())

    def _decoding(self, decode: Callable[[], bytes]) -> bytes:
        try:
            return bytes(decode())
        except self._raw.DECODER_ERROR_CLASSES as error:  # type: ignore[union-attr]
            encoding = self._raw.headers.get("content-encoding", "")  # type: ignore[union-attr]
            raise urllib3.exceptions.DecodeError(
                f"Received response with content-encoding: {encoding}, but failed to decode it.",
                error,
            ) from error


def _root_cause(error: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the URL noise."""
    cause: BaseException = error
    while True:
        inner = getattr(cause, "reason", None) or cause.__context__ or cause.__cause__
        if not isinstance(inner, BaseException) or inner is cause:
            break
        cause = inner
    if isinstance(cause, requests.exceptions.RequestException) and cause.args:
        first = cause.args[0]
        if isinstance(first, BaseException):
            cause = first
    name = type(cause).__name__
    text = str(cause).split(": ", 1)[-1] if "Connection" in name else str(cause)
    return f"{name}: {text}" if text else name


def _request_may_have_been_sent(error: requests.exceptions.ConnectionError) -> bool:
    """False only when the connection was never established."""
    text = repr(error)
    never_connected = ("NewConnectionError", "ConnectTimeoutError", "NameResolutionError")
    return not any(marker in text for marker in never_connected)
