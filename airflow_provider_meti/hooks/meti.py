"""MetiHook: an Airflow Connection turned into a ``MetiClient``."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_meti._compat import BaseHook, mask_secret
from airflow_provider_meti.exceptions import MetiConfigError, MetiError
from airflow_provider_meti.retries import RetryPolicy

if TYPE_CHECKING:
    # Imported where a client is built instead: they pull in requests, and a DAG file that
    # only declares tasks should not pay for it at parse time.
    from airflow_provider_meti.api import ApiVersion
    from airflow_provider_meti.client import ClientSettings, MetiClient

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

log = logging.getLogger(__name__)

# One client (and so one token) per connection id per process: hooks created by many tasks or
# threads of one worker share it. When a connection's settings change (a rotated secret), its
# client is replaced and closed; the least recently used clients beyond MAX_SHARED_CLIENTS are
# closed too, so a long-lived triggerer keeps a bounded number of sessions. The pid guards
# against a forked child reusing its parent's sockets.
MAX_SHARED_CLIENTS = 32
_clients: dict[tuple[int, str], tuple[str, MetiClient]] = {}  # oldest use first
_clients_lock = threading.Lock()


class MetiHook(BaseHook):
    """Talks to the METI API with the credentials of an Airflow connection.

    Connection fields: ``host`` = base URL (default ``https://api.meti.millpont.com``; v2:
    ``https://api.millpont.com``), ``login`` = email (v2: client id), ``password`` = password
    (v2: client secret). Extras: ``api_version`` (1 or 2), ``timeout``, ``max_retries``,
    ``max_retry_time``, ``token_refresh_margin``, ``verify``, ``token_url`` (required for
    v2: the OAuth2 tenant's token endpoint), ``audience`` (v2; default
    ``https://api.meti.millpont.com``), ``allow_insecure_http``.

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
        """The ``MetiClient`` for this connection (shared within the process)."""
        if self._client is None:
            self._client = _shared_client(self.meti_conn_id, self._connection_settings())
        return self._client

    def _connection_settings(self) -> dict[str, Any]:
        connection = self.get_connection(self.meti_conn_id)
        settings = client_settings_from_connection(connection)
        if self.max_workers is not None:
            settings["settings"] = _replace_workers(settings["settings"], self.max_workers)
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
        """Every source matching ``filters`` (e.g. ``project_id``), fetched page by page."""
        return self.get_conn().iter_sources(page_size=page_size, **filters)

    def iter_source_pages(
        self, *, page_size: int = 100, **filters: Any
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages (lists) of the sources matching ``filters``: for streaming large extracts."""
        return self.get_conn().iter_source_pages(page_size=page_size, **filters)

    def create_sources(
        self,
        feature_collection: Mapping[str, Any],
        *,
        batch_size: int | None = None,
        skip_existing: bool = False,
    ) -> list[dict[str, str]]:
        """Register a FeatureCollection; one ``{"id", "alt_id"}`` per feature, in order."""
        return self.get_conn().create_sources(
            feature_collection, batch_size=batch_size, skip_existing=skip_existing
        )

    def delete_source(
        self,
        source_id: str | None = None,
        *,
        alt_id: str | None = None,
        missing_ok: bool = False,
    ) -> None:
        """Delete a source by id (or, on API v2, every source with ``alt_id``)."""
        self.get_conn().delete_source(source_id, alt_id=alt_id, missing_ok=missing_ok)

    def test_connection(self) -> tuple[bool, str]:
        """Ask for a token with the connection's credentials; nothing else is called."""
        try:
            parts = client_settings_from_connection(self.get_connection(self.meti_conn_id))
            with _build_client(parts) as client:
                client.get_token()
            return True, f"Authenticated with METI at {client.settings.base_url}."
        except MetiError as error:
            return False, str(error)


def client_settings_from_connection(connection: Any) -> dict[str, Any]:
    """Everything needed to build a client from an Airflow ``Connection``.

    Returns ``{"settings": ClientSettings, "api": ApiVersion, "login", "secret", "token_url",
    "audience"}``. Raises ``MetiConfigError`` naming the first unusable field.
    """
    from airflow_provider_meti.api import api_version
    from airflow_provider_meti.client import ClientSettings

    extras = _normalized_extras(connection.extra_dejson)
    api = api_version(extras.get("api_version", 1))
    retry = RetryPolicy(
        max_retries=_int_extra(extras, "max_retries", RetryPolicy.max_retries, minimum=0),
        max_retry_time=_float_extra(extras, "max_retry_time", RetryPolicy.max_retry_time),
    )
    settings = ClientSettings(
        base_url=_base_url(connection, api),
        timeout=_float_extra(extras, "timeout", ClientSettings.timeout),
        verify=_verify_extra(extras),
        allow_insecure_http=_bool_extra(extras, "allow_insecure_http", False),
        token_refresh_margin=_float_extra(
            extras, "token_refresh_margin", ClientSettings.token_refresh_margin, minimum=0.0
        ),
        retry=retry,
    )
    return {
        "settings": settings,
        "api": api,
        "login": connection.login or "",
        "secret": connection.password or "",
        "token_url": extras.get("token_url") or None,
        "audience": extras.get("audience") or None,
    }


def client_from_connection(connection: Any) -> MetiClient:
    """The process-wide ``MetiClient`` for a connection already at hand (e.g. in a trigger).

    Clients are shared like ``MetiHook.get_conn()`` shares them, so every caller in a process
    that uses the same connection settings shares one token. Blocking: call it from a thread
    when inside an event loop.

    :param connection: an Airflow ``Connection``
    """
    parts = client_settings_from_connection(connection)
    return _shared_client(connection.conn_id or "", parts)


def _build_client(parts: Mapping[str, Any]) -> MetiClient:
    from airflow_provider_meti.client import MetiClient

    settings: ClientSettings = parts["settings"]
    api: ApiVersion = parts["api"]
    token_source = api.token_source(
        settings.base_url,
        parts["login"],
        parts["secret"],
        token_url=parts["token_url"],
        audience=parts["audience"],
        allow_insecure_http=settings.allow_insecure_http,
    )
    return MetiClient(settings, token_source, api=api, on_new_token=mask_secret)


def _shared_client(conn_id: str, parts: Mapping[str, Any]) -> MetiClient:
    fingerprint = hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()
    key = (os.getpid(), conn_id)
    dropped: list[MetiClient] = []
    with _clients_lock:
        entry = _clients.pop(key, None)
        if entry is not None and entry[0] == fingerprint:
            _clients[key] = entry  # now the most recently used
            return entry[1]
        if entry is not None:
            dropped.append(entry[1])  # the connection changed, e.g. a rotated secret
        client = _build_client(parts)
        _clients[key] = (fingerprint, client)
        while len(_clients) > MAX_SHARED_CLIENTS:
            dropped.append(_clients.pop(next(iter(_clients)))[1])
    for old in dropped:
        log.debug("Closing %r, no longer shared", old)
        old.close()
    return client


def _replace_workers(settings: ClientSettings, max_workers: int) -> ClientSettings:
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise MetiConfigError(f"max_workers must be a positive integer, got {max_workers!r}.")
    return replace(settings, max_workers=max_workers)


def _connection_type_info() -> dict[str, Any]:
    from airflow_provider_meti import get_provider_info

    return get_provider_info()["connection-types"][0]


def _normalized_extras(extras: Mapping[str, Any]) -> dict[str, Any]:
    """Extras with the ``extra__meti__`` prefix of old connection forms removed."""
    prefix = "extra__meti__"
    normalized = {}
    for key, value in extras.items():
        name = key[len(prefix) :] if key.startswith(prefix) else key
        if value not in (None, ""):
            normalized[name] = value
    return normalized


def _base_url(connection: Any, api: ApiVersion) -> str:
    """The base URL from ``host`` (a full URL), or from the URI form's host, port and path.

    ``meti://http://user:pass@127.0.0.1:8765/meti/api`` arrives as host ``http://127.0.0.1``,
    port 8765 and schema ``meti/api``; without a scheme in the host, https is meant.
    """
    host = (connection.host or "").strip()
    if not host:
        return api.default_base_url
    if "://" not in host:
        host = f"https://{host}"
    parts = urlsplit(host)
    netloc = parts.netloc
    if connection.port and parts.port is None:
        netloc = f"{netloc}:{connection.port}"
    path = parts.path
    if connection.schema:
        path = path.rstrip("/") + "/" + connection.schema.strip("/")
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _float_extra(
    extras: Mapping[str, Any], name: str, default: float, *, minimum: float = 0.001
) -> float:
    value = extras.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise MetiConfigError(
            f"The METI connection extra {name!r} must be a finite number, got {value!r}."
        )
    if number < minimum:
        raise MetiConfigError(
            f"The METI connection extra {name!r} must be at least {minimum}, got {value!r}."
        )
    return number


def _int_extra(extras: Mapping[str, Any], name: str, default: int, *, minimum: int) -> int:
    value = extras.get(name, default)
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < minimum:
        raise MetiConfigError(
            f"The METI connection extra {name!r} must be an integer ≥ {minimum}, got {value!r}."
        )
    return int(value)


def _bool_extra(extras: Mapping[str, Any], name: str, default: bool) -> bool:
    value = extras.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise MetiConfigError(
        f"The METI connection extra {name!r} must be true or false, got {value!r}."
    )


def _verify_extra(extras: Mapping[str, Any]) -> bool | str:
    value = extras.get("verify", True)
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    if not os.path.exists(text):
        raise MetiConfigError(
            f"The METI connection extra 'verify' names a CA bundle that does not exist: {text!r}."
        )
    return text
