"""Errors raised by the METI provider.

Every message is written for the person reading a task log: it names what failed and where,
and never contains a password, client secret or token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class MetiError(Exception):
    """Base class of every error this provider raises."""


class MetiConfigError(MetiError, ValueError):
    """The connection's settings are unusable (bad URL, missing field, insecure scheme)."""


class MetiAuthError(MetiError):
    """Authentication failed: wrong credentials, or a token the API keeps rejecting."""


class MetiApiError(MetiError):
    """The API answered with an error status, or could not be reached at all.

    :param message: the server's ``message`` (or a description of the network failure)
    :param status_code: the HTTP status, or ``None`` when no response arrived
    :param method: the HTTP method of the failed request
    :param path: the request path, without query string
    :param retry_after: the server's ``Retry-After`` in seconds, when it sent one
    :param details: the items of a FastAPI validation error (``{"loc", "msg", "type"}``
        each, as the server sent them, secrets redacted); empty for any other reply
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
        details: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.method = method
        self.path = path
        self.retry_after = retry_after
        self.details: list[dict[str, Any]] = list(details)
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"{self.method} {self.path}" if self.method and self.path else "METI API"
        if self.status_code is not None:
            return f"{where} failed (HTTP {self.status_code}): {self.message}"
        if isinstance(self, MetiConnectionError):
            return f"{where} failed (no response): {self.message}"
        # A reply that arrived but could not be used (e.g. a body of the wrong shape).
        return f"{where} failed: {self.message}"

    def __reduce__(
        self,
    ) -> tuple[Any, ...]:  # keeps the keyword arguments when pickled (e.g. by executors)
        return (
            _rebuild_api_error,
            (
                type(self),
                self.message,
                self.status_code,
                self.method,
                self.path,
                self.retry_after,
                self.details,
            ),
        )


def _rebuild_api_error(cls, message, status_code, method, path, retry_after, details=()):  # type: ignore[no-untyped-def]
    return cls(
        message,
        status_code=status_code,
        method=method,
        path=path,
        retry_after=retry_after,
        details=details,
    )


class MetiBudgetError(MetiApiError):
    """A request the call's retry budget did not let through (sent ``max_retries + 1`` times
    already, or the call's deadline passed) that had not failed before in the call.

    :param request: the request, as the budget names it (method, path and query)
    :param reason: why it was not sent
    :param last_error: the request's last failure in this call, if it had one
    """

    def __init__(self, request: str, reason: str, last_error: BaseException | None = None):
        self.request = request
        self.reason = reason
        self.last_error = last_error
        message = f"{request} was not sent: {reason}"
        if last_error is not None:
            message += f"; its last attempt failed: {last_error}"
        method, _, path = request.partition(" ")
        super().__init__(message, method=method or None, path=path.split("?")[0] or None)

    def _describe(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.request, self.reason, self.last_error))


class MetiNotFoundError(MetiApiError):
    """The API answered 404: no such source."""


class MetiConnectionError(MetiApiError):
    """No response arrived: connection refused or dropped, or a timeout.

    ``request_sent`` is True when the request may have reached the server before the failure,
    so a non-idempotent request must not be re-sent blindly.
    """

    def __init__(self, message: str, *, method: str, path: str, request_sent: bool) -> None:
        self.request_sent = request_sent
        super().__init__(message, method=method, path=path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_connection_error,
            (self.message, self.method, self.path, self.request_sent),
        )


def _rebuild_connection_error(message, method, path, request_sent):  # type: ignore[no-untyped-def]
    return MetiConnectionError(message, method=method, path=path, request_sent=request_sent)


class MetiPartialCreateError(MetiApiError):
    """Creating a FeatureCollection stopped part-way; ``created`` lists what was stored.

    Re-running the same create (or retrying the task) stores only what is missing.
    ``unconfirmed`` names features (by ``alt_id``) whose create may or may not have been
    stored: METI's listing could not show it, so they were not sent again. ``in_doubt`` names
    features whose answer was lost and whose lookup was cut short (by the error, a cancel or
    an interrupt): they may be stored, and a re-run with ``skip_existing`` (or the task's
    retry, which resumes) looks them up before sending them.

    :param cause: what stopped the create (an API error, or an interrupt such as a timeout)
    :param created: ``{"id", "alt_id"}`` of every feature stored so far
    :param total: how many features the create had
    :param unconfirmed: alt_ids whose outcome the listing cannot show
    :param in_doubt: alt_ids whose outcome was not looked up
    """

    def __init__(
        self,
        cause: BaseException,
        created: list[dict[str, str]],
        total: int,
        *,
        unconfirmed: Sequence[str] = (),
        in_doubt: Sequence[str] = (),
    ) -> None:
        self.cause = cause
        self.created = created
        self.total = total
        self.unconfirmed = list(unconfirmed)
        self.in_doubt = list(dict.fromkeys(in_doubt))
        message = f"{len(created)} of {total} features were created before this error: "
        message += str(cause) or type(cause).__name__
        if self.unconfirmed:
            message += ". Not confirmed (check them in METI before creating them again): "
            message += _some(self.unconfirmed)
        if self.in_doubt:
            message += (
                ". In doubt (their answer was lost; a re-run with skip_existing looks them up "
                "before sending): " + _some(self.in_doubt)
            )
        super().__init__(
            message,
            status_code=getattr(cause, "status_code", None),
            method=getattr(cause, "method", None),
            path=getattr(cause, "path", None),
        )

    def _describe(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_partial_create_error,
            (self.cause, self.created, self.total, self.unconfirmed, self.in_doubt),
        )


def _some(alt_ids: Sequence[str], shown: int = 20) -> str:
    text = ", ".join(repr(alt_id) for alt_id in alt_ids[:shown])
    more = len(alt_ids) - shown
    return text + (f" and {more} more" if more > 0 else "")


def _rebuild_partial_create_error(cause, created, total, unconfirmed, in_doubt=()):  # type: ignore[no-untyped-def]
    return MetiPartialCreateError(cause, created, total, unconfirmed=unconfirmed, in_doubt=in_doubt)


@dataclass(frozen=True)
class FeatureProblem:
    """One reason one feature of a FeatureCollection is invalid."""

    index: int | None
    feature_id: object
    field: str
    reason: str

    def __str__(self) -> str:
        if self.index is None:
            return f"{self.field}: {self.reason}"
        return f"feature {self.index} (id={self.feature_id!r}) {self.field}: {self.reason}"


class MetiValidationError(MetiError, ValueError):
    """Input was rejected before anything was sent; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[FeatureProblem], *, source: str = "FeatureCollection"):
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = len(self.problems) - 50
        if more > 0:
            shown += f"\n  ... and {more} more"
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{source} is invalid ({count} {noun}); nothing was sent:\n{shown}")


class MetiInputUnavailableError(MetiValidationError):
    """The input file is missing or could not be read (not: read and found invalid).

    Still a ``MetiValidationError`` (nothing was sent), but one that another try may not meet:
    the file may be written by then, or the mount back.
    """
