"""Operators for the METI API: a generic call, and creating, reading, listing, deleting sources.

Longer than most modules here on purpose: like the apache providers, one module holds an
integration's operators, and users import every one of them from this path. What they
share is elsewhere (the hook; writers in ``outputs``; OpenLineage facets in ``openlineage``,
imported only when Airflow's OpenLineage provider asks for them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_meti import geojson
from airflow_provider_meti._compat import AirflowException, BaseOperator, Context, ObjectStoragePath
from airflow_provider_meti.exceptions import MetiConfigError, MetiPartialCreateError
from airflow_provider_meti.hooks.meti import MetiHook, MetiHookMixin
from airflow_provider_meti.outputs.features import (
    compact_json,
    source_to_feature,
    write_features,
)
from airflow_provider_meti.outputs.formats import (
    check_output_format,
    require_writer,
    resolve_output_format,
    write_extract,
)
from airflow_provider_meti.outputs.progress import ProgressLog

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_meti.create import Resume
    from airflow_provider_meti.create_state import TaskStateProgress

__all__ = [
    "MetiCreateSourcesOperator",
    "MetiDeleteSourceOperator",
    "MetiGetSourceOperator",
    "MetiListSourcesOperator",
    "MetiOperator",
    "source_to_feature",
    "write_features",
]
TOKEN_ENDPOINTS = frozenset({"token", "oauth/token"})
DEFAULT_MAX_XCOM_BYTES = 1_000_000
"""Most JSON bytes of sources ``MetiListSourcesOperator`` returns through XCom."""


class MetiOperator(MetiHookMixin, BaseOperator):
    """Calls any METI endpoint and returns the parsed JSON (optionally filtered).

    The result goes to XCom: use ``response_filter`` to keep it small.

    :param endpoint: path relative to the connection's base URL, e.g. ``/sources``
    :param method: the HTTP method
    :param request_params: query parameters (``params`` is taken by Airflow for Jinja params)
    :param data: the JSON body
    :param response_filter: called with the parsed JSON; its result is returned instead
    :param meti_conn_id: the Airflow connection id
    """

    template_fields: Sequence[str] = ("endpoint", "request_params", "data", "meti_conn_id")
    template_fields_renderers = {"request_params": "json", "data": "json"}

    def __init__(
        self,
        *,
        endpoint: str,
        method: str = "GET",
        request_params: Mapping[str, Any] | None = None,
        data: Any = None,
        response_filter: Callable[[Any], Any] | None = None,
        meti_conn_id: str = MetiHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.method = method
        self.request_params = request_params
        self.data = data
        self.response_filter = response_filter
        self.meti_conn_id = meti_conn_id

    def execute(self, context: Context) -> Any:
        """Send the request; return the (filtered) JSON."""
        self._refuse_token_endpoint()
        self.log.info("METI: %s %s", self.method.upper(), self.endpoint)
        body = self.hook.request(
            self.method, self.endpoint, params=self.request_params, json=self.data
        )
        return self.response_filter(body) if self.response_filter else body

    def _refuse_token_endpoint(self) -> None:
        """Refuse an endpoint that resolves to a token endpoint, however it is spelled.

        The endpoint is resolved against the base URL as requests sends it (dot segments,
        ``..`` climbing out of a base path, encoded and doubled slashes), then compared with
        the connection's token URL and the base URL's ``token`` and ``oauth/token``.
        """
        from airflow_provider_meti._http import join_url, request_url, same_resource
        from airflow_provider_meti.hooks.meti import client_settings_from_connection

        parts = client_settings_from_connection(self.hook.get_connection(self.meti_conn_id))
        base_url = parts.settings.base_url
        token_urls = [join_url(base_url, name) for name in sorted(TOKEN_ENDPOINTS)]
        # An unusable connection is reported when the hook builds its client.
        with contextlib.suppress(MetiConfigError):
            token_urls.append(parts.token_source().token_url)
        target = request_url(base_url, self.endpoint)
        if any(same_resource(target, token_url) for token_url in token_urls):
            raise MetiConfigError(
                f"MetiOperator does not call the token endpoint {self.endpoint!r}: its answer "
                "would put a token into XCom. The hook fetches tokens itself."
            )


class MetiCreateSourcesOperator(MetiHookMixin, BaseOperator):
    """Registers every feature of a GeoJSON FeatureCollection as a METI source.

    The whole collection is validated before anything is sent. Safe to retry: from the second
    try on, features an earlier try already stored (same ``alt_id`` and window) are found and
    not created again. Returns ``[{"id": "src_...", "alt_id": ...}]``, one per feature, in order.

    :param feature_collection: the collection as a dict, its JSON text, or the path of a
        ``.geojson``/``.json`` file. A path found in the DAG folder or ``template_searchpath``
        is rendered as a Jinja template; any other path (e.g. absolute) is read as it is.
    :param batch_size: features per POST (API v1 takes one)
    :param max_workers: concurrent POSTs (default 4); features that overlap in space and
        time are never sent concurrently
    :param methodology: (API v2) e.g. ``"Agriculture"``; like every field below, sent with
        every feature, unless the feature's ``properties`` hold the same name
    :param source_type: (v2) e.g. ``"FIELD"``
    :param attribute_type: (v2) a non-empty list, e.g. ``["CARBON_REMOVAL"]``
    :param geometry_source: (v2) e.g. ``"CUSTODIAN_DRAWN"``
    :param tags: (v2) a list of strings
    :param steward_id: (v2) the steward's id
    :param project_id: (v2) the project's id
    :param outcome_reporting_year: (v2) an integer such as 2025 (text is refused: render a
        template as a native object to pass an int)
    :param durable: (Airflow 3.3+) record progress in the task state store as the create
        runs, so that a retry after a killed try sends only what is missing and looks up only
        the features whose POST was in flight; without it (or before 3.3) a retry looks every
        feature up
    :param meti_conn_id: the Airflow connection id
    """

    template_fields: Sequence[str] = (
        "feature_collection",
        "methodology",
        "source_type",
        "attribute_type",
        "geometry_source",
        "tags",
        "steward_id",
        "project_id",
        "outcome_reporting_year",
        "meti_conn_id",
    )
    template_ext: Sequence[str] = (".geojson", ".json")
    template_fields_renderers = {"feature_collection": "json"}

    def __init__(
        self,
        *,
        feature_collection: Mapping[str, Any] | str | os.PathLike[str],
        batch_size: int | None = None,
        max_workers: int | None = None,
        methodology: str | None = None,
        source_type: str | None = None,
        attribute_type: Sequence[str] | None = None,
        geometry_source: str | None = None,
        tags: Sequence[str] | None = None,
        steward_id: str | None = None,
        project_id: str | None = None,
        outcome_reporting_year: int | None = None,
        durable: bool = True,
        meti_conn_id: str = MetiHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.feature_collection = feature_collection
        self.durable = durable
        self.batch_size = batch_size
        self.max_workers = max_workers
        self.methodology = methodology
        self.source_type = source_type
        self.attribute_type = attribute_type
        self.geometry_source = geometry_source
        self.tags = tags
        self.steward_id = steward_id
        self.project_id = project_id
        self.outcome_reporting_year = outcome_reporting_year
        self.meti_conn_id = meti_conn_id
        self.created_count: int | None = None  # set by execute, for OpenLineage

    @cached_property
    def hook(self) -> MetiHook:
        """The hook for ``meti_conn_id``, created on first use (after templates are rendered)."""
        return MetiHook(self.meti_conn_id, max_workers=self.max_workers)

    def resolve_template_files(self) -> None:
        """Read template files at parse time, leaving paths Jinja cannot find to ``execute``."""
        if self._is_template_file(self.feature_collection):
            super().resolve_template_files()
        else:
            self.prepare_template()

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: Any = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        """Render as usual, except what cannot be a template: that stays as it is.

        A file path Jinja cannot find stays a path, for ``execute`` to read. A string without
        ``{`` holds no Jinja syntax: passing it through keeps large collections quick to
        render and keeps ids such as ``"123"`` strings under native rendering.
        """
        if isinstance(content, str):
            if self._names_a_file(content):
                if not self._is_template_file(content, jinja_env):
                    return content
            elif "{" not in content:
                return content
        return super().render_template(content, context, jinja_env, seen_oids)

    def _names_a_file(self, value: Any) -> bool:
        return isinstance(value, str) and value.endswith(tuple(self.template_ext))

    def _is_template_file(self, value: Any, jinja_env: Any = None) -> bool:
        if not self._names_a_file(value):
            return False
        env = jinja_env or self.get_template_env()
        if env.loader is None:
            return False
        try:
            env.loader.get_source(env, value)
        except Exception:  # TemplateNotFound, or a path Jinja refuses (absolute, "..")
            return False
        return True

    def source_fields(self) -> dict[str, Any]:
        """The descriptive fields given (rendered), without the unset ones."""
        from airflow_provider_meti.source_fields import FIELD_NAMES

        given = {name: getattr(self, name) for name in FIELD_NAMES}
        return {name: value for name, value in given.items() if value not in (None, "")}

    def execute(self, context: Context) -> list[dict[str, str]]:
        """Validate, then create (skipping what an earlier try stored); return the ids."""
        collection = geojson.validated(geojson.load_feature_collection(self.feature_collection))
        features = collection.features
        try_number = _try_number(context)
        retrying = try_number > 1
        self.log.info("Registering %d features with METI (try %d)", len(features), try_number)
        fields = self.source_fields()
        progress, resume = self._open_progress(context, features, fields)
        if resume is not None:
            self.log.info(
                "Resuming from the task state store: %d features recorded as stored, %d in "
                "flight when the earlier try stopped (only these are looked up)",
                len(resume.recorded),
                len(resume.in_doubt),
            )
        elif retrying:
            self.log.info("Looking up features an earlier try may have stored, to skip them")
        try:
            created = self.hook.create_sources(
                collection,
                batch_size=self.batch_size,
                skip_existing=retrying and resume is None,
                source_fields=fields,
                resume=resume,
                progress=progress,
            )
        except MetiPartialCreateError as error:
            self.log.error(
                "%d of %d features were registered before the failure; retrying the task "
                "registers only the rest",
                len(error.created),
                error.total,
            )
            raise
        self.log.info("Registered %d features with METI", len(created))
        if progress is not None:
            self._clear_record(progress)
        self.created_count = len(created)
        return created

    def _clear_record(self, progress: TaskStateProgress) -> None:
        # Everything is stored: failing the task now would only make a retry look it all up.
        # A record left behind is never trusted by a later run (it names this try).
        try:
            progress.clear()
        except Exception as error:
            self.log.warning(
                "The create succeeded, but its record in the task state store could not be "
                "deleted (%s); it expires with the store's retention",
                type(error).__name__,
            )

    def _open_progress(
        self, context: Context, features: Sequence[Mapping[str, Any]], fields: Mapping[str, Any]
    ) -> tuple[TaskStateProgress | None, Resume | None]:
        """The task state store's record of this create (Airflow 3.3+), when ``durable``;
        without ``durable``, a record an earlier try left is deleted, so that no later try
        trusts it."""
        store = context.get("task_state_store")
        if store is None:
            return None, None
        from airflow_provider_meti.create_state import TaskStateProgress, input_fingerprint

        fingerprint = input_fingerprint(features, fields, account=self.hook.account())
        try_number, max_tries = _try_number(context), getattr(context.get("ti"), "max_tries", None)
        if not self.durable:
            TaskStateProgress(store, fingerprint, [try_number, max_tries]).remove()
            return None, None
        return TaskStateProgress.open(
            store, fingerprint, try_number=try_number, max_tries=max_tries
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """METI's sources as the output, with the number of sources registered.

        Called by Airflow's OpenLineage provider (the ``[openlineage]`` extra) after success.
        """
        if self.created_count is None:
            return None
        from airflow_provider_meti.openlineage import created_lineage

        return created_lineage(_base_url(self.hook), self.created_count)


class MetiGetSourceOperator(MetiHookMixin, BaseOperator):
    """Fetches one source and returns it.

    :param source_id: the METI source id (``src_...``)
    :param meti_conn_id: the Airflow connection id
    """

    template_fields: Sequence[str] = ("source_id", "meti_conn_id")

    def __init__(
        self,
        *,
        source_id: str,
        meti_conn_id: str = MetiHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_id = source_id
        self.meti_conn_id = meti_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        """Return the source; ``MetiNotFoundError`` when it does not exist."""
        return self.hook.get_source(self.source_id)


class MetiListSourcesOperator(MetiHookMixin, BaseOperator):
    """Lists every matching source, page by page, into XCom or streamed to a file.

    With ``output_path`` the sources are written one page at a time, so memory does not grow
    with the count, in ``output_format``: ``"ndjson"`` (one GeoJSON Feature per line),
    ``"geojson"`` (one FeatureCollection) or ``"parquet"`` (GeoParquet 1.1, one row group per
    page; needs ``airflow-provider-meti[parquet]``). Without ``output_format`` the suffix
    chooses: ``.parquet`` is GeoParquet, ``.geojson`` or ``.json`` a FeatureCollection,
    anything else NDJSON. A local path (or
    ``file://`` URL) is written to a temporary sibling and renamed into place, so a failed
    extract never leaves a truncated file; object storage (``s3://`` and other
    ``ObjectStoragePath`` URLs) is written to a temporary sibling key and moved into place
    when complete: a failed extract leaves the previous object as it was and no temporary
    object behind. Returns ``{"path", "count"}`` (for a local file, its absolute path).
    Without ``output_path`` the list of sources is returned through XCom; more than
    ``max_xcom_bytes`` of JSON (or more than ``max_items`` sources) fail the task.

    :param methodology: only sources of this methodology
    :param steward_id: only sources of this steward
    :param project_id: only sources of this project
    :param outcome_reporting_year: only sources of this reporting year
    :param filters: further query parameters; the named filters above take precedence
    :param page_size: sources per request
    :param max_items: most sources returned through XCom (None: no count limit)
    :param max_xcom_bytes: most bytes of JSON returned through XCom (default about 1 MB;
        None: no size limit, which your XCom backend may not thank you for)
    :param output_path: local path, ``file://`` URL or ``ObjectStoragePath`` (URL) to write to
    :param output_format: ``"ndjson"``, ``"geojson"`` or ``"parquet"`` (templated); None
        chooses by the suffix of ``output_path``
    :param meti_conn_id: the Airflow connection id
    """

    template_fields: Sequence[str] = (
        "methodology",
        "steward_id",
        "project_id",
        "outcome_reporting_year",
        "filters",
        "output_path",
        "output_format",
        "meti_conn_id",
    )

    def __init__(
        self,
        *,
        methodology: str | None = None,
        steward_id: str | None = None,
        project_id: str | None = None,
        outcome_reporting_year: int | str | None = None,
        filters: Mapping[str, Any] | None = None,
        page_size: int = 1000,
        max_items: int | None = None,
        max_xcom_bytes: int | None = DEFAULT_MAX_XCOM_BYTES,
        output_path: str | os.PathLike[str] | ObjectStoragePath | None = None,
        output_format: str | None = None,
        meti_conn_id: str = MetiHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not _is_template(output_format):  # a template is checked once rendered
            check_output_format(output_format)
        self.methodology = methodology
        self.steward_id = steward_id
        self.project_id = project_id
        self.outcome_reporting_year = outcome_reporting_year
        self.filters = filters
        self.page_size = page_size
        self.max_items = max_items
        self.max_xcom_bytes = max_xcom_bytes
        self.output_path = output_path
        self.output_format = output_format
        self.meti_conn_id = meti_conn_id
        # Set by execute, for OpenLineage: how many sources, and where and how they went.
        self.extracted_count: int | None = None
        self.written_path: str | os.PathLike[str] | ObjectStoragePath | None = None
        self.written_format: str | None = None

    def query(self) -> dict[str, Any]:
        """The filters sent with every page request."""
        named = {
            "methodology": self.methodology,
            "steward_id": self.steward_id,
            "project_id": self.project_id,
            "outcome_reporting_year": self.outcome_reporting_year,
        }
        given = {key: value for key, value in named.items() if value not in (None, "")}
        merged = {**(self.filters or {}), **given}  # a named filter left unset wins nothing
        return {key: value for key, value in merged.items() if value not in (None, "")}

    def execute(self, context: Context) -> list[dict[str, Any]] | dict[str, Any]:
        """Fetch every page; return the sources, or ``{"path", "count"}`` with ``output_path``."""
        query = self.query()
        output_format = None
        if self.output_path:
            # Before any request: a wrong format or a missing extra costs no API call.
            output_format = resolve_output_format(self.output_path, self.output_format or None)
            require_writer(output_format)
        self.log.info("Listing METI sources (filters: %s)", query or "none")
        # GeoParquet and XCom need every value decoded; NDJSON and GeoJSON copy most through.
        copied_through = output_format in ("ndjson", "geojson")
        iter_pages = (
            self.hook.iter_raw_source_pages if copied_through else self.hook.iter_source_pages
        )
        pages = ProgressLog(self.log).follow(iter_pages(page_size=self.page_size, **query))
        if self.output_path and output_format:
            result = self._write(self.output_path, pages, output_format)
            self.written_path, self.written_format = self.output_path, output_format
            self.extracted_count = result["count"]
            return result
        sources = self._collect(pages)
        self.extracted_count = len(sources)
        return sources

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """METI's sources as the input; the extract file, its schema and rows as the output.

        Called by Airflow's OpenLineage provider (the ``[openlineage]`` extra) after success.
        """
        if self.extracted_count is None:
            return None
        from airflow_provider_meti.openlineage import extract_lineage

        return extract_lineage(
            _base_url(self.hook),
            row_count=self.extracted_count,
            output_path=self.written_path,
            output_format=self.written_format,
        )

    def _collect(self, pages: Iterable[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
        sources: list[dict[str, Any]] = []
        size = 2  # the brackets of the JSON array
        for page in pages:
            sources.extend(page)
            if self.max_items is not None and len(sources) > self.max_items:
                raise AirflowException(
                    f"More than max_items={self.max_items} sources match; too many for XCom. "
                    "Use output_path to stream them to a file (or object storage) instead."
                )
            if self.max_xcom_bytes is not None:
                size += sum(len(compact_json(source).encode()) + 1 for source in page)
                if size > self.max_xcom_bytes:
                    raise AirflowException(
                        f"The {len(sources)} sources listed so far already take {size} bytes "
                        f"of JSON, more than max_xcom_bytes={self.max_xcom_bytes}: too large "
                        "for XCom. Use output_path to stream them to a file (or object "
                        "storage) instead."
                    )
        return sources

    def _write(
        self,
        output_path: str | os.PathLike[str] | ObjectStoragePath,
        pages: Iterable[Sequence[dict[str, Any]]],
        output_format: str,
    ) -> dict[str, Any]:
        shown_path, count = write_extract(output_path, pages, output_format)
        kind = {"geojson": "a FeatureCollection", "parquet": "GeoParquet"}.get(
            output_format, "NDJSON"
        )
        self.log.info("Wrote %d sources to %s as %s", count, shown_path, kind)
        return {"path": shown_path, "count": count}


class MetiDeleteSourceOperator(MetiHookMixin, BaseOperator):
    """Deletes one source by its METI id, or (API v2) every source with an ``alt_id``.

    :param source_id: the METI source id (``src_...``)
    :param alt_id: your own id of the source (API v2 only)
    :param missing_ok: succeed when there is nothing to delete. Off by default, so that a
        mistyped id fails; a retried try (``try_number > 1``) always treats "already gone"
        as done, since an earlier try may have deleted it.
    :param meti_conn_id: the Airflow connection id
    """

    template_fields: Sequence[str] = ("source_id", "alt_id", "meti_conn_id")

    def __init__(
        self,
        *,
        source_id: str | None = None,
        alt_id: str | None = None,
        missing_ok: bool = False,
        meti_conn_id: str = MetiHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (source_id is None) == (alt_id is None):
            raise ValueError("Pass exactly one of source_id or alt_id.")
        self.source_id = source_id
        self.alt_id = alt_id
        self.missing_ok = missing_ok
        self.meti_conn_id = meti_conn_id
        self.deleted: dict[str, str | None] | None = None  # set by execute, for OpenLineage

    def execute(self, context: Context) -> None:
        """Delete; a missing source is fine when ``missing_ok`` or on a retried try."""
        target = f"source {self.source_id}" if self.source_id else f"alt_id {self.alt_id!r}"
        try_number = _try_number(context)
        retried = try_number > 1
        self.log.info("Deleting %s from METI", target)
        if retried and not self.missing_ok:
            self.log.info("Try %d: if it is already gone, an earlier try deleted it", try_number)
        self.hook.delete_source(
            self.source_id, alt_id=self.alt_id, missing_ok=self.missing_ok or retried
        )
        self.deleted = {"source_id": self.source_id, "alt_id": self.alt_id}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """The deleted source as an output with a lifecycle state change ``DROP``.

        Called by Airflow's OpenLineage provider (the ``[openlineage]`` extra) after success.
        """
        if self.deleted is None:
            return None
        from airflow_provider_meti.openlineage import deleted_lineage

        return deleted_lineage(_base_url(self.hook), **self.deleted)


def _base_url(hook: MetiHook) -> str:
    return hook.get_conn().settings.base_url


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _try_number(context: Context) -> int:
    ti = context.get("ti") if isinstance(context, Mapping) else None
    return int(getattr(ti, "try_number", None) or 1)
