"""Counters of what the emulator served, for tests and benchmarks to assert on."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Counters:
    """Thread-safe tallies of tokens, requests, responses, faults and created sources."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._token_requests = 0
        self._tokens_issued = 0
        self._sources_created = 0
        self._abandoned = 0
        self._requests: Counter[str] = Counter()
        self._responses: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()

    def token_requested(self) -> None:
        with self._lock:
            self._token_requests += 1

    def token_issued(self) -> None:
        with self._lock:
            self._tokens_issued += 1

    def sources_created(self, count: int) -> None:
        with self._lock:
            self._sources_created += count

    def abandoned(self) -> None:
        with self._lock:
            self._abandoned += 1

    def request(self, method: str, path: str) -> None:
        with self._lock:
            self._requests[f"{method} {path}"] += 1

    def response(self, status: int) -> None:
        with self._lock:
            self._responses[str(status)] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        """A copy of every counter.

        ``token_requests`` counts calls of ``POST /token`` and ``POST /oauth/token``
        whatever their outcome and ``tokens_issued`` the successful ones; ``requests`` is
        keyed ``"METHOD /path"`` (admin endpoints excluded), ``responses`` by status code
        (as a string) and ``faults`` by kind; ``abandoned`` counts requests whose client
        hung up while a ``latency`` fault held them.
        """
        with self._lock:
            return {
                "token_requests": self._token_requests,
                "tokens_issued": self._tokens_issued,
                "sources_created": self._sources_created,
                "abandoned": self._abandoned,
                "requests": dict(self._requests),
                "responses": dict(self._responses),
                "faults": dict(self._faults),
            }

    def reset(self) -> None:
        with self._lock:
            self._token_requests = 0
            self._tokens_issued = 0
            self._sources_created = 0
            self._abandoned = 0
            self._requests.clear()
            self._responses.clear()
            self._faults.clear()
