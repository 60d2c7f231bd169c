"""Credentials, accounts and bearer tokens of the emulator.

Every email (v1) and every OAuth2 client (v2) belongs to an account; a token remembers the
account it was issued for, and the API shows each caller only its own account's sources.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_ACCOUNT = "acct_demo"
"""The account of every credential registered without one, and of sources stored directly."""


ALL_SCOPES = ("read:sources", "write:sources", "delete:sources")
"""The scopes of METI's v2 API (its authentication page asks for all three)."""


@dataclass(frozen=True)
class _Credential:
    secret: str
    account_id: str
    scopes: tuple[str, ...] = ALL_SCOPES


class CredentialDirectory:
    """Names (emails or client ids) with their secret and account (thread-safe).

    :param secrets_by_name: name -> secret, all in ``account_id``
    :param account_id: the account of the names given here
    """

    def __init__(
        self, secrets_by_name: Mapping[str, str] | None = None, account_id: str = DEFAULT_ACCOUNT
    ) -> None:
        self._lock = threading.Lock()
        self._credentials = {
            name: _Credential(secret, account_id)
            for name, secret in (secrets_by_name or {}).items()
        }

    def add(
        self,
        name: str,
        secret: str,
        account_id: str = DEFAULT_ACCOUNT,
        scopes: tuple[str, ...] = ALL_SCOPES,
    ) -> None:
        """Add a name, or change the secret, account and allowed scopes of an existing one."""
        with self._lock:
            self._credentials[name] = _Credential(secret, account_id, tuple(scopes))

    def scopes_of(self, name: str) -> tuple[str, ...]:
        """The scopes ``name`` may be granted (none for an unknown name)."""
        with self._lock:
            credential = self._credentials.get(name)
        return () if credential is None else credential.scopes

    def account_of(self, name: str, secret: str) -> str | None:
        """The account of ``name`` when ``secret`` is right for it (constant-time compare)."""
        with self._lock:
            credential = self._credentials.get(name)
        if credential is None:
            return None
        if not hmac.compare_digest(credential.secret.encode(), secret.encode()):
            return None
        return credential.account_id

    def check(self, name: str, secret: str) -> bool:
        """Whether ``secret`` is right for ``name``."""
        return self.account_of(name, secret) is not None


@dataclass(frozen=True)
class Grant:
    """What a token stands for: its account, its API generation and (v2) its scopes."""

    expiry: float
    account_id: str
    api_version: int = 1
    scopes: tuple[str, ...] = ()


class TokenStore:
    """Bearer tokens that expire ``ttl`` seconds after they are issued (thread-safe).

    :param ttl: token lifetime in seconds; changing it affects tokens issued afterwards
    :param clock: a monotonic clock in seconds
    """

    def __init__(self, ttl: float = 3600, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._issued: dict[str, Grant] = {}
        # Signs JWT-shaped tokens; a fresh key per emulator, since nothing outside checks them.
        self._signing_key = secrets.token_bytes(32)

    def issue(
        self,
        account_id: str = DEFAULT_ACCOUNT,
        claims: Mapping[str, Any] | None = None,
        scopes: tuple[str, ...] = (),
    ) -> str:
        """A new token for ``account_id``: opaque (v1), or a signed JWT carrying ``claims``
        (v2, granting ``scopes``)."""
        token = secrets.token_urlsafe(32) if claims is None else self._signed_jwt(claims)
        now = self._clock()
        grant = Grant(now + self.ttl, account_id, 1 if claims is None else 2, tuple(scopes))
        with self._lock:
            self._drop_expired(now)
            self._issued[token] = grant
        return token

    def grant_of(self, token: str) -> Grant | None:
        """What a token issued here that has not expired stands for, else None."""
        with self._lock:
            issued = self._issued.get(token)
            if issued is None:
                return None
            if issued.expiry <= self._clock():
                del self._issued[token]
                return None
            return issued

    def account_of(self, token: str) -> str | None:
        """The account of a token issued here that has not expired, else None."""
        grant = self.grant_of(token)
        return None if grant is None else grant.account_id

    def is_valid(self, token: str) -> bool:
        """Whether the token was issued here and has not expired."""
        return self.account_of(token) is not None

    def expire_all(self) -> int:
        """Expire every token; return how many were still valid."""
        with self._lock:
            now = self._clock()
            alive = sum(1 for issued in self._issued.values() if issued.expiry > now)
            self._issued.clear()
            return alive

    def active_count(self) -> int:
        """How many tokens are still valid."""
        with self._lock:
            self._drop_expired(self._clock())
            return len(self._issued)

    def _drop_expired(self, now: float) -> None:
        expired = [token for token, issued in self._issued.items() if issued.expiry <= now]
        for token in expired:
            del self._issued[token]

    def _signed_jwt(self, claims: Mapping[str, Any]) -> str:
        header = _base64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _base64url(json.dumps(dict(claims), separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}".encode()
        signature = hmac.new(self._signing_key, signing_input, hashlib.sha256).digest()
        return f"{header}.{payload}.{_base64url(signature)}"


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT-shaped token, unverified (for tests and curious users)."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
