"""What differs between METI API v1 and v2, in one place.

The client asks an ``ApiVersion`` for routes and limits instead of testing version numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from airflow_provider_meti._http import check_base_url, join_url
from airflow_provider_meti.auth import (
    DEFAULT_AUDIENCE,
    ClientCredentialsAuth,
    EmailPasswordAuth,
    TokenSource,
)
from airflow_provider_meti.exceptions import MetiConfigError

Route = tuple[str, dict[str, Any]]
SANDBOX_PREFIX = "/sandbox"
SANDBOX_ID_PREFIX = "sandbox_"
PRODUCTION_ID_PREFIX = "src_"
# What an unset value renders to in a template: never a real id, and as a filter it would
# match nothing or, worse, be ignored.
_PLACEHOLDER_IDS = frozenset({"none", "null"})


def require_id(name: str, value: Any) -> str:
    """``value`` when it can name a source; else ``MetiConfigError`` saying why.

    Refuses what is not a string, empty or blank strings, and ``"None"``/``"null"``, what a
    template renders for a missing value: sent as a filter they could delete the wrong thing.
    """
    if not isinstance(value, str) or not value.strip():
        raise MetiConfigError(f"{name} must be a non-empty string, got {value!r}.")
    if value.strip().lower() in _PLACEHOLDER_IDS:
        raise MetiConfigError(
            f"{name} is {value!r}, what a template renders for a missing value; "
            "refusing to send it."
        )
    return value


@dataclass(frozen=True)
class Credentials:
    """What a connection gives a token source.

    :param base_url: the API's base URL
    :param login: email (v1) or client id (v2)
    :param secret: password (v1) or client secret (v2)
    :param token_url: where to ask for tokens; None for the generation's default
    :param audience: the OAuth2 audience (v2); None for the default
    :param allow_insecure_http: accept plain http:// to a host that is not loopback
    :param scope: space-separated scopes for the client-credentials request (v2); None: the
        client's defaults
    """

    base_url: str
    login: str
    secret: str = field(repr=False)
    token_url: str | None = None
    audience: str | None = None
    allow_insecure_http: bool = False
    scope: str | None = None


def _email_password(credentials: Credentials) -> TokenSource:
    """v1: ``POST {base}/token`` unless the connection names another token URL."""
    url = credentials.token_url or join_url(credentials.base_url, "/token")
    check_base_url(url, allow_insecure_http=credentials.allow_insecure_http, what="token URL")
    return EmailPasswordAuth(token_url=url, email=credentials.login, password=credentials.secret)


def _client_credentials(credentials: Credentials) -> TokenSource:
    """v2: the OAuth2 tenant's token endpoint, which only the connection can name."""
    if not credentials.token_url:
        raise MetiConfigError(
            "A METI v2 connection needs the extra 'token_url' (the OAuth2 tenant's "
            "token endpoint, e.g. https://<tenant>/oauth/token)."
        )
    check_base_url(
        credentials.token_url,
        allow_insecure_http=credentials.allow_insecure_http,
        what="token_url",
    )
    return ClientCredentialsAuth(
        token_url=credentials.token_url,
        client_id=credentials.login,
        client_secret=credentials.secret,
        audience=credentials.audience or DEFAULT_AUDIENCE,
        scope=credentials.scope,
    )


