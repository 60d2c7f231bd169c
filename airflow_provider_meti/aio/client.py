"""AsyncMetiClient: what the trigger asks of METI, from a coroutine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from airflow_provider_meti.aio.tokens import AsyncTokenManager
from airflow_provider_meti.aio.transport import AsyncTransport
from airflow_provider_meti.api import API_V1, ApiVersion
from airflow_provider_meti.auth import TokenSource
from airflow_provider_meti.replies import source_object
from airflow_provider_meti.settings import ClientSettings
from airflow_provider_meti.token_cache import HostTokenCache


class AsyncMetiClient:
    """A client for one METI account on one event loop; use it only from that loop.

    :param settings: connection settings
    :param token_source: how to obtain tokens (see ``airflow_provider_meti.auth``)
    :param api: the API generation to speak
    :param tokens: a token cache to share with other clients of the same connection
        (default: a cache of its own)
    :param host_cache: the token shared by this host's processes (None: this process's own)
    :param clock: a monotonic clock for retry deadlines (tests inject one)
    :param sleep: awaits the waits between retries (tests inject one)
    """

    def __init__(
        self,
        settings: ClientSettings,
        token_source: TokenSource,
        *,
        api: ApiVersion = API_V1,
        tokens: AsyncTokenManager | None = None,
        host_cache: HostTokenCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if tokens is None:
            tokens = AsyncTokenManager(margin=settings.token_refresh_margin, clock=clock)
        self._transport = AsyncTransport(
            settings, token_source, tokens, host_cache=host_cache, clock=clock, sleep=sleep
        )
        self.settings = settings
        self.api = api

    def __repr__(self) -> str:
        return (
            f"AsyncMetiClient(base_url={self.settings.base_url!r}, api_version={self.api.number})"
        )

    async def __aenter__(self) -> AsyncMetiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close pooled connections."""
        await self._transport.close()

    async def get_token(self) -> str:
        """A valid bearer token, fetched on first use and renewed shortly before expiry."""
        return await self._transport.token(self._transport.new_budget())

    async def request(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send one request and return its parsed JSON body (None for an empty body)."""
        budget = self._transport.new_budget()
        return await self._transport.request(method, endpoint, budget, params=params, json=json)

    async def get_source(self, source_id: str) -> dict[str, Any]:
        """One source; ``MetiNotFoundError`` when it does not exist."""
        path, params = self.api.source_route(source_id)
        return source_object(await self.request("GET", path, params=params), path)
