"""Bearer tokens for the METI API: how to ask for one, and how long to keep it.

Two token sources exist, one per API generation: email/password at ``{base}/token`` (v1) and
OAuth2 client credentials at the tenant's ``/oauth/token`` (v2). ``TokenManager`` caches
whichever one the client uses, renews it shortly before it expires and lets every thread of
the process share it.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from airflow_provider_meti._http import (
    Reply,
    body_description,
    error_message,
    redact,
    retry_after_seconds,
)
from airflow_provider_meti.exceptions import MetiApiError, MetiAuthError, MetiBudgetError
from airflow_provider_meti.retries import mark_final

DEFAULT_AUDIENCE = "https://api.meti.millpont.com"

# The renewal margin never eats more than this share of a token's life, so that a token
# that lives only a couple of seconds still serves calls instead of being renewed each time.
MAX_MARGIN_FRACTION = 0.2


@dataclass(frozen=True)
class IssuedToken:
    """A token as the token endpoint returned it (or as the host's token cache kept it)."""

    value: str
    expires_in: float
    lifetime: float | None = None
    """The token's whole lifetime when ``expires_in`` is only what is left of it (a token
    read from the host cache); the renewal margin is capped by the whole lifetime."""


class TokenSource(Protocol):
    """Asks a token endpoint for a new token."""

    @property
    def token_url(self) -> str:
        """Where tokens are requested."""
        ...

    def fetch(self, session: requests.Session, timeout: float | tuple[float, float]) -> IssuedToken:
        """Request one token; raise MetiAuthError for rejected credentials."""
        ...

    def request_body(self) -> dict[str, str]:
        """The JSON body of a token request (holds the secret: never log it)."""
        ...

    def issued_token(self, payload: Any) -> IssuedToken:
        """The token in the endpoint's parsed JSON reply; ``MetiAuthError`` when there is none."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs or errors."""
        ...


@dataclass(frozen=True, repr=False)
class EmailPasswordAuth:
    """METI v1: ``POST {base}/token`` with ``{"email", "password"}``."""

    token_url: str
    email: str
    password: str

    def fetch(self, session: requests.Session, timeout: float | tuple[float, float]) -> IssuedToken:
        payload = _post_token_request(
            session, self.token_url, self.request_body, timeout, self.secrets
        )
        return self.issued_token(payload)

    def request_body(self) -> dict[str, str]:
        return {"email": self.email, "password": self.password}

    def issued_token(self, payload: Any) -> IssuedToken:
        return _issued_token(payload, token_key="token", url=self.token_url)

    def secrets(self) -> tuple[str, ...]:
        return (self.password,)

    def __repr__(self) -> str:
        return f"EmailPasswordAuth(token_url={self.token_url!r}, email={self.email!r})"


@dataclass(frozen=True, repr=False)
class ClientCredentialsAuth:
    """METI v2: OAuth2 client credentials at the tenant's token endpoint."""

    token_url: str
    client_id: str
    client_secret: str
    audience: str = DEFAULT_AUDIENCE
    scope: str | None = None
    """Space-separated scopes to ask for (e.g. ``read:sources write:sources``); None: the
    client's defaults."""

    def fetch(self, session: requests.Session, timeout: float | tuple[float, float]) -> IssuedToken:
        payload = _post_token_request(
            session, self.token_url, self.request_body, timeout, self.secrets
        )
        return self.issued_token(payload)

    def issued_token(self, payload: Any) -> IssuedToken:
        return _issued_token(payload, token_key="access_token", url=self.token_url)

    def request_body(self) -> dict[str, str]:
        body = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "audience": self.audience,
            "grant_type": "client_credentials",
        }
        if self.scope:
            body["scope"] = self.scope
        return body

    def secrets(self) -> tuple[str, ...]:
        return (self.client_secret,)

    def __repr__(self) -> str:
        return (
            f"ClientCredentialsAuth(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            f"audience={self.audience!r})"
        )


def _post_token_request(
    session: requests.Session,
    url: str,
    body: Callable[[], Mapping[str, str]],
    timeout: float | tuple[float, float],
    secrets: Callable[[], tuple[str, ...]],
) -> Any:
    # The credentials are passed as callables, never held in a local of a frame that may
    # raise: tracebacks rendered with their locals (Airflow 3.0's console, error trackers)
    # would show them.
    # Redirects are refused: a token endpoint that redirects would carry credentials elsewhere.
    response = session.post(url, json=body(), timeout=timeout, allow_redirects=False)
    return token_payload(response.status_code, response, url, secrets)


