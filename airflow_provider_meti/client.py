"""MetiClient: the METI API's endpoints over one ``requests.Session``, with no Airflow in sight.

The one public entry point. It says what each endpoint means (sources, pages, create,
delete); ``transport`` sends the requests (token, 401 replay, retries), ``replies`` reads
the answers and ``create`` coordinates many POSTs. It can be used from a hook, a benchmark
or a plain script.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

from airflow_provider_meti import geojson
from airflow_provider_meti.api import API_V1, ApiVersion
from airflow_provider_meti.auth import TokenSource
from airflow_provider_meti.create import (
    Batch,
    BatchCreator,
    CreateProgress,
    Resume,
    find_stored,
    lanes_of_batches,
    partial_error,
    unconfirmed_error,
)
from airflow_provider_meti.create_errors import named_rejection
from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiConfigError,
    MetiNotFoundError,
    MetiPartialCreateError,
)
from airflow_provider_meti.lanes import overlap_lanes
from airflow_provider_meti.replies import created_ids, source_object, unwrap_page
from airflow_provider_meti.retries import CallBudget, may_have_been_processed
from airflow_provider_meti.settings import ClientSettings
from airflow_provider_meti.source_fields import (
    SourceFields,
    checked_fields,
    fields_key,
    fields_of_features,
)
from airflow_provider_meti.token_cache import HostTokenCache
from airflow_provider_meti.transport import Transport, request_name

_read_raw_page: Callable[[bytes], tuple[Sequence[dict[str, Any]], int | None] | None] | None
try:  # installed with every supported Airflow line; without it every page is decoded
    from airflow_provider_meti.raw_pages import detached
    from airflow_provider_meti.raw_pages import read_raw_page as _read_raw_page
except ImportError:  # pragma: no cover
    _read_raw_page = None

__all__ = ["ClientSettings", "MetiClient"]

log = logging.getLogger(__name__)

# v1 documents no alt_id filter on GET /sources, so finding what a lost create stored is one
# scan of the account's listing, in the largest pages the API serves; v2 documents the filter,
# so it is one filtered GET per feature.
LOOKUP_PAGE_SIZE = 1000
# Beyond this many features (a re-run's skip_existing over a large collection), one scan of
# the listing costs fewer requests than one filtered GET per feature.
FILTERED_LOOKUP_MAX = 100


class MetiClient:
    """A thread-safe client for one METI account.

    :param settings: connection settings
    :param token_source: how to obtain tokens (see ``airflow_provider_meti.auth``)
    :param api: the API generation to speak
    :param on_new_token: called with each new token (e.g. Airflow's ``mask_secret``)
    :param host_cache: the token shared by this host's processes
        (``token_cache.HostTokenCache``; None: this client's own)
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
        host_cache: HostTokenCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self._transport = Transport(
            settings,
            token_source,
            on_new_token=on_new_token,
            host_cache=host_cache,
            clock=clock,
            sleep=sleep,
        )
        self.settings = settings
        self.api = api
        self._token_source = token_source

    def __repr__(self) -> str:
        return f"MetiClient(base_url={self.settings.base_url!r}, api_version={self.api.number})"

    def __enter__(self) -> MetiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._transport.close()

    def get_token(self) -> str:
        """A valid bearer token, fetched on first use and renewed shortly before expiry."""
        return self._transport.token(self._transport.new_budget())

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
        the server cannot have acted on them (connection refused, 429, 503). On a sandbox
        connection, a source route (``/sources...``) goes to the sandbox's.
        """
        budget = self._transport.new_budget()
        endpoint = self.api.routed(endpoint)
        return self._transport.request(method, endpoint, budget, params=params, json=json)

    # Sources

    def get_source(self, source_id: str) -> dict[str, Any]:
        """One source; ``MetiNotFoundError`` when it does not exist."""
        path, params = self.api.source_route(source_id)
        return source_object(self.request("GET", path, params=params), path)

    def iter_sources(self, *, page_size: int = 100, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every source matching ``filters``, fetched page by page (``limit``/``offset``)."""
        for page in self.iter_source_pages(page_size=page_size, **filters):
            yield from page

    def iter_source_pages(
        self, *, page_size: int = 100, **filters: Any
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of sources until the server returns an empty page or the reply's ``total`` is
        reached (one retry budget a page). A server may serve fewer than ``page_size``
        sources a page (METI documents no maximum ``limit``): a short page is not the end."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise MetiConfigError(f"page_size must be a positive integer, got {page_size!r}.")
        query = {key: value for key, value in filters.items() if value is not None}
        return self._decoded_pages(query, page_size, self._transport.new_budget)

    def iter_raw_source_pages(
        self, *, page_size: int = 100, **filters: Any
    ) -> Iterator[Sequence[dict[str, Any]]]:
        """Pages as ``iter_source_pages`` fetches them, for a writer that copies sources
        through: a page msgspec can read as it is comes as a ``raw_pages.RawPage`` (a
        sequence, not a list), each source decoded as it is read and its values still JSON
        text (``msgspec.Raw``, names not yet normalised); any other page as decoded
        sources."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise MetiConfigError(f"page_size must be a positive integer, got {page_size!r}.")
        query = {key: value for key, value in filters.items() if value is not None}
        return self._pages(query, page_size, self._transport.new_budget, raw=True)

    def _decoded_pages(
        self,
        query: Mapping[str, Any],
        page_size: int,
        budget_for_page: Callable[[], CallBudget],
    ) -> Iterator[list[dict[str, Any]]]:
        # Not raw: every page is a list of decoded sources.
        return cast(
            "Iterator[list[dict[str, Any]]]", self._pages(query, page_size, budget_for_page)
        )

    def _pages(
        self,
        query: Mapping[str, Any],
        page_size: int,
        budget_for_page: Callable[[], CallBudget],
        *,
        raw: bool = False,
    ) -> Iterator[Sequence[dict[str, Any]]]:
        offset = 0
        previous_first: dict[str, Any] | None = None
        path = self.api.sources_path
        while True:
            params = {**query, "limit": page_size, "offset": offset}
            if raw and _read_raw_page is not None:
                page, total = self._raw_page(path, budget_for_page(), params)
            else:
                # No name for the reply body: it would keep this page alive during the next
                # fetch.
                page, total = unwrap_page(
                    self._transport.request("GET", path, budget_for_page(), params=params)
                )
            # Paging goes on past short pages, so a server that ignores 'offset' must be caught
            # by what it repeats: the whole first source, as sources may lack an 'id'.
            first, count = (page[0] if page else None), len(page)
            if first is not None and first == previous_first:
                raise MetiApiError(
                    f"the server returned the same page for offset {offset} as for the one "
                    "before: it seems to ignore 'offset'",
                    method="GET",
                    path="/sources",
                )
            if page:
                yield page
                # A raw source's values point into its reply body: kept as they are, the
                # previous page's whole body would stay alive during the next fetch.
                previous_first = detached(first) if raw and _read_raw_page else first
            # Let go of this page before asking for the next: one page in memory, not two.
            # 'first' too: a raw source's values point into the whole reply body.
            del page, first
            offset += count
            if count == 0 or (total is not None and offset >= total):
                return

    def _raw_page(
        self, path: str, budget: CallBudget, params: Mapping[str, Any]
    ) -> tuple[Sequence[dict[str, Any]], int | None]:
        reply = self._transport.request_reply("GET", path, budget, params=params)
        read = _read_raw_page(reply.content) if reply.content and _read_raw_page else None
        if read is not None:
            return read
        return unwrap_page(self._transport.parse_json(reply, "GET", path))

    def create_sources(
        self,
        feature_collection: Mapping[str, Any] | geojson.ValidFeatureCollection,
        *,
        batch_size: int | None = None,
        max_workers: int | None = None,
        skip_existing: bool = False,
        source_fields: Mapping[str, Any] | None = None,
        resume: Resume | None = None,
        progress: CreateProgress | None = None,
    ) -> list[dict[str, str]]:
        """Register every feature; return one ``{"id", "alt_id"}`` per feature, in input order.

        The collection is validated first (unless it is a ``ValidFeatureCollection``
        already): nothing is sent if any feature is invalid.
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
        :param source_fields: v2's descriptive fields for every feature (``methodology``,
            ``source_type``, ``geometry_source``, ``steward_id``, ``project_id``: text;
            ``attribute_type``, ``tags``: lists of text; ``outcome_reporting_year``: int). A
            feature's ``properties`` may hold the same names, which win for that feature;
            features are sent grouped by their fields, one POST (or series) per group.
        :param resume: what an earlier try recorded: those features are not sent again, and
            only its features in doubt are looked up (instead of ``skip_existing``'s scan)
        :param progress: told before each POST and after each answer is read
        """
        features = list(geojson.validated(feature_collection).features)
        fields = self._fields_by_alt_id(features, source_fields)
        size = self.api.batch_size(batch_size)
        results: dict[str, dict[str, str]] = {}
        pending = features
        if resume is not None:
            results.update(self._resumed(features, resume, progress))
        elif skip_existing:
            results.update(self.find_existing_features(features))
        if results:
            pending = [feature for feature in features if feature["id"] not in results]
            log.info("%d of %d features already exist in METI", len(results), len(features))
        lanes = self._lanes(pending, fields, size)
        creator = BatchCreator(
            post=self._post_features,
            look_up=self._look_up,
            new_budget=self._transport.new_budget,
            total=len(features),
            already=results,
            progress=progress,
            post_path=self.api.sources_path,
        )
        workers = max_workers if max_workers is not None else self.settings.max_workers
        results.update(creator.run(lanes, workers))
        return [results[feature["id"]] for feature in features]

    def _fields_by_alt_id(
        self, features: Sequence[Mapping[str, Any]], source_fields: Mapping[str, Any] | None
    ) -> dict[str, SourceFields]:
        """Each feature's effective descriptive fields; refused on v1 before any request.

        v1 has no descriptive fields: given ones are refused, while a feature's properties
        travel inside the collection as they always did (and are not read as fields).
        """
        defaults = checked_fields(source_fields)
        if not self.api.takes_source_fields:
            if defaults:
                raise MetiConfigError(
                    f"METI API v{self.api.number} has no descriptive source fields "
                    f"({', '.join(sorted(defaults))}); use an API v2 connection or leave "
                    "them unset."
                )
            return {feature["id"]: {} for feature in features}
        effective = fields_of_features(features, defaults)
        return {feature["id"]: item for feature, item in zip(features, effective, strict=True)}

    @staticmethod
    def _lanes(
        features: Sequence[dict[str, Any]], fields: Mapping[str, SourceFields], size: int
    ) -> list[list[Batch]]:
        """Batches per group of equal fields, in input order, gathered into lanes: batches
        with features that overlap in space and time share a lane and go one after another."""
        groups: dict[Any, list[dict[str, Any]]] = {}
        for feature in features:
            groups.setdefault(fields_key(fields[feature["id"]]), []).append(feature)
        batches = [
            Batch(chunk, dict(fields[members[0]["id"]]))
            for members in groups.values()
            for chunk in geojson.batched(members, size)
        ]
        lane_of_feature = {
            features[index]["id"]: lane
            for lane, indexes in enumerate(overlap_lanes(features))
            for index in indexes
        }
        return lanes_of_batches(batches, lane_of_feature)

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
        budget = self._transport.new_budget()
        may_have_deleted = False

        def attempt() -> None:
            nonlocal may_have_deleted
            try:
                self._transport.send("DELETE", path, budget, params=params)
            except MetiNotFoundError:
                if not may_have_deleted:
                    raise
                log.info("DELETE %s: already gone after a lost answer; it was ours", path)
            except MetiApiError as error:
                may_have_deleted = may_have_deleted or may_have_been_processed(error)
                raise

        try:
            budget.run(request_name("DELETE", path, params), attempt)
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
        existing, unconfirmed = self._look_up(features, self._transport.new_budget)
        if unconfirmed:
            raise unconfirmed_error(existing, unconfirmed, len(features))
        return existing

    def _resumed(
        self,
        features: Sequence[Mapping[str, Any]],
        resume: Resume,
        progress: CreateProgress | None,
    ) -> dict[str, dict[str, str]]:
        """The features an earlier try stored: those it recorded, and those of its POSTs in
        flight that the listing shows (looked up here, and only these)."""
        wanted = {feature["id"] for feature in features}
        known = {alt_id: ids for alt_id, ids in resume.recorded.items() if alt_id in wanted}
        in_doubt = set(resume.in_doubt) - known.keys()
        doubtful = [feature for feature in features if feature["id"] in in_doubt]
        if doubtful:
            log.info("Looking up %d features whose create was in flight", len(doubtful))
            try:
                found = self.find_existing_features(doubtful)
            except MetiPartialCreateError as error:
                stored = {**known, **{item["alt_id"]: item for item in error.created}}
                raise partial_error(error, stored, len(features)) from error
            known.update(found)
            if progress is not None and found:
                progress.stored(found)
        return known

    def _look_up(
        self, features: Sequence[Mapping[str, Any]], budget_for_page: Callable[[], CallBudget]
    ) -> tuple[dict[str, dict[str, str]], list[str]]:
        if not self.api.can_filter_by_alt_id or len(features) > FILTERED_LOOKUP_MAX:
            return find_stored(features, self._decoded_pages({}, LOOKUP_PAGE_SIZE, budget_for_page))
        existing: dict[str, dict[str, str]] = {}
        unconfirmed: list[str] = []
        for feature in features:
            # Pages stop being read once the feature is found: one GET per feature.
            pages = self._decoded_pages(
                {"alt_id": feature["id"]}, LOOKUP_PAGE_SIZE, budget_for_page
            )
            found, unknown = find_stored([feature], pages)
            existing.update(found)
            unconfirmed.extend(unknown)
        return existing, unconfirmed

    def _post_features(self, batch: Batch, budget: CallBudget) -> dict[str, dict[str, str]]:
        path = self.api.sources_path
        collection = geojson.as_feature_collection(batch.features)
        if self.api.takes_source_fields:
            body: dict[str, Any] = {"feature_collection": collection, **batch.fields}
        else:
            body = collection
        try:
            response = self._transport.send("POST", path, budget, json=body)
        except MetiApiError as error:
            raise named_rejection(error, batch.features) from error
        return created_ids(self._transport.parse_json(response, "POST", path), batch.features, path)
