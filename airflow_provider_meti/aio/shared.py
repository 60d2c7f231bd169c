"""One client, one aiohttp session and one token per connection per event loop.

Every trigger of a connection on the triggerer's loop borrows the same
:class:`AsyncMetiClient` with :func:`shared_client`. Its session is closed when the last
borrower returns it; the connection's token is kept (for the next trigger), and so are the
tokens of at most ``MAX_IDLE_CONNECTIONS`` connections that nobody uses. A connection whose
settings changed (a rotated secret) gets a new client and token; the old client is closed
when its last borrower is done.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from airflow_provider_meti._compat import amask_secret
from airflow_provider_meti.aio.client import AsyncMetiClient
from airflow_provider_meti.aio.tokens import AsyncTokenManager
from airflow_provider_meti.connection import ConnectionSettings
from airflow_provider_meti.token_cache import HostTokenCache

MAX_IDLE_CONNECTIONS = 32


@dataclass
class _Shared:
    """What the triggers of one connection share on one loop."""

    parts: ConnectionSettings
    tokens: AsyncTokenManager
    host_cache: HostTokenCache | None
    client: AsyncMetiClient | None = None
    borrowers: int = 0


# Keyed by loop, so nothing crosses loops; an entry dies with its loop.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Shared]] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def shared_client(conn_id: str, parts: ConnectionSettings) -> AsyncIterator[AsyncMetiClient]:
    """Borrow the loop's client for ``conn_id`` (built from ``parts``) for the ``async with``.

    :param conn_id: the Airflow connection id
    :param parts: the connection's settings; when they differ from the shared client's, a
        new client (and token) replaces it
    """
    shared = _borrow(conn_id, parts)
    try:
        assert shared.client is not None
        yield shared.client
    finally:
        await _give_back(shared)


def _borrow(conn_id: str, parts: ConnectionSettings) -> _Shared:
    entries = _by_loop.setdefault(asyncio.get_running_loop(), {})
    shared = entries.pop(conn_id, None)
    if shared is None or shared.parts != parts:
        tokens = AsyncTokenManager(
            margin=parts.settings.token_refresh_margin, on_new_token=amask_secret
        )
        shared = _Shared(parts, tokens, parts.host_token_cache())
    entries[conn_id] = shared  # now the most recently used
    if shared.client is None:
        shared.client = AsyncMetiClient(
            parts.settings,
            parts.token_source(),
            api=parts.api,
            tokens=shared.tokens,
            host_cache=shared.host_cache,
        )
    shared.borrowers += 1
    _forget_idle(entries)
    return shared


async def _give_back(shared: _Shared) -> None:
    shared.borrowers -= 1
    if shared.borrowers == 0 and shared.client is not None:
        client, shared.client = shared.client, None
        # Shielded: a borrower cancelled while giving back still closes the session.
        await asyncio.shield(client.close())


def _forget_idle(entries: dict[str, _Shared]) -> None:
    """Drop the least recently used idle connections beyond ``MAX_IDLE_CONNECTIONS``."""
    idle = [conn_id for conn_id, shared in entries.items() if shared.borrowers == 0]
    for conn_id in idle[: max(0, len(idle) - MAX_IDLE_CONNECTIONS)]:
        del entries[conn_id]