def token_payload(
    status: int, reply: Reply, url: str, secrets: Callable[[], tuple[str, ...]]
) -> Any:
    """The parsed JSON of a token endpoint's reply, whichever transport received it.

    :param status: the reply's HTTP status
    :param reply: the reply, its body read
    :param url: the token endpoint (only its path is quoted in errors)
    :param secrets: the values to redact from the server's message
    :raises MetiAuthError: the credentials were refused, or the body is not JSON
    :raises MetiApiError: any other error status (retryable when 429 or 5xx)
    """
    path = urlsplit(url).path or "/"
    if status in (400, 401, 403):
        detail = token_error_text(reply, secrets)
        raise MetiAuthError(
            f"METI authentication failed at {path} (HTTP {status}): {detail}. "
            "Check the connection's login and password."
        )
    if status >= 300:
        raise MetiApiError(
            token_error_text(reply, secrets),
            status_code=status,
            method="POST",
            path=path,
            retry_after=retry_after_seconds(reply),
        )
    try:
        return reply.json()
    except ValueError:
        # Never quoted: a body that is not JSON may carry the token in a form (e.g.
        # "access_token=...&scope=...") that nothing has registered as a secret yet.
        raise MetiAuthError(
            f"METI token endpoint {path} answered HTTP {status} with a body that "
            f"is not JSON ({body_description(reply)}); expected a JSON object."
        ) from None


def token_error_text(reply: Reply, secrets: Callable[[], tuple[str, ...]]) -> str:
    """A token endpoint's error in its own words (a JSON ``message``, ``error_description``,
    ``detail`` or ``error``), secrets redacted; any other body only described, never quoted."""
    message = error_message(reply, lambda text: redact(text, secrets()))
    if message.startswith("unexpected response body ("):
        return f"unexpected response body ({body_description(reply)})"
    return message


def _issued_token(payload: Any, *, token_key: str, url: str) -> IssuedToken:
    path = urlsplit(url).path or "/"
    if not isinstance(payload, dict):
        raise MetiAuthError(
            f"METI token endpoint {path} returned {type(payload).__name__}, not an object."
        )
    value = payload.get(token_key)
    if not isinstance(value, str) or not value:
        raise MetiAuthError(f"METI token endpoint {path} returned no {token_key!r} field.")
    expires_in = payload.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
        raise MetiAuthError(
            f"METI token endpoint {path} returned an invalid 'expires_in' "
            f"({type(expires_in).__name__}); expected a positive number of seconds."
        )
    huge = isinstance(expires_in, int) and abs(expires_in) >= 1e300  # float() would overflow
    seconds = math.inf if huge else float(expires_in)
    if not 0 < seconds < math.inf:  # also refuses NaN and Infinity
        shown = "a number too large for a float" if huge else repr(expires_in)
        raise MetiAuthError(
            f"METI token endpoint {path} returned 'expires_in' = {shown}; "
            "expected a positive, finite number of seconds."
        )
    return IssuedToken(value=value, expires_in=seconds)


@dataclass(frozen=True)
class CachedToken:
    """A token, the monotonic time at which it is to be renewed, and when it expires."""

    value: str
    renew_at: float
    expires_at: float

    @classmethod
    def of(cls, issued: IssuedToken, *, requested_at: float, margin: float) -> CachedToken:
        """Cache ``issued``, requested at ``requested_at``, to be renewed ``margin`` s early
        (at most a fifth of its lifetime)."""
        lifetime = issued.lifetime if issued.lifetime is not None else issued.expires_in
        margin = min(margin, lifetime * MAX_MARGIN_FRACTION)
        expires_at = requested_at + issued.expires_in
        return cls(issued.value, expires_at - margin, expires_at)

    def usable_after_waiting(self, now: float) -> bool:
        """Whether a caller that waited for this renewal may use it: until it expires, even
        past ``renew_at`` (a token endpoint slower than the margin must not set off one
        renewal per waiter)."""
        return now < self.expires_at


@dataclass(eq=False)
class Renewal:
    """One token renewal in progress, whose outcome every request waiting for it shares."""

    error: BaseException | None = None
    abandoned: bool = False
    token: CachedToken | None = None  # what it got, for the callers that waited for it


RECENT_TOKENS = 8
"""Tokens a manager remembers for redaction: a reply to a request sent with a token that has
since been renewed or refused (by this caller's replay, or another's) may still quote it."""


def remembered(recent: tuple[str, ...], value: str) -> tuple[str, ...]:
    """``recent`` with ``value`` added, the oldest dropped beyond ``RECENT_TOKENS``; a new
    tuple, so readers in other threads never see it change under them."""
    return (*[token for token in recent if token != value], value)[-RECENT_TOKENS:]


