"""MetiClient: the METI API over one ``requests.Session``, with no Airflow in sight.

The client owns the session, the token (through ``TokenManager``), the retry policy and the
endpoints. It can be used from a hook, a trigger thread, a benchmark or a plain script.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import requests
import requests.auth
from requests.adapters import HTTPAdapter

from airflow_provider_meti import geojson
from airflow_provider_meti._http import (
    check_base_url,
    content_summary,
    error_message,
    join_url,
    origin,
    redact,
    retry_after_seconds,
)
from airflow_provider_meti.api import API_V1, ApiVersion
from airflow_provider_meti.auth import IssuedToken, TokenManager, TokenSource
from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiAuthError,
    MetiConfigError,
    MetiConnectionError,
    MetiNotFoundError,
    MetiPartialCreateError,
)
from airflow_provider_meti.retries import (
    CallBudget,
    CallCancelled,
    RetryPolicy,
    is_retryable,
    mark_final,
    may_have_been_processed,
)

_fast_decode: Callable[[bytes], Any] | None
try:  # installed with every supported Airflow line; used only when present
    from msgspec.json import Decoder as _JsonDecoder

    _fast_decode = _JsonDecoder().decode
except ImportError:  # pragma: no cover - plain json is the fallback
    _fast_decode = None

log = logging.getLogger(__name__)

ENVELOPE_KEYS = ("data", "sources", "items", "results")
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# METI documents no alt_id filter on GET /sources, so finding what a lost create stored is one
# scan of the account's listing, in the largest pages the API serves.
LOOKUP_PAGE_SIZE = 1000
# How often a thread waiting for parallel creates returns to Python to run signal handlers.
INTERRUPT_CHECK_SECONDS = 0.1
# What a listed source must show for the client to tell that it is one of our features.
COMPARED_FIELDS = ("alt_id", "start_at", "end_at")


@dataclass(frozen=True)
class ClientSettings:
    """How the client talks to METI.

    :param base_url: scheme, host and optional path prefix of the API
    :param timeout: seconds to wait for a connection and for each read
    :param verify: TLS verification: True, False, or the path of a CA bundle
    :param allow_insecure_http: allow plain http:// to a host that is not loopback
    :param token_refresh_margin: renew a token this many seconds before it expires
    :param retry: bounds for retrying a failed request
    :param max_workers: concurrent POSTs when creating many sources
    """

    base_url: str = API_V1.default_base_url
    timeout: float = 30.0
    verify: bool | str = True
    allow_insecure_http: bool = False
    token_refresh_margin: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_workers: int = 4


class MetiClient:
    """A thread-safe client for one METI account.

    :param settings: connection settings
    :param token_source: how to obtain tokens (see ``airflow_provider_meti.auth``)
    :param api: the API generation to speak
    :param on_new_token: called with each new token (e.g. Airflow's ``mask_secret``)
    :param clock: a monotonic clock for retry deadlines and token expiry (tests inject one)
    :param sleep: waits between retries (tests inject one; default: a real, cancellable wait)
    """

    def __init__(
        self,
        settings: ClientSettings,
        token_source: TokenSource,
        *,
        api: ApiVersion = API_V1,
        on_new_token: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        check_base_url(settings.base_url, allow_insecure_http=settings.allow_insecure_http)
        self.settings = settings
        self.api = api
        self._base_url = settings.base_url
        self._timeout = settings.timeout
        self._token_source = token_source
        self._session = _new_session(settings)
        self._clock = clock
        self._sleep = sleep
        self._tokens = TokenManager(
            lambda: self._fetch_token(self._new_budget()),
            margin=settings.token_refresh_margin,
            on_new_token=on_new_token,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"MetiClient(base_url={self._base_url!r}, api_version={self.api.number})"

    def __enter__(self) -> MetiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    # Tokens

    def get_token(self) -> str:
        """A valid bearer token, fetched on first use and renewed shortly before expiry."""
        return self._token(self._new_budget())

    @property
    def tokens_fetched(self) -> int:
        """How many tokens this client has requested so far."""
        return self._tokens.tokens_fetched

    def _token(self, budget: CallBudget) -> str:
        return self._tokens.get(lambda: self._fetch_token(budget))

    def _fetch_token(self, budget: CallBudget) -> IssuedToken:
        url = self._token_source.token_url
        issued: IssuedToken = budget.run(
            f"POST {url}",
            lambda: self._guard_network(
                lambda: self._token_source.fetch(self._session, self._timeout), "POST", url
            ),
        )
        return issued

    def _new_budget(self, cancelled: threading.Event | None = None) -> CallBudget:
        return self.settings.retry.budget(clock=self._clock, sleep=self._sleep, cancelled=cancelled)

    # Generic requests

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send one request and return its parsed JSON body (None for an empty body).

        Idempotent methods are retried on every retryable failure; POST and PATCH only when
        the server cannot have acted on them (connection refused, 429, 503).
        """
        return self._request(method, endpoint, self._new_budget(), params=params, json=json)

    def _request(
        self,
        method: str,
        endpoint: str,
        budget: CallBudget,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        method = method.upper()
        retry_if = is_retryable if method in IDEMPOTENT_METHODS else _retryable_unprocessed
        response = budget.run(
            _request_name(method, endpoint, params),
            lambda: self._send(method, endpoint, budget, params=params, json=json),
            retry_if=retry_if,
        )
        return self._parse_json(response, method, endpoint)

    # Sources

    def get_source(self, source_id: str) -> dict[str, Any]:
        """One source; ``MetiNotFoundError`` when it does not exist."""
        path, params = self.api.source_route(source_id)
        source = self.request("GET", path, params=params)
        if not isinstance(source, dict):
            raise MetiApiError(
                f"expected a source object, got {type(source).__name__}",
                method="GET",
                path=path,
            )
        return source

    def iter_sources(self, *, page_size: int = 100, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every source matching ``filters``, fetched page by page (``limit``/``offset``)."""
        for page in self.iter_source_pages(page_size=page_size, **filters):
            yield from page

    def iter_source_pages(
        self, *, page_size: int = 100, **filters: Any
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of sources until the server returns a short page (one retry budget a page)."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise MetiConfigError(f"page_size must be a positive integer, got {page_size!r}.")
        query = {key: value for key, value in filters.items() if value is not None}
        return self._pages(query, page_size, self._new_budget)

    def _pages(
        self, query: Mapping[str, Any], page_size: int, budget_for_page: Callable[[], CallBudget]
    ) -> Iterator[list[dict[str, Any]]]:
        offset = 0
        previous_first_id = None
        while True:
            params = {**query, "limit": page_size, "offset": offset}
            # No name for the reply body: it would keep this page alive during the next fetch.
            page, total = _unwrap_page(
                self._request("GET", "/sources", budget_for_page(), params=params)
            )
            first_id, count = (page[0].get("id") if page else None), len(page)
            if first_id is not None and first_id == previous_first_id:
                raise MetiApiError(
                    f"the server returned the same page for offset {offset} as for the one "
                    "before: it seems to ignore 'offset'",
                    method="GET",
                    path="/sources",
                )
            if page:
                yield page
                previous_first_id = first_id
            # Let go of this page before asking for the next: one page in memory, not two.
            del page
            offset += count
            if count < page_size or (total is not None and offset >= total):
                return

    def create_sources(
        self,
        feature_collection: Mapping[str, Any],
        *,
        batch_size: int | None = None,
        max_workers: int | None = None,
        skip_existing: bool = False,
    ) -> list[dict[str, str]]:
        """Register every feature; return one ``{"id", "alt_id"}`` per feature, in input order.

        The collection is validated first: nothing is sent if any feature is invalid.
        A POST whose outcome is unknown (connection lost after sending, 5xx) is not re-sent
        before the listing shows which of its features were stored, so no duplicate is
        stored; where the listing cannot show it, ``MetiPartialCreateError`` names them.
        Each batch has its own retry budget. If the calling thread is interrupted (a task
        timeout, SIGTERM), no further POST starts and ``MetiPartialCreateError`` lists what
        was created.

        :param batch_size: features per POST (v1 accepts one)
        :param max_workers: concurrent POSTs (default from the settings)
        :param skip_existing: look every feature up first and create only the missing ones;
            for re-running a create that may have stored part of the collection
        """
        features = geojson.validate_feature_collection(feature_collection)
        size = self.api.batch_size(batch_size)
        results: dict[str, dict[str, str]] = {}
        pending = features
        if skip_existing:
            existing, unconfirmed = self._look_up(features, self._new_budget)
            if unconfirmed:
                raise _unconfirmed_error(existing, unconfirmed, len(features))
            results.update(existing)
            pending = [feature for feature in features if feature["id"] not in results]
            if results:
                log.info("%d of %d features already exist in METI", len(results), len(features))
        batches = list(geojson.batched(pending, size)) if pending else []
        workers = max_workers if max_workers is not None else self.settings.max_workers
        results.update(self._create_batches(batches, len(features), results, workers))
        return [results[feature["id"]] for feature in features]

    def delete_source(
        self,
        source_id: str | None = None,
        *,
        alt_id: str | None = None,
        missing_ok: bool = False,
    ) -> None:
        """Delete one source by id, or (v2) every source with ``alt_id``.

        A 404 on a retry of a DELETE whose answer was lost counts as done: the first
        attempt deleted it. An empty id (or ``"None"``) is refused before any request.
        """
        if (source_id is None) == (alt_id is None):
            raise MetiConfigError("Pass exactly one of source_id or alt_id.")
        if source_id is not None:
            path, params = self.api.source_route(source_id)
        else:
            path, params = self.api.delete_by_alt_id_route(alt_id)  # type: ignore[arg-type]
        budget = self._new_budget()
        may_have_deleted = False

        def attempt() -> None:
            nonlocal may_have_deleted
            try:
                self._send("DELETE", path, budget, params=params)
            except MetiNotFoundError:
                if not may_have_deleted:
                    raise
                log.info("DELETE %s: already gone after a lost answer; it was ours", path)
            except MetiApiError as error:
                may_have_deleted = may_have_deleted or may_have_been_processed(error)
                raise

        try:
            budget.run(_request_name("DELETE", path, params), attempt)
        except MetiNotFoundError:
            if not missing_ok:
                raise

    def find_existing_features(
        self, features: Sequence[Mapping[str, Any]]
    ) -> dict[str, dict[str, str]]:
        """``{alt_id: {"id", "alt_id"}}`` for the features METI already stores.

        A stored source counts as the same feature when its ``alt_id`` and validity window
        match; METI itself never de-duplicates. One scan of the listing; each page has its
        own retry budget. Raises ``MetiPartialCreateError`` (nothing created, the features
        unconfirmed) when the listing lacks the fields to tell.
        """
        existing, unconfirmed = self._look_up(features, self._new_budget)
        if unconfirmed:
            raise _unconfirmed_error(existing, unconfirmed, len(features))
        return existing

    # Internals: creating

    def _look_up(
        self, features: Sequence[Mapping[str, Any]], budget_for_page: Callable[[], CallBudget]
    ) -> tuple[dict[str, dict[str, str]], list[str]]:
        """Which ``features`` METI stores, and which the listing cannot confirm or rule out.

        One scan of the listing, stopped early once every feature is found.
        """
        wanted = {feature["id"]: feature for feature in features}
        existing: dict[str, dict[str, str]] = {}
        provable = True
        for page in self._pages({}, LOOKUP_PAGE_SIZE, budget_for_page):
            for source in page:
                if not all(source.get(name) for name in COMPARED_FIELDS):
                    provable = False
                    continue
                alt_id = source["alt_id"]
                feature = wanted.get(alt_id)
                if feature is not None and alt_id not in existing and _same_window(feature, source):
                    existing[alt_id] = {"id": source["id"], "alt_id": alt_id}
            if len(existing) == len(wanted):
                return existing, []
        unconfirmed = [] if provable else [alt_id for alt_id in wanted if alt_id not in existing]
        return existing, unconfirmed

    def _create_batches(
        self,
        batches: list[list[dict[str, Any]]],
        total: int,
        already: Mapping[str, dict[str, str]],
        max_workers: int,
    ) -> dict[str, dict[str, str]]:
        created: dict[str, dict[str, str]] = {}
        lock = threading.Lock()
        cancelled = threading.Event()

        def record(result: Mapping[str, dict[str, str]]) -> None:
            with lock:
                created.update(result)

        def create(batch: list[dict[str, Any]]) -> None:
            if not cancelled.is_set():
                self._create_batch(batch, self._new_budget(cancelled), record)

        def report(error: BaseException) -> BaseException:
            with lock:
                so_far = {**already, **created}
            return _partial(error, so_far, total)

        workers = max(1, min(max_workers, len(batches)))
        if workers == 1:
            for batch in batches:
                try:
                    create(batch)
                except BaseException as error:
                    raise report(error) from error
            return created
        pool = ThreadPoolExecutor(workers, thread_name_prefix="meti-create")
        try:
            futures = [pool.submit(create, batch) for batch in batches]
            _wait_interruptibly(futures)
        except BaseException as interrupt:  # a task timeout or SIGTERM in this thread
            cancelled.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise report(interrupt) from interrupt
        cancelled.set()  # after a failure: stop the other batches' retries, start no more
        pool.shutdown(wait=True, cancel_futures=True)
        failure = _first_failure(futures)
        if failure is not None:
            raise report(failure) from failure
        return created

    def _create_batch(
        self,
        batch: list[dict[str, Any]],
        budget: CallBudget,
        record: Callable[[Mapping[str, dict[str, str]]], None],
    ) -> None:
        """POST one batch; after an ambiguous failure, look up what it stored first."""
        pending = batch
        outcome_unknown: MetiApiError | None = None

        def attempt() -> None:
            nonlocal pending, outcome_unknown
            if outcome_unknown is not None:
                existing, unconfirmed = self._look_up(pending, lambda: budget)
                record(existing)
                if unconfirmed:
                    raise mark_final(_unconfirmed_error(existing, unconfirmed, len(batch)))
                pending = [feature for feature in pending if feature["id"] not in existing]
                outcome_unknown = None
                if not pending:
                    return
            try:
                record(self._post_features(pending, budget))
            except MetiApiError as error:
                outcome_unknown = error if may_have_been_processed(error) else None
                raise

        budget.run(f"POST /sources [{batch[0]['id']}]", attempt)

    def _post_features(
        self, features: list[dict[str, Any]], budget: CallBudget
    ) -> dict[str, dict[str, str]]:
        body = geojson.as_feature_collection(features)
        response = self._send("POST", "/sources", budget, json=body)
        return _created_ids(self._parse_json(response, "POST", "/sources"), features)

    # Internals: HTTP

    def _send(
        self,
        method: str,
        endpoint: str,
        budget: CallBudget,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> requests.Response:
        """One request with a bearer token; on 401, one renewal and one replay."""
        token = self._token(budget)
        response = self._send_once(method, endpoint, token, params, json)
        if response.status_code == 401:
            self._tokens.invalidate(token)
            response = self._send_once(method, endpoint, self._token(budget), params, json)
            if response.status_code == 401:
                raise MetiAuthError(
                    f"{method} {endpoint} was refused with a freshly issued token (HTTP 401): "
                    f"{self._redacted(error_message(response))}"
                )
        if response.status_code >= 400:
            raise self._api_error(response, method, endpoint)
        return response

    def _send_once(
        self,
        method: str,
        endpoint: str,
        token: str,
        params: Mapping[str, Any] | None,
        json: Any,
    ) -> requests.Response:
        url = join_url(self._base_url, endpoint)
        auth = _BearerAuth(token)
        started = time.perf_counter()
        response: requests.Response = self._guard_network(
            lambda: self._session.request(
                method, url, params=params, json=json, auth=auth, timeout=self._timeout
            ),
            method,
            endpoint,
        )
        if log.isEnabledFor(logging.DEBUG):
            elapsed_ms = (time.perf_counter() - started) * 1000
            log.debug("%s %s -> %d in %.1f ms", method, endpoint, response.status_code, elapsed_ms)
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
        except requests.exceptions.Timeout:
            raise MetiConnectionError(
                f"no response within {self._timeout} s",
                method=method,
                path=path,
                request_sent=True,
            ) from None
        except RedirectRefused as error:
            raise MetiApiError(str(error), method=method, path=path) from None
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

    def _api_error(self, response: requests.Response, method: str, endpoint: str) -> MetiApiError:
        kind = MetiNotFoundError if response.status_code == 404 else MetiApiError
        return kind(
            self._redacted(error_message(response)),
            status_code=response.status_code,
            method=method,
            path=endpoint,
            retry_after=retry_after_seconds(response),
        )

    def _parse_json(self, response: requests.Response, method: str, endpoint: str) -> Any:
        if not response.content:
            return None
        try:
            return _decode_json(response)
        except ValueError:
            raise MetiApiError(
                f"expected a JSON body, got {self._redacted(content_summary(response))}",
                status_code=response.status_code,
                method=method,
                path=endpoint,
            ) from None

    def _redacted(self, text: str) -> str:
        secrets = (*self._token_source.secrets(), self._tokens.current() or "")
        return redact(text, secrets)


class RedirectRefused(requests.exceptions.RequestException):
    """The API redirected a request to another scheme, host or port."""


class _Session(requests.Session):
    """A session that follows redirects only within one origin, and whose own ``verify``
    (False or a CA bundle path) beats the environment.

    A redirect to another host would carry the request (and its body) there; requests drops
    the bearer header on the way, but the request still goes out. So it is refused.

    With ``trust_env`` (kept for proxy settings) requests lets ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE`` replace a session's CA bundle, which would silently ignore the
    connection's ``verify`` extra.

    It also reads those environment settings once per scheme and host, not on every request:
    requests scans ``os.environ`` twice per request for proxies, some 75 µs, a sixth of the
    CPU of a small call. (Like httpx, which reads them once per client.)
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment_by_origin: dict[str, Any] = {}

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        # Called for every redirect before it is followed: the one place to refuse it.
        target, source = str(prepared_request.url), str(response.request.url)
        if origin(target) != origin(source):
            shown = "{}://{}:{}".format(*origin(target))
            raise RedirectRefused(
                f"refused to follow a redirect (HTTP {response.status_code}) to another host, "
                f"{shown}; only redirects within the METI base URL's host are followed"
            )
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        if proxies or stream is not None or verify is not None or cert is not None:
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        else:  # what every call of the client passes
            merged = self._environment_of(url)
        if verify is None and self.verify is not True:
            merged["verify"] = self.verify
        return merged

    def _environment_of(self, url: str) -> Any:
        origin = "/".join(url.split("/", 3)[:3])  # scheme://host:port: all that proxies use
        cached = self._environment_by_origin.get(origin)
        if cached is None:
            cached = super().merge_environment_settings(url, {}, None, None, None)
            self._environment_by_origin[origin] = cached
        return {**cached, "proxies": dict(cached["proxies"])}


def _new_session(settings: ClientSettings) -> requests.Session:
    session = _Session()
    # Retries are ours (tenacity); urllib3 must not retry behind our back.
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(10, settings.max_workers * 2))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = settings.verify
    session.headers["User-Agent"] = "airflow-provider-meti"
    return session


class _BearerAuth(requests.auth.AuthBase):
    """Sets the bearer header; passed as ``auth`` so that a .netrc entry cannot replace it."""

    __slots__ = ("_header",)

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request


def _decode_json(response: requests.Response) -> Any:
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


def _partial(
    error: BaseException, created: Mapping[str, dict[str, str]], total: int
) -> BaseException:
    """``error`` as a ``MetiPartialCreateError`` listing ``created``, when anything was."""
    if isinstance(error, MetiPartialCreateError):
        return MetiPartialCreateError(
            error.cause, list(created.values()), total, unconfirmed=error.unconfirmed
        )
    if not created or isinstance(error, MetiAuthError):
        return error
    return MetiPartialCreateError(error, list(created.values()), total)


def _unconfirmed_error(
    found: Mapping[str, dict[str, str]], unconfirmed: list[str], total: int
) -> MetiPartialCreateError:
    cause = MetiApiError(
        "a create's answer was lost, and METI's listing shows no alt_id, start_at or end_at "
        "for some sources, so it cannot show whether these features were stored; they were "
        "not sent again",
        method="GET",
        path="/sources",
    )
    return MetiPartialCreateError(cause, list(found.values()), total, unconfirmed=unconfirmed)


def _request_name(method: str, endpoint: str, params: Mapping[str, Any] | None) -> str:
    """Names one request for its retry budget: method, path and query."""
    if not params:
        return f"{method} {endpoint}"
    query = "&".join(f"{key}={value}" for key, value in sorted(params.items()))
    return f"{method} {endpoint}?{query}"


def _retryable_unprocessed(error: BaseException) -> bool:
    return is_retryable(error) and not may_have_been_processed(error)


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


def _unwrap_page(body: Any) -> tuple[list[dict[str, Any]], int | None]:
    """The list of sources in a listing response, and the total when the server gives one."""
    if isinstance(body, list):
        return _source_objects(body), None
    if isinstance(body, dict):
        for key in ENVELOPE_KEYS:
            if isinstance(body.get(key), list):
                total = body.get("total")
                return _source_objects(body[key]), total if isinstance(total, int) else None
    raise MetiApiError(
        "expected a JSON array of sources or an object holding one under "
        f"{', '.join(ENVELOPE_KEYS)}; got {type(body).__name__}",
        method="GET",
        path="/sources",
    )


def _source_objects(items: list[Any]) -> list[dict[str, Any]]:
    """``items`` when every one is a JSON object, as a source must be."""
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise MetiApiError(
                f"expected a list of source objects, but item {index} of the page is "
                f"{type(item).__name__}",
                method="GET",
                path="/sources",
            )
    return items


def _created_ids(body: Any, features: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Map a create response to the features it answers, by ``alt_id``."""
    alt_ids = [feature["id"] for feature in features]
    if isinstance(body, dict) and isinstance(body.get("id"), str) and len(features) == 1:
        return {alt_ids[0]: {"id": body["id"], "alt_id": alt_ids[0]}}
    items = body if isinstance(body, list) else None
    if isinstance(body, dict):
        items = next((body[key] for key in ENVELOPE_KEYS if isinstance(body.get(key), list)), None)
    if items is None:
        raise MetiApiError(
            f"unrecognised create response for {len(features)} feature(s): expected "
            '{"id": ...} for one feature or a list of {"id", "alt_id"} objects',
            method="POST",
            path="/sources",
        )
    created: dict[str, dict[str, str]] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            alt_id = item.get("alt_id", alt_ids[0] if len(features) == 1 else None)
            if isinstance(alt_id, str) and alt_id in alt_ids:
                created[alt_id] = {"id": item["id"], "alt_id": alt_id}
    missing = [alt_id for alt_id in alt_ids if alt_id not in created]
    if missing:
        shown = ", ".join(repr(alt_id) for alt_id in missing[:10])
        raise MetiApiError(
            f"the create response names no source id for {len(missing)} feature(s): {shown}",
            method="POST",
            path="/sources",
        )
    return created


def _same_window(feature: Mapping[str, Any], source: Mapping[str, Any]) -> bool:
    properties = feature.get("properties") or {}
    try:
        return geojson.parse_timestamp(source["start_at"]) == geojson.parse_timestamp(
            properties["start_at"]
        ) and geojson.parse_timestamp(source["end_at"]) == geojson.parse_timestamp(
            properties["end_at"]
        )
    except (KeyError, TypeError, ValueError):
        return False


def _wait_interruptibly(futures: Sequence[Future[None]]) -> None:
    """Wait until every future is done or one failed, returning to Python now and then.

    A process-directed signal (SIGALRM of a task timeout, SIGTERM) may land on a worker
    thread; the main thread runs its handler only between bytecodes, so it must not block
    in one long wait, or the handler would run only after every batch had been sent.
    """
    pending: set[Future[None]] = set(futures)
    while pending:
        done, pending = wait(pending, timeout=INTERRUPT_CHECK_SECONDS, return_when=FIRST_EXCEPTION)
        if any(not future.cancelled() and future.exception() is not None for future in done):
            return


def _first_failure(futures: Sequence[Future[None]]) -> BaseException | None:
    """The first batch's error, not counting batches stopped because another failed."""
    errors = [future.exception() for future in futures if not future.cancelled()]
    real = [error for error in errors if error is not None]
    return next((error for error in real if not isinstance(error, CallCancelled)), None)