@dataclass(frozen=True)
class ApiVersion:
    """Routes, limits and the token source of one METI API generation."""

    number: int
    default_base_url: str
    source_id_in_path: bool
    features_per_post: int | None
    """Most features one ``POST /sources`` may carry; None when the API sets no limit."""
    default_batch_size: int
    can_delete_by_alt_id: bool
    credential_names: str
    """How the connection's login and password are called in this generation."""
    make_token_source: Callable[[Credentials], TokenSource]
    takes_source_fields: bool = False
    """A create is a ``SourceCreateRequest`` (``feature_collection`` plus descriptive fields)."""
    can_filter_by_alt_id: bool = False
    """``GET /sources?alt_id=`` is documented."""
    sandbox: bool = False
    """Every source route under ``/sandbox``: METI's sandbox, which stores nothing for good."""

    def in_sandbox(self, sandbox: bool = True) -> ApiVersion:
        """This generation with its source routes in (or out of) METI's sandbox."""
        if bool(sandbox) == self.sandbox:
            return self
        return replace(self, sandbox=bool(sandbox))

    @property
    def sources_path(self) -> str:
        """The path of the source collection (list and create)."""
        return (SANDBOX_PREFIX if self.sandbox else "") + "/sources"

    def routed(self, endpoint: str) -> str:
        """``endpoint`` of a raw request, moved under ``/sandbox`` when it names a source route
        of a sandbox connection (``/sources``, ``/sources/...``, ``/sources?...``)."""
        if not self.sandbox:
            return endpoint
        path = "/" + endpoint.lstrip("/")
        if path == "/sources" or path.startswith(("/sources/", "/sources?")):
            return SANDBOX_PREFIX + path
        return endpoint

    def check_source_id(self, value: Any, name: str = "source_id") -> str:
        """``source_id`` when it can name a source of this environment (sandbox or not)."""
        source_id = require_id(name, value)
        if self.sandbox and source_id.startswith(PRODUCTION_ID_PREFIX):
            raise MetiConfigError(
                f"{name} {source_id!r} is a production id ({PRODUCTION_ID_PREFIX}...), but the "
                "connection uses METI's sandbox (extra 'sandbox'), whose ids start with "
                f"{SANDBOX_ID_PREFIX!r}; use a production connection for it."
            )
        if not self.sandbox and source_id.startswith(SANDBOX_ID_PREFIX):
            raise MetiConfigError(
                f"{name} {source_id!r} is a sandbox id, but the connection is not in METI's "
                "sandbox; set the connection extra 'sandbox' to true to reach it."
            )
        return source_id

    def source_route(self, source_id: str) -> Route:
        """Path and query for one source (GET and DELETE)."""
        self.check_source_id(source_id)
        if self.source_id_in_path:
            return f"{self.sources_path}/{quote(source_id, safe='')}", {}
        return f"{self.sources_path}/", {"id": source_id}

    def delete_by_alt_id_route(self, alt_id: str) -> Route:
        """Path and query to delete every source with ``alt_id``."""
        if not self.can_delete_by_alt_id:
            raise MetiConfigError(
                f"METI API v{self.number} cannot delete by alt_id; pass source_id instead."
            )
        return self.sources_path, {"alt_id": require_id("alt_id", alt_id)}

    def batch_size(self, requested: int | None) -> int:
        """Features per POST: the caller's choice, within what the API accepts."""
        size = self.default_batch_size if requested is None else requested
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise MetiConfigError(f"batch_size must be a positive integer, got {requested!r}.")
        if self.features_per_post is not None:
            size = min(size, self.features_per_post)
        return size

    def token_source(
        self,
        base_url: str,
        login: str,
        secret: str,
        *,
        token_url: str | None = None,
        audience: str | None = None,
        allow_insecure_http: bool = False,
        scope: str | None = None,
    ) -> TokenSource:
        """The token source for this generation's credentials.

        :param base_url: the API's base URL
        :param login: email (v1) or client id (v2)
        :param secret: password (v1) or client secret (v2)
        :param token_url: where to ask for tokens (required for v2)
        :param audience: the OAuth2 audience (v2 only; default ``DEFAULT_AUDIENCE``)
        :param allow_insecure_http: accept plain http:// to a host that is not loopback
        :param scope: scopes for the client-credentials request (v2 only)
        """
        if scope and not self.uses_scopes:
            raise MetiConfigError(
                f"The connection extra 'scope' is for METI API v2; v{self.number} has no scopes."
            )
        if not login or not secret:
            raise MetiConfigError(
                f"The METI connection needs a {self.credential_names} (login and password)."
            )
        credentials = Credentials(
            base_url=base_url,
            login=login,
            secret=secret,
            token_url=token_url,
            audience=audience,
            allow_insecure_http=allow_insecure_http,
            scope=scope,
        )
        return self.make_token_source(credentials)

    @property
    def uses_scopes(self) -> bool:
        """Whether tokens of this generation carry OAuth2 scopes."""
        return self.make_token_source is _client_credentials


API_V1 = ApiVersion(
    number=1,
    default_base_url="https://api.meti.millpont.com",
    source_id_in_path=False,
    features_per_post=1,
    default_batch_size=1,
    can_delete_by_alt_id=False,
    credential_names="email and password",
    make_token_source=_email_password,
)
API_V2 = ApiVersion(
    number=2,
    default_base_url="https://api.millpont.com",
    source_id_in_path=True,
    features_per_post=None,
    default_batch_size=100,
    can_delete_by_alt_id=True,
    credential_names="client id and client secret",
    make_token_source=_client_credentials,
    takes_source_fields=True,
    can_filter_by_alt_id=True,
)
_VERSIONS = {1: API_V1, 2: API_V2}


def api_version(number: Any) -> ApiVersion:
    """The ``ApiVersion`` for 1 or 2 (also given as a string)."""
    try:
        return _VERSIONS[int(number)]
    except (KeyError, TypeError, ValueError):
        raise MetiConfigError(f"api_version must be 1 or 2, got {number!r}.") from None