def wait_left(ends: float | None, now: float) -> float | None:
    """Seconds left of a wait that ends at ``ends`` (None: no limit), never negative."""
    return None if ends is None else max(ends - now, 0.0)


def shared_failure(error: BaseException) -> BaseException:
    """What a request that waited for a failed renewal raises: a copy of its error (each
    waiter gets its own traceback), final, since the renewal spent its own retries."""
    try:
        shared = copy.copy(error)
    except Exception:  # pragma: no cover - an error that cannot be copied is shared as it is
        shared = error
    return mark_final(shared)


def renewal_wait_error(waited: float) -> MetiBudgetError:
    """The error for a request that stopped waiting for another's token renewal."""
    return MetiBudgetError(
        "token renewal",
        f"it waited {waited:.3g} s for the renewal another request started, until its "
        "call's deadline",
    )


class TokenManager:
    """Keeps one token per lifetime and shares it between threads.

    One renewal at a time: threads that need a token while another renews it wait for that
    renewal (at most ``wait`` seconds), and when it fails they fail with its error instead
    of each starting a renewal of their own.

    :param fetch: asks the token endpoint for a new token
    :param margin: seconds before expiry at which the token is renewed (capped at a fifth
        of the token's lifetime)
    :param on_new_token: called with every new token, e.g. to register it with a masker
    :param clock: a monotonic clock; replaceable in tests
    """

    def __init__(
        self,
        fetch: Callable[[], IssuedToken],
        *,
        margin: float = 60.0,
        on_new_token: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._margin = margin
        self._on_new_token = on_new_token
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: CachedToken | None = None
        self._recent: tuple[str, ...] = ()
        self._renewal: tuple[Renewal, threading.Event] | None = None

    def get(
        self, fetch: Callable[[], IssuedToken] | None = None, *, wait: float | None = None
    ) -> str:
        """A token that is valid for at least the renewal margin.

        :param fetch: asks for a new token if one is needed, instead of the manager's own
            ``fetch`` (e.g. one that counts against the caller's retry budget)
        :param wait: most seconds to wait for a renewal another thread started (default:
            as long as it takes)
        :raises MetiBudgetError: that renewal did not end within ``wait``
        """
        # One wait, however many renewals it spans (one abandoned, then taken over).
        ends = None if wait is None else self._clock() + wait
        while True:
            cached = self._cached
            if cached is not None and self._clock() < cached.renew_at:
                return cached.value
            with self._lock:
                cached = self._cached
                if cached is not None and self._clock() < cached.renew_at:
                    return cached.value
                ongoing = self._renewal
                if ongoing is None:
                    ongoing = self._renewal = (Renewal(), threading.Event())
                    mine = True
                else:
                    mine = False
            renewal, done = ongoing
            if mine:
                return self._renew_for_all(fetch or self._fetch, renewal, done).value
            if not done.wait(timeout=wait_left(ends, self._clock())):
                raise renewal_wait_error(wait or 0.0)
            if renewal.error is not None:
                raise shared_failure(renewal.error)
            if renewal.token is not None and renewal.token.usable_after_waiting(self._clock()):
                return renewal.token.value
            # Renewed (the loop returns the token), or abandoned (the loop renews).

    def _renew_for_all(
        self, fetch: Callable[[], IssuedToken], renewal: Renewal, done: threading.Event
    ) -> CachedToken:
        try:
            renewal.token = self._renew(fetch)
            return renewal.token
        except Exception as error:
            renewal.error = error
            raise
        except BaseException:
            renewal.abandoned = True  # e.g. interrupted: a waiter renews instead
            raise
        finally:
            with self._lock:
                self._renewal = None
            done.set()

    def invalidate(self, rejected: str) -> None:
        """Forget ``rejected`` (a token the API refused), unless another thread renewed it."""
        with self._lock:
            if self._cached is not None and self._cached.value == rejected:
                self._cached = None

    def current(self) -> str | None:
        """The cached token, if any, without renewing it."""
        cached = self._cached
        return cached.value if cached else None

    def recent(self) -> tuple[str, ...]:
        """The last ``RECENT_TOKENS`` tokens this manager got, to redact from replies."""
        return self._recent

    def _renew(self, fetch: Callable[[], IssuedToken]) -> CachedToken:
        started = self._clock()
        issued = fetch()
        self._recent = remembered(self._recent, issued.value)
        if self._on_new_token is not None:
            self._on_new_token(issued.value)
        self._cached = CachedToken.of(issued, requested_at=started, margin=self._margin)
        return self._cached
