"""MetiHook: an Airflow Connection turned into a ``MetiClient``."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_meti import lineage
from airflow_provider_meti._compat import RETRY_POLICY_AVAILABLE, BaseHook, mask_secret
from airflow_provider_meti.exceptions import MetiError
from airflow_provider_meti.retry_policy import chosen_policy

if RETRY_POLICY_AVAILABLE:
    from airflow_provider_meti.retry_policy import NOT_GIVEN

if TYPE_CHECKING:
    # Imported where a client is built instead: they pull in requests, and a DAG file that
    # only declares tasks should not pay for it at parse time.
    from airflow_provider_meti.client import MetiClient
    from airflow_provider_meti.connection import ConnectionSettings
    from airflow_provider_meti.create import CreateProgress, Resume
    from airflow_provider_meti.geojson import ValidFeatureCollection

log = logging.getLogger(__name__)

# One client (and so one token) per connection id per process: hooks created by many tasks or
# threads of one worker share it. When a connection's settings change (a rotated secret), its
# client is replaced and closed; the least recently used clients beyond MAX_SHARED_CLIENTS are
# closed too, so a long-lived triggerer keeps a bounded number of sessions. The pid guards
# against a forked child reusing its parent's sockets.
MAX_SHARED_CLIENTS = 32
_clients: dict[tuple[int, str], tuple[ConnectionSettings, MetiClient]] = {}  # oldest use first
_clients_lock = threading.Lock()


class MetiHook(BaseHook):
    """Talks to the METI API with the credentials of an Airflow connection.

    Connection fields: ``host`` = base URL (default ``https://api.meti.millpont.com``; v2:
    ``https://api.millpont.com``), ``login`` = email (v2: client id), ``password`` = password
    (v2: client secret). Extras: ``api_version`` (1 or 2), ``timeout``, ``max_retries``,
    ``max_retry_time``, ``token_refresh_margin``, ``verify``, ``token_url`` (required for
    v2: the OAuth2 tenant's token endpoint), ``audience`` (v2; default
    ``https://api.meti.millpont.com``), ``scope`` (v2: space-separated scopes to ask for),
    ``sandbox`` (every source route under ``{host}/sandbox``), ``allow_insecure_http``,
    ``token_cache`` (default true: one token shared by this host's processes) and
    ``token_cache_dir``.

    :param meti_conn_id: the Airflow connection id
    :param max_workers: concurrent POSTs when creating many sources (default 4)
    """

    conn_name_attr = "meti_conn_id"
    default_conn_name = "meti_default"
    conn_type = "meti"
    hook_name = "METI"

    def __init__(
        self, meti_conn_id: str = default_conn_name, *, max_workers: int | None = None
    ) -> None:
        super().__init__()
        self.meti_conn_id = meti_conn_id
        self.max_workers = max_workers
        self._client: MetiClient | None = None
        self._parts: ConnectionSettings | None = None

    def __repr__(self) -> str:
        return f"MetiHook(meti_conn_id={self.meti_conn_id!r})"

    # Airflow connection form (Airflow < 3.2 reads these; newer ones read get_provider_info)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabelled and hidden fields of the METI connection form."""
        behaviour = _connection_type_info()["ui-field-behaviour"]
        return {
            "hidden_fields": behaviour["hidden-fields"],
            "relabeling": behaviour["relabeling"],
            "placeholders": behaviour["placeholders"],
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the METI connection form."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, StringField

        widgets: dict[str, Any] = {}
        for name, spec in _connection_type_info()["conn-fields"].items():
            field_class = BooleanField if "boolean" in spec["schema"]["type"] else StringField
            kwargs: dict[str, Any] = {"description": spec["description"]}
            if field_class is StringField:
                kwargs["widget"] = BS3TextFieldWidget()
            widgets[name] = field_class(lazy_gettext(spec["label"]), **kwargs)
        return widgets

    # Client

    def get_conn(self) -> MetiClient:
        """The ``MetiClient`` for this connection (shared within the process, whatever the
        hook's ``max_workers``: each create is given its own)."""
        if self._client is None:
            self._parts = self._connection_settings()
            self._client = _shared_client(self.meti_conn_id, self._parts)
        return self._client

    def account(self) -> tuple[Any, ...]:
        """Which METI account and environment the connection reaches, without its secret:
        the API version, base URL, source routes (``/sandbox/sources`` in the sandbox), token
        endpoint and login (email or client id)."""
        if self._parts is None:
            self._parts = self._connection_settings()
        parts = self._parts
        return (
            parts.api.number,
            parts.settings.base_url,
            parts.api.sources_path,
            parts.token_url,
            parts.login,
        )

    def _connection_settings(self) -> ConnectionSettings:
        settings = client_settings_from_connection(self.get_connection(self.meti_conn_id))
        if self.max_workers is not None:
            settings.with_max_workers(self.max_workers)  # refuses a bad value early
        return settings

    def get_token(self) -> str:
        """A valid bearer token (cached until shortly before it expires)."""
        return self.get_conn().get_token()

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send one request to ``endpoint`` (relative to the base URL); return parsed JSON."""
        return self.get_conn().request(method, endpoint, params=params, json=json)

    def get_source(self, source_id: str) -> dict[str, Any]:
        """One source by its METI id; ``MetiNotFoundError`` when there is none."""
        return self.get_conn().get_source(source_id)

    def iter_sources(self, *, page_size: int = 100, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every source matching ``filters`` (e.g. ``project_id``), fetched page by page.

        Reports METI's sources as an input to hook lineage (see ``lineage``).
        """
        client = self.get_conn()
        lineage.report_read(self, client.settings.base_url)
        return client.iter_sources(page_size=page_size, **filters)

    def iter_source_pages(
        self, *, page_size: int = 100, **filters: Any
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages (lists) of the sources matching ``filters``: for streaming large extracts.

        Reports METI's sources as an input to hook lineage (see ``lineage``).
        """
        client = self.get_conn()
        lineage.report_read(self, client.settings.base_url)
        return client.iter_source_pages(page_size=page_size, **filters)

    def iter_raw_source_pages(
        self, *, page_size: int = 100, **filters: Any
    ) -> Iterator[Sequence[dict[str, Any]]]:
        """Pages for a writer that copies sources through (see
        ``MetiClient.iter_raw_source_pages``); reported to hook lineage as a read."""
        client = self.get_conn()
        lineage.report_read(self, client.settings.base_url)
        return client.iter_raw_source_pages(page_size=page_size, **filters)

    def create_sources(
        self,
        feature_collection: Mapping[str, Any] | ValidFeatureCollection,
        *,
        batch_size: int | None = None,
        skip_existing: bool = False,
        source_fields: Mapping[str, Any] | None = None,
        resume: Resume | None = None,
        progress: CreateProgress | None = None,
    ) -> list[dict[str, str]]:
        """Register a FeatureCollection; one ``{"id", "alt_id"}`` per feature, in order.

        Reports METI's sources as an output to hook lineage once the create succeeded.

        :param source_fields: API v2's descriptive fields for every feature (see
            ``MetiClient.create_sources``); a feature's ``properties`` may override them
        :param resume: what an earlier try recorded (``create_state``); see
            ``MetiClient.create_sources``
        :param progress: told before each POST and after each answer is read
        """
        client = self.get_conn()
        created = client.create_sources(
            feature_collection,
            batch_size=batch_size,
            max_workers=self.max_workers,
            skip_existing=skip_existing,
            source_fields=source_fields,
            resume=resume,
            progress=progress,
        )
        lineage.report_write(self, client.settings.base_url)
        return created

    def delete_source(
        self,
        source_id: str | None = None,
        *,
        alt_id: str | None = None,
        missing_ok: bool = False,
    ) -> None:
        """Delete a source by id (or, on API v2, every source with ``alt_id``).

        Reports METI's sources as an output to hook lineage once the delete succeeded.
        """
        client = self.get_conn()
        client.delete_source(source_id, alt_id=alt_id, missing_ok=missing_ok)
        lineage.report_write(self, client.settings.base_url)

    def test_connection(self) -> tuple[bool, str]:
        """Ask for a token with the connection's credentials; nothing else is called."""
        try:
            parts = client_settings_from_connection(self.get_connection(self.meti_conn_id))
            # Never the host's token cache: the button tests the credentials, not a token.
            with _build_client(parts, host_cache=False) as client:
                client.get_token()
            return True, f"Authenticated with METI at {client.settings.base_url}."
        except MetiError as error:
            return False, str(error)


def client_settings_from_connection(connection: Any) -> ConnectionSettings:
    """The ``ConnectionSettings`` of an Airflow ``Connection``.

    Raises ``MetiConfigError`` naming the first unusable field.
    """
    from airflow_provider_meti.connection import settings_from_connection

    return settings_from_connection(connection)


def client_from_connection(connection: Any) -> MetiClient:
    """The process-wide ``MetiClient`` for a connection already at hand (e.g. in a trigger).

    Clients are shared like ``MetiHook.get_conn()`` shares them, so every caller in a process
    that uses the same connection settings shares one token. Blocking: call it from a thread
    when inside an event loop.

    :param connection: an Airflow ``Connection``
    """
    return _shared_client(connection.conn_id or "", client_settings_from_connection(connection))


def _build_client(parts: ConnectionSettings, *, host_cache: bool = True) -> MetiClient:
    from airflow_provider_meti.client import MetiClient

    return MetiClient(
        parts.settings,
        parts.token_source(),
        api=parts.api,
        on_new_token=mask_secret,
        host_cache=parts.host_token_cache() if host_cache else None,
    )


def _shared_client(conn_id: str, parts: ConnectionSettings) -> MetiClient:
    key = (os.getpid(), conn_id)
    dropped: list[MetiClient] = []
    with _clients_lock:
        entry = _clients.pop(key, None)
        if entry is not None and entry[0] == parts:
            _clients[key] = entry  # now the most recently used
            return entry[1]
        if entry is not None:
            dropped.append(entry[1])  # the connection changed, e.g. a rotated secret
        client = _build_client(parts)
        _clients[key] = (parts, client)
        while len(_clients) > MAX_SHARED_CLIENTS:
            dropped.append(_clients.pop(next(iter(_clients)))[1])
    for old in dropped:
        log.debug("Closing %r, no longer shared", old)
        old.close()
    return client


def _connection_type_info() -> dict[str, Any]:
    from airflow_provider_meti import get_provider_info

    return get_provider_info()["connection-types"][0]


class MetiHookMixin:
    """Gives an operator or sensor with a ``meti_conn_id`` its ``hook``, and on Airflow 3.3
    and newer the provider's retry policy (``retry_policy.MetiRetryPolicy``) by default.

    A ``retry_policy`` given to the operator, or named in its, its task group's or its DAG's
    ``default_args``, wins over the default, ``None`` included (no policy).
    """

    meti_conn_id: str

    if RETRY_POLICY_AVAILABLE:
        # A default in the signature, not a class attribute or a kwargs.setdefault: Airflow's
        # partial() (mapped tasks) reads the defaults of the __init__ signatures in the MRO.
        # Airflow fills BaseOperator's retry_policy from default_args only when no class
        # above it passed one, so the default_args are consulted here before passing it on.
        def __init__(self, *, retry_policy: Any = NOT_GIVEN, **kwargs: Any) -> None:
            retry_policy = chosen_policy(retry_policy, kwargs.get("default_args"))
            super().__init__(retry_policy=retry_policy, **kwargs)  # type: ignore[call-arg]

    @cached_property
    def hook(self) -> MetiHook:
        """The hook for ``meti_conn_id``, created on first use (after templates are rendered)."""
        return MetiHook(self.meti_conn_id)
