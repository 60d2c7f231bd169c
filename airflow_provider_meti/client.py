"""MetiClient: the METI API over one ``requests.Session``, with no Airflow in sight.

The client owns the session, the token (through ``TokenManager``), the retry policy and the
endpoints. It can be used from a hook, a trigger thread, a benchmark or a plain script.
"""

from __future__ import annotations

import gc
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
    redact,
    retry_after_seconds,
)
from airflow_provider_meti.api import API_V1, ApiVersion
from airflow_provider_meti.auth import TokenManager, TokenSource
from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiAuthError,
    MetiConfigError,
    MetiConnectionError,
    MetiNotFoundError,
    MetiPartialCreateError,
)
from airflow_provider_meti.retries import RetryPolicy, is_retryable, may_have_been_processed

log = logging.getLogger(__name__)

ENVELOPE_KEYS = ("data", "sources", "items", "results")
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Up to this many alt_ids are looked up one filtered query each; more, or a server that
# ignores the filter, costs one scan of the listing instead.
FILTERED_LOOKUP_LIMIT = 20


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
    """

    def __init__(
        self,
        settings: ClientSettings,
        token_source: TokenSource,
        *,
        api: ApiVersion = API_V1,
        on_new_token: Callable[[str], None] | None = None,
    ) -> None:
        check_base_url(settings.base_url, allow_insecure_http=settings.allow_insecure_http)
        self.settings = settings
        self.api = api
        self._base_url = settings.base_url
        self._timeout = settings.timeout
        self._token_source = token_source
        self._session = _new_session(settings)
        self._tokens = TokenManager(
            self._fetch_token, margin=settings.token_refresh_margin, on_new_token=on_new_token
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
        return self._tokens.get()

    @property
    def tokens_fetched(self) -> int:
        """How many tokens this client has requested so far."""
        return self._tokens.tokens_fetched

    def _fetch_token(self) -> Any:
        url = self._token_source.token_url
        return self._with_retries(
            lambda: self._guard_network(
                lambda: self._token_source.fetch(self._session, self._timeout), "POST", url
            )
        )

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
        method = method.upper()
        retry_if = is_retryable if method in IDEMPOTENT_METHODS else _retryable_unprocessed
        response = self._with_retries(
            lambda: self._send(method, endpoint, params=params, json=json), retry_if=retry_if
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
        """Pages of sources until the server returns a short page."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise MetiConfigError(f"page_size must be a positive integer, got {page_size!r}.")
        query = {key: value for key, value in filters.items() if value is not None}
        offset = 0
        previous_first_id = None
        while True:
            params = {**query, "limit": page_size, "offset": offset}
            page, total = _unwrap_page(self.request("GET", "/sources", params=params))
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
        before the features it carried are looked up by ``alt_id``, so no duplicate is stored.

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
            results.update(self.find_existing_features(features))
            pending = [feature for feature in features if feature["id"] not in results]
            if results:
                log.info("%d of %d features already exist in METI", len(results), len(features))
        batches = list(geojson.batched(pending, size)) if pending else []
        results.update(self._create_batches(batches, len(features), results))
        return [results[feature["id"]] for feature in features]

    def delete_source(
        self,
        source_id: str | None = None,
        *,
        alt_id: str | None = None,
        missing_ok: bool = False,
    ) -> None:
        """Delete one source by id, or (v2) every source with ``alt_id``."""
        if (source_id is None) == (alt_id is None):
            raise MetiConfigError("Pass exactly one of source_id or alt_id.")
        if source_id is not None:
            path, params = self.api.source_route(source_id)
        else:
            path, params = self.api.delete_by_alt_id_route(str(alt_id))
        try:
            self.request("DELETE", path, params=params)
        except MetiNotFoundError:
            if not missing_ok:
                raise

    def find_sources_by_alt_id(self, alt_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Stored sources for each of ``alt_ids`` (an empty list where there is none)."""
        found: dict[str, list[dict[str, Any]]] = {alt_id: [] for alt_id in alt_ids}
        if 0 < len(found) <= FILTERED_LOOKUP_LIMIT:
            filtered = self._find_with_filter(list(found))
            if filtered is not None:
                return filtered
        for source in self.iter_sources(page_size=1000):
            matches = found.get(source.get("alt_id"))  # type: ignore[arg-type]
            if matches is not None:
                matches.append(source)
        return found

    def find_existing_features(
        self, features: Sequence[Mapping[str, Any]]
    ) -> dict[str, dict[str, str]]:
        """``{alt_id: {"id", "alt_id"}}`` for the features METI already stores.

        A stored source counts as the same feature when its ``alt_id`` and validity window
        match; METI itself never de-duplicates.
        """
        stored = self.find_sources_by_alt_id([feature["id"] for feature in features])
        existing = {}
        for feature in features:
            for source in stored.get(feature["id"], []):
                if _same_window(feature, source):
                    existing[feature["id"]] = {"id": source["id"], "alt_id": feature["id"]}
                    break
        return existing

    # Internals: creating

    def _create_batches(
        self,
        batches: list[list[dict[str, Any]]],
        total: int,
        already: Mapping[str, dict[str, str]],
    ) -> dict[str, dict[str, str]]:
        created: dict[str, dict[str, str]] = {}
        lock = threading.Lock()

        def create(batch: list[dict[str, Any]]) -> None:
            result = self._create_batch(batch)
            with lock:
                created.update(result)

        workers = max(1, min(self.settings.max_workers, len(batches)))
        if workers == 1:
            for batch in batches:
                try:
                    create(batch)
                except MetiApiError as error:
                    raise self._partial(error, {**already, **created}, total) from error
            return created
        with ThreadPoolExecutor(workers, thread_name_prefix="meti-create") as pool:
            futures = [pool.submit(create, batch) for batch in batches]
            _, not_done = wait(futures, return_when=FIRST_EXCEPTION)
            for future in not_done:
                future.cancel()
        failure = _first_failure(futures)
        if failure is not None:
            if isinstance(failure, MetiApiError):
                raise self._partial(failure, {**already, **created}, total) from failure
            raise failure
        return created

    @staticmethod
    def _partial(
        error: MetiApiError, created: Mapping[str, dict[str, str]], total: int
    ) -> MetiApiError:
        if not created or isinstance(error, MetiAuthError):
            return error
        return MetiPartialCreateError(error, list(created.values()), total)

    def _create_batch(self, batch: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        results: dict[str, dict[str, str]] = {}
        pending = batch
        outcome_unknown = False
        for attempt in self.settings.retry.retrying():
            with attempt:
                if outcome_unknown:
                    results.update(self.find_existing_features(pending))
                    pending = [feature for feature in pending if feature["id"] not in results]
                    outcome_unknown = False
                    if not pending:
                        break
                try:
                    results.update(self._post_features(pending))
                except MetiApiError as error:
                    outcome_unknown = may_have_been_processed(error)
                    raise
        return results

    def _post_features(self, features: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        body = geojson.as_feature_collection(features)
        response = self._send("POST", "/sources", json=body)
        return _created_ids(self._parse_json(response, "POST", "/sources"), features)

    def _find_with_filter(self, alt_ids: list[str]) -> dict[str, list[dict[str, Any]]] | None:
        found: dict[str, list[dict[str, Any]]] = {}
        for alt_id in alt_ids:
            sources = list(self.iter_sources(page_size=100, alt_id=alt_id))
            if any(source.get("alt_id") != alt_id for source in sources):
                return None  # the server ignores the filter
            found[alt_id] = sources
        return found

    # Internals: HTTP

    def _with_retries(
        self, call: Callable[[], Any], *, retry_if: Callable[[BaseException], bool] = is_retryable
    ) -> Any:
        for attempt in self.settings.retry.retrying(retry_if=retry_if):
            with attempt:
                return call()
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _send(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> requests.Response:
        """One request with a bearer token; on 401, one renewal and one replay."""
        token = self._tokens.get()
        response = self._send_once(method, endpoint, token, params, json)
        if response.status_code == 401:
            self._tokens.invalidate(token)
            response = self._send_once(method, endpoint, self._tokens.get(), params, json)
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


class _Session(requests.Session):
    """A session whose own ``verify`` (False or a CA bundle path) beats the environment.

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
    """The parsed body, decoded with the cyclic garbage collector paused.

    A page of 1,000 sources is some 30,000 new dicts and lists, none of them in a cycle; in a
    task process, where Airflow keeps ~10^5 objects alive, the collections they trigger made
    decoding a page 8x slower than the decoding itself.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return response.json()
    finally:
        if paused:
            gc.enable()


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


def _first_failure(futures: Sequence[Future[None]]) -> BaseException | None:
    for future in futures:
        if not future.cancelled() and future.exception() is not None:
            return future.exception()
    return None
