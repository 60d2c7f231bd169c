"""ConnectionSettings: an Airflow connection's fields and extras, checked once.

Reads any object with a ``Connection``'s attributes (``host``, ``port``, ``schema``,
``login``, ``password``, ``extra_dejson``), so it imports nothing from Airflow.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_meti.api import ApiVersion, api_version
from airflow_provider_meti.auth import TokenSource
from airflow_provider_meti.exceptions import MetiConfigError
from airflow_provider_meti.retries import RetryPolicy
from airflow_provider_meti.settings import ClientSettings

if TYPE_CHECKING:
    from airflow_provider_meti.token_cache import HostTokenCache

EXTRA_PREFIX = "extra__meti__"
"""Prefix of extras saved by the connection forms of older Airflow lines."""
_ASCII_INTEGER = re.compile(r"[0-9]+")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything needed to build a client for one connection; equal when nothing changed.

    :param settings: how the client talks to METI
    :param api: the API generation
    :param login: email (v1) or client id (v2)
    :param secret: password (v1) or client secret (v2); left out of ``repr``
    :param token_url: the token endpoint, when not the API's own
    :param audience: the OAuth2 audience (v2)
    :param scope: the scopes asked for in the client-credentials request (v2)
    :param token_cache: share tokens with the other processes of this host and user
        (``token_cache.HostTokenCache``)
    :param token_cache_dir: the cache's folder (default ``token_cache.default_directory()``)
    """

    settings: ClientSettings
    api: ApiVersion
    login: str
    secret: str = field(repr=False)
    token_url: str | None = None
    audience: str | None = None
    scope: str | None = None
    token_cache: bool = True
    token_cache_dir: str | None = None

    def token_source(self) -> TokenSource:
        """The token source these credentials describe."""
        return self.api.token_source(
            self.settings.base_url,
            self.login,
            self.secret,
            token_url=self.token_url,
            audience=self.audience,
            allow_insecure_http=self.settings.allow_insecure_http,
            scope=self.scope,
        )

    def host_token_cache(self) -> HostTokenCache | None:
        """The host's token cache for these credentials; None when it is turned off."""
        if not self.token_cache:
            return None
        from airflow_provider_meti.token_cache import HostTokenCache, default_directory

        source = self.token_source()
        identity = (
            f"v{self.api.number}",
            source.token_url,
            self.login,
            getattr(source, "audience", "") or "",
            getattr(source, "scope", "") or "",
        )
        directory = Path(self.token_cache_dir) if self.token_cache_dir else default_directory()
        return HostTokenCache(
            directory, identity, self.secret, margin=self.settings.token_refresh_margin
        )

    def with_max_workers(self, max_workers: int) -> ConnectionSettings:
        """The same settings with ``max_workers`` concurrent POSTs."""
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise MetiConfigError(f"max_workers must be a positive integer, got {max_workers!r}.")
        return replace(self, settings=replace(self.settings, max_workers=max_workers))


def settings_from_connection(
    connection: Any, *, extras: Mapping[str, Any] | None = None
) -> ConnectionSettings:
    """The settings of an Airflow ``Connection``.

    Raises ``MetiConfigError`` naming the first unusable field.

    :param connection: the connection
    :param extras: its extras when already read (a trigger reads them asynchronously);
        default ``connection.extra_dejson``
    """
    extras = _normalized_extras(connection.extra_dejson if extras is None else extras)
    api = api_version(extras.get("api_version", 1))
    api = api.in_sandbox(_bool_extra(extras, "sandbox", False))
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
    return ConnectionSettings(
        settings=settings,
        api=api,
        login=connection.login or "",
        secret=connection.password or "",
        token_url=extras.get("token_url") or None,
        audience=extras.get("audience") or None,
        scope=_scope_extra(extras),
        token_cache=_bool_extra(extras, "token_cache", True),
        token_cache_dir=_cache_dir_extra(extras),
    )


def _normalized_extras(extras: Mapping[str, Any]) -> dict[str, Any]:
    """Extras with the ``extra__meti__`` prefix of old connection forms removed."""
    normalized = {}
    for key, value in extras.items():
        name = key.removeprefix(EXTRA_PREFIX)
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
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    text = str(value).strip()
    if isinstance(value, bool) or not _ASCII_INTEGER.fullmatch(text) or int(text) < minimum:
        raise MetiConfigError(
            f"The METI connection extra {name!r} must be an integer ≥ {minimum}, got {value!r}."
        )
    return int(text)


def _true_or_false(value: Any) -> bool | None:
    """``value`` read as a boolean (``true``/``1``/``yes``/``on`` and their opposites);
    None when it is neither."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _bool_extra(extras: Mapping[str, Any], name: str, default: bool) -> bool:
    value = extras.get(name, default)
    flag = _true_or_false(value)
    if flag is None:
        raise MetiConfigError(
            f"The METI connection extra {name!r} must be true or false, got {value!r}."
        )
    return flag


def _scope_extra(extras: Mapping[str, Any]) -> str | None:
    """``scope``: space-separated OAuth2 scopes, e.g. ``read:sources write:sources``."""
    value = extras.get("scope")
    if value is None:
        return None
    if not isinstance(value, str):
        raise MetiConfigError(
            "The METI connection extra 'scope' must be a string of space-separated scopes "
            f"(e.g. 'read:sources write:sources'), got {value!r}."
        )
    return " ".join(value.split()) or None


def _cache_dir_extra(extras: Mapping[str, Any]) -> str | None:
    """``token_cache_dir``: an absolute folder for the host's token cache."""
    value = extras.get("token_cache_dir")
    if value is None:
        return None
    path = os.path.expanduser(str(value).strip())
    if "\0" in path:
        raise MetiConfigError("The METI connection extra 'token_cache_dir' holds a NUL byte.")
    if not os.path.isabs(path):
        raise MetiConfigError(
            "The METI connection extra 'token_cache_dir' must be an absolute path "
            f"(the folder of the host's token cache), got {value!r}."
        )
    return path


def _verify_extra(extras: Mapping[str, Any]) -> bool | str:
    """``verify``: true, false, or the path of a CA bundle that exists."""
    value = extras.get("verify", True)
    flag = _true_or_false(value)
    if flag is not None:
        return flag
    path = str(value).strip()
    if not os.path.exists(path):
        raise MetiConfigError(
            f"The METI connection extra 'verify' names a CA bundle that does not exist: {path!r}."
        )
    return path
