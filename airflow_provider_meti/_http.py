"""Small helpers for reading METI responses without leaking secrets.

They read any reply with ``headers``, ``text`` and ``json()``: a ``requests.Response``, or
the :class:`ReadReply` the asyncio transport makes of an aiohttp response once its body is
read. So both transports word errors and honour ``Retry-After`` the same way.
"""

from __future__ import annotations

import ipaddress
import json
import posixpath
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote, quote_plus, unquote, urlsplit

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


MAX_MESSAGE_CHARS = 500
"""Most characters of a server's message quoted in an error (after redaction)."""
MAX_SNIPPET_CHARS = 80
"""Most characters of an unexpected body quoted in an error (after redaction)."""


def _unchanged(text: str) -> str:
    return text


def error_message(response: Reply, redacted: Callable[[str], str] = _unchanged) -> str:
    """The server's own explanation of an error response, secrets redacted, then kept short.

    Reads ``{"message"}`` (METI v1), OAuth2's ``{"error_description"}``/``{"error"}`` and
    FastAPI's ``{"detail": "text"}`` and ``{"detail": [{"loc", "msg", "type"}, ...]}``.

    :param redacted: removes secrets; applied before the text is cut, so that no prefix of
        a secret survives the cut
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        items = validation_details(body)
        if items:
            return _cut(redacted("; ".join(_describe_item(item) for item in items)))
        for key in ("message", "error_description", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return _cut(redacted(value))
    return f"unexpected response body ({content_summary(response, redacted)})"


def validation_details(body: Any) -> list[dict[str, Any]]:
    """The items of a FastAPI validation error (``{"detail": [{"loc", "msg", "type"}]}``),
    or an empty list for any other body."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, list):
        return []
    return [item for item in detail if isinstance(item, dict)]


def redacted_details(body: Any, redacted: Callable[[str], str]) -> list[dict[str, Any]]:
    """:func:`validation_details` with every string in them redacted."""
    return [_redact_value(item, redacted) for item in validation_details(body)]


def _redact_value(value: Any, redacted: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redacted(value)
    if isinstance(value, dict):
        return {key: _redact_value(item, redacted) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_value(item, redacted) for item in value]
    return value


def _describe_item(item: dict[str, Any]) -> str:
    """``body.feature_collection.features.3.geometry: msg (type)``."""
    loc = item.get("loc")
    where = ".".join(str(part) for part in loc) if isinstance(loc, list) else ""
    message = str(item.get("msg") or "invalid")
    kind = item.get("type")
    text = f"{where}: {message}" if where else message
    return f"{text} ({kind})" if isinstance(kind, str) and kind else text


def missing_scope(response: Reply) -> str | None:
    """The scope a 403 says is missing, when the server says which: the ``scope`` of an
    RFC 6750 ``WWW-Authenticate: Bearer error="insufficient_scope"`` header, or a
    ``required_scope``/``scope`` field of the JSON body."""
    header = response.headers.get("WWW-Authenticate") or ""
    match = re.search(r'scope="([^"]*)"', header)
    if match and match.group(1):
        return match.group(1)
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        for key in ("required_scope", "missing_scope", "scope"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                return " ".join(value)
    return None


def content_summary(response: Reply, redacted: Callable[[str], str] = _unchanged) -> str:
    """Content type and the first characters of the body (secrets redacted first)."""
    kind = response.headers.get("Content-Type", "no content type").split(";")[0]
    text = " ".join(redacted(response.text).split())
    snippet = text[:MAX_SNIPPET_CHARS] + ("..." if len(text) > MAX_SNIPPET_CHARS else "")
    return f"{kind}: {snippet!r}" if snippet else f"{kind}, empty body"


def body_description(response: Reply) -> str:
    """Content type and length of the body, without quoting any of it (for token replies,
    whose body may hold a token in a form nobody can redact)."""
    kind = response.headers.get("Content-Type", "no content type").split(";")[0]
    size = len(response.content)
    return f"{kind}, {size} bytes" if size else f"{kind}, empty body"


def _cut(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[:MAX_MESSAGE_CHARS] + "..."


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
    """``text`` with every secret replaced by ``***``: as it is, and as a JSON string, a
    form or a URL would carry it (a server echoing the request quotes it in one of those)."""
    for secret in secrets:
        if not secret:
            continue
        for form in _forms_of(secret):
            text = text.replace(form, "***")
    return text


def _forms_of(secret: str) -> list[str]:
    forms = [
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
    ]
    # Longest first, so that a form holding another is replaced whole.
    return sorted({form for form in forms if form}, key=len, reverse=True)


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 30  # as requests


def redirect_refusal(url: str, target: str, status: int) -> str | None:
    """Why a redirect from ``url`` to ``target`` is not followed, or None when it may be.

    A redirect to another scheme, host or port would carry the request (and its body) there.
    """
    if origin(target) == origin(url):
        return None
    shown = "{}://{}:{}".format(*origin(target))
    return (
        f"refused to follow a redirect (HTTP {status}) to another host, {shown}; only "
        "redirects within the METI base URL's host are followed"
    )


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


def resolved_target(url: str) -> tuple[tuple[str, str, int | None], str]:
    """Origin and path of ``url`` as the server will see it, for comparing two URLs.

    Dot segments (``.``, ``..``, also percent-encoded), repeated slashes, encoded slashes
    and case are resolved the way a lenient server would, so that two spellings of one
    resource compare equal. Query and fragment are dropped.
    """
    parts = urlsplit(url)
    path = parts.path
    for _ in range(3):  # "%252F" decodes twice on some stacks; stop once stable
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    path = path.replace("\\", "/")
    normalized = posixpath.normpath("/" + path)
    normalized = re.sub("/+", "/", normalized).rstrip("/") or "/"
    return origin(url), normalized.lower()


def request_url(base_url: str, endpoint: str) -> str:
    """The URL a request to ``endpoint`` (relative to ``base_url``) is sent to, dot
    segments resolved as requests (urllib3) resolves them before sending."""
    from urllib3.util import parse_url

    return str(parse_url(join_url(base_url, endpoint.split("#", 1)[0])).url)


def same_resource(url: str, other: str) -> bool:
    """True when ``url`` and ``other`` name one resource once resolved (see
    :func:`resolved_target`)."""
    return resolved_target(url) == resolved_target(other)
