"""Users and bearer tokens of the emulator."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping


class UserDirectory:
    """Email/password pairs that may ask for a token (thread-safe)."""

    def __init__(self, users: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._passwords: dict[str, str] = dict(users or {})

    def add(self, email: str, password: str) -> None:
        """Add a user, or change the password of an existing one."""
        with self._lock:
            self._passwords[email] = password

    def check(self, email: str, password: str) -> bool:
        """Whether the password is right for the email (compared in constant time)."""
        with self._lock:
            expected = self._passwords.get(email)
        if expected is None:
            return False
        return hmac.compare_digest(expected.encode(), password.encode())


class TokenStore:
    """Random bearer tokens that expire ``ttl`` seconds after they are issued (thread-safe).

    :param ttl: token lifetime in seconds; changing it affects tokens issued afterwards
    :param clock: a monotonic clock in seconds
    """

    def __init__(self, ttl: float = 3600, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}

    def issue(self) -> str:
        """A new token."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._drop_expired(now)
            self._expiry[token] = now + self.ttl
        return token

    def is_valid(self, token: str) -> bool:
        """Whether the token was issued here and has not expired."""
        with self._lock:
            expiry = self._expiry.get(token)
            if expiry is None:
                return False
            if expiry <= self._clock():
                del self._expiry[token]
                return False
            return True

    def expire_all(self) -> int:
        """Expire every token; return how many were still valid."""
        with self._lock:
            now = self._clock()
            alive = sum(1 for expiry in self._expiry.values() if expiry > now)
            self._expiry.clear()
            return alive

    def active_count(self) -> int:
        """How many tokens are still valid."""
        with self._lock:
            self._drop_expired(self._clock())
            return len(self._expiry)

    def _drop_expired(self, now: float) -> None:
        expired = [token for token, expiry in self._expiry.items() if expiry <= now]
        for token in expired:
            del self._expiry[token]
