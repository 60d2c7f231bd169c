"""AsyncTokenManager: one token per connection for every coroutine of an event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from airflow_provider_meti.auth import CachedToken, IssuedToken


class AsyncTokenManager:
    """Keeps one token per lifetime and shares it between the coroutines of one event loop.

    Renewal happens once, under an ``asyncio.Lock``: coroutines that find the token expired
    while another renews it wait for that renewal instead of asking for their own.

    :param margin: seconds before expiry at which the token is renewed (capped at a fifth of
        the token's lifetime, as ``auth.TokenManager`` does)
    :param on_new_token: awaited with every new token, e.g. to register it with a masker
    :param clock: a monotonic clock; replaceable in tests
    """

    def __init__(
        self,
        *,
        margin: float = 60.0,
        on_new_token: Callable[[str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._margin = margin
        self._on_new_token = on_new_token
        self._clock = clock
        self._lock = asyncio.Lock()
        self._cached: CachedToken | None = None

    async def get(self, fetch: Callable[[], Awaitable[IssuedToken]]) -> str:
        """A token that is valid for at least the renewal margin.

        :param fetch: asks the token endpoint for a new token, when one is needed
        """
        cached = self._cached
        if cached is not None and self._clock() < cached.renew_at:
            return cached.value
        async with self._lock:
            cached = self._cached
            if cached is None or self._clock() >= cached.renew_at:
                cached = await self._renew(fetch)
            return cached.value

    def invalidate(self, rejected: str) -> None:
        """Forget ``rejected`` (a token the API refused), unless it was renewed meanwhile."""
        if self._cached is not None and self._cached.value == rejected:
            self._cached = None

    def current(self) -> str | None:
        """The cached token, if any, without renewing it."""
        cached = self._cached
        return cached.value if cached else None

    async def _renew(self, fetch: Callable[[], Awaitable[IssuedToken]]) -> CachedToken:
        started = self._clock()
        issued = await fetch()
        if self._on_new_token is not None:
            await self._on_new_token(issued.value)
        self._cached = CachedToken.of(issued, requested_at=started, margin=self._margin)
        return self._cached
