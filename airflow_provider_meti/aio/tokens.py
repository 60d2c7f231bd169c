"""AsyncTokenManager: one token per connection for every coroutine of an event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from airflow_provider_meti.aio.within import within
from airflow_provider_meti.auth import (
    CachedToken,
    IssuedToken,
    Renewal,
    remembered,
    renewal_wait_error,
    shared_failure,
    wait_left,
)


class AsyncTokenManager:
    """Keeps one token per lifetime and shares it between the coroutines of one event loop.

    One renewal at a time: coroutines that find the token expired while another renews it
    wait for that renewal (at most ``wait`` seconds each, their call's deadline) instead of
    asking for their own, and when it fails they all fail with its error at once. So a
    token endpoint that is down costs one renewal's retries, not one per waiting trigger.

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
        self._cached: CachedToken | None = None
        self._recent: tuple[str, ...] = ()
        self._renewal: tuple[Renewal, asyncio.Event] | None = None

    async def get(
        self, fetch: Callable[[], Awaitable[IssuedToken]], *, wait: float | None = None
    ) -> str:
        """A token that is valid for at least the renewal margin.

        :param fetch: asks the token endpoint for a new token, when one is needed
        :param wait: most seconds to wait for a renewal another coroutine started
            (default: as long as it takes)
        :raises MetiBudgetError: that renewal did not end within ``wait``
        """
        # One wait, however many renewals it spans (one abandoned, then taken over).
        ends = None if wait is None else self._clock() + wait
        while True:
            cached = self._cached
            if cached is not None and self._clock() < cached.renew_at:
                return cached.value
            ongoing = self._renewal
            if ongoing is None:
                renewal, done = self._renewal = (Renewal(), asyncio.Event())
                return (await self._renew_for_all(fetch, renewal, done)).value
            renewal, done = ongoing
            ended, _ = await within(done.wait(), wait_left(ends, self._clock()))
            if not ended:
                raise renewal_wait_error(wait or 0.0)
            if renewal.error is not None:
                raise shared_failure(renewal.error)
            if renewal.token is not None and renewal.token.usable_after_waiting(self._clock()):
                return renewal.token.value
            # Renewed (the loop returns the token), or abandoned (the loop renews).

    async def _renew_for_all(
        self, fetch: Callable[[], Awaitable[IssuedToken]], renewal: Renewal, done: asyncio.Event
    ) -> CachedToken:
        try:
            renewal.token = await self._renew(fetch)
            return renewal.token
        except Exception as error:
            renewal.error = error
            raise
        except BaseException:
            renewal.abandoned = True  # e.g. the renewing trigger was cancelled: a waiter renews
            raise
        finally:
            self._renewal = None
            done.set()

    def invalidate(self, rejected: str) -> None:
        """Forget ``rejected`` (a token the API refused), unless it was renewed meanwhile."""
        if self._cached is not None and self._cached.value == rejected:
            self._cached = None

    def current(self) -> str | None:
        """The cached token, if any, without renewing it."""
        cached = self._cached
        return cached.value if cached else None

    def recent(self) -> tuple[str, ...]:
        """The last ``RECENT_TOKENS`` tokens this manager got, to redact from replies."""
        return self._recent

    async def _renew(self, fetch: Callable[[], Awaitable[IssuedToken]]) -> CachedToken:
        started = self._clock()
        issued = await fetch()
        self._recent = remembered(self._recent, issued.value)
        if self._on_new_token is not None:
            await self._on_new_token(issued.value)
        self._cached = CachedToken.of(issued, requested_at=started, margin=self._margin)
        return self._cached
