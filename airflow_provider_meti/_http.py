"""Small helpers for reading METI responses without leaking secrets.

They read any reply with ``headers``, ``text`` and ``json()``: a ``requests.Response``, or
the :class:`ReadReply` the asyncio transport makes of an aiohttp response once its body is
read. So both transports word errors and honour ``Retry-After`` the same way.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from airflow_provider_meti.exceptions import MetiConfigError


class Reply(Protocol):
    """What the helpers read of an HTTP reply whose body has arrived."""

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive response headers."""
        ...

    @property
    def content(self) -> bytes:
        """The body, as received."""
        ...

    @property
    def text(self) -> str:
        """The body, decoded."""
        ...

    def json(self) -> Any:
        """The body, parsed; ``ValueError`` when it is not JSON."""
        ...


@dataclass(frozen=True)
class ReadReply:
    """A reply whose body has been read (the asyncio transport's responses).

    :param status: the HTTP status
    :param headers: case-insensitive headers (aiohttp's ``CIMultiDictProxy``)
    :param content: the body, as received
    :param charset: the body's declared charset, if any
    """

    status: int
    headers: Mapping[str, str]
    content: bytes
    charset: str | None = None

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def error_message(response: Reply) -> str:
    """The server's own explanation of an error response, kept short."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error_description", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return f"unexpected response body ({content_summary(response)})"


def content_summary(response: Reply) -> str:
    """Content type and the first characters of the body, for error messages."""
    kind = response.headers.get("Content-Type", "no content type").split(";")[0]
    text = " ".join(response.text.split())
    snippet = text[:80] + ("..." if len(text) > 80 else "")
    return f"{kind}: {snippet!r}" if snippet else f"{kind}, empty body"


def retry_after_seconds(response: Reply, *, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` in seconds, from either form (seconds or an HTTP date), or None.

    :param now: the current Unix time, for the date form
    """
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds: float | None = float(value)
    except ValueError:
        seconds = _seconds_until(value, now())
    if seconds is None or seconds != seconds:  # absent, unparseable or NaN
        return None
    return max(seconds, 0.0)


def _seconds_until(http_date: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT ("-0000" parses without a zone)
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp() - now


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of ``url``: what must not change across a redirect."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def join_url(base_url: str, path: str) -> str:
    """``base_url`` and ``path`` joined with exactly one slash, keeping any path prefix."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def check_base_url(url: str, *, allow_insecure_http: bool, what: str = "host") -> str:
    """Validate a METI URL; plain http is only allowed to loopback unless explicitly enabled."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MetiConfigError(
            f"The METI connection's {what} must be a URL such as "
            f"https://api.meti.millpont.com, got {url!r}."
        )
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise MetiConfigError(
            f"The METI connection's {what} uses plain http:// to {parts.hostname}: credentials "
            "and tokens would travel unencrypted. Use https://, or set the extra "
            '"allow_insecure_http": true if you really mean it.'
        )
    return url


def is_loopback(hostname: str) -> bool:
    """True for localhost and loopback addresses."""
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
