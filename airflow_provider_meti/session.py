"""The ``requests`` session the client sends everything through, and its bearer auth."""

from __future__ import annotations

from typing import Any

import requests
import requests.auth
from requests.adapters import HTTPAdapter


class MetiSession(requests.Session):
    """A session whose own ``verify`` (False or a CA bundle path) beats the environment.

    It never follows redirects itself: the transport follows those within the origin, under
    the request's one timeout (see ``transport.Transport._exchange``).

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
        if proxies or verify is not None or cert is not None:
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        else:  # what every call of the client passes
            merged = self._environment_of(url)
            if stream is not None:
                merged["stream"] = stream
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


def new_session(*, verify: bool | str, pool_size: int) -> MetiSession:
    """A session for one client: its own connection pool, TLS setting and user agent."""
    session = MetiSession()
    # Retries are ours (tenacity); urllib3 must not retry behind our back.
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = verify
    session.headers["User-Agent"] = "airflow-provider-meti"
    return session


class BearerAuth(requests.auth.AuthBase):
    """Sets the bearer header; passed as ``auth`` so that a .netrc entry cannot replace it."""

    __slots__ = ("_header",)

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request
