"""What differs between METI API v1 and v2, in one place.

The client asks an ``ApiVersion`` for routes and limits instead of testing version numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
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

    def source_route(self, source_id: str) -> Route:
        """Path and query for one source (GET and DELETE)."""
        if not isinstance(source_id, str) or not source_id:
            raise MetiConfigError(f"source_id must be a non-empty string, got {source_id!r}.")
        if self.source_id_in_path:
            return f"/sources/{quote(source_id, safe='')}", {}
        return "/sources/", {"id": source_id}

    def delete_by_alt_id_route(self, alt_id: str) -> Route:
        """Path and query to delete every source with ``alt_id``."""
        if not self.can_delete_by_alt_id:
            raise MetiConfigError(
                f"METI API v{self.number} cannot delete by alt_id; pass source_id instead."
            )
        return "/sources", {"alt_id": alt_id}

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
    ) -> TokenSource:
        """The token source for this generation's credentials."""
        if not login or not secret:
            who = "email and password" if self.number == 1 else "client id and client secret"
            raise MetiConfigError(f"The METI connection needs a {who} (login and password).")
        if self.number == 1:
            url = token_url or join_url(base_url, "/token")
            check_base_url(url, allow_insecure_http=allow_insecure_http, what="token URL")
            return EmailPasswordAuth(token_url=url, email=login, password=secret)
        if not token_url:
            raise MetiConfigError(
                "A METI v2 connection needs the extra 'token_url' (the OAuth2 tenant's "
                "token endpoint, e.g. https://<tenant>/oauth/token)."
            )
        check_base_url(token_url, allow_insecure_http=allow_insecure_http, what="token_url")
        return ClientCredentialsAuth(
            token_url=token_url,
            client_id=login,
            client_secret=secret,
            audience=audience or DEFAULT_AUDIENCE,
        )


API_V1 = ApiVersion(
    number=1,
    default_base_url="https://api.meti.millpont.com",
    source_id_in_path=False,
    features_per_post=1,
    default_batch_size=1,
    can_delete_by_alt_id=False,
)
API_V2 = ApiVersion(
    number=2,
    default_base_url="https://api.millpont.com",
    source_id_in_path=True,
    features_per_post=None,
    default_batch_size=100,
    can_delete_by_alt_id=True,
)
_VERSIONS = {1: API_V1, 2: API_V2}


def api_version(number: Any) -> ApiVersion:
    """The ``ApiVersion`` for 1 or 2 (also given as a string)."""
    try:
        return _VERSIONS[int(number)]
    except (KeyError, TypeError, ValueError):
        raise MetiConfigError(f"api_version must be 1 or 2, got {number!r}.") from None
