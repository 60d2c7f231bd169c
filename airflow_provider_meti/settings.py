"""ClientSettings: how a client talks to METI (no credentials; those live in token sources)."""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_provider_meti.api import API_V1
from airflow_provider_meti.retries import RetryPolicy


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
