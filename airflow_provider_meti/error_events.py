"""What a trigger's error event says about the error that failed it, so that the task that
resumes raises an error of the same kind and the retry policy decides as it would have in
the task.

An event carries JSON only, so the error travels as its class name and the fields the policy
reads (status, ``Retry-After``, method and path), plus the server's message the error already
held (redacted when the error was made). Nothing else of the error is kept.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiAuthError,
    MetiBudgetError,
    MetiConfigError,
    MetiConnectionError,
    MetiError,
    MetiNotFoundError,
)
from airflow_provider_meti.retry_policy import deciding_error

_PLAIN: dict[str, type[MetiError]] = {c.__name__: c for c in (MetiAuthError, MetiConfigError)}
_API: dict[str, type[MetiApiError]] = {c.__name__: c for c in (MetiApiError, MetiNotFoundError)}


def error_cause(error: BaseException) -> dict[str, Any] | None:
    """The event's ``cause``: the METI error that decides what ``error`` means, if any."""
    decisive = deciding_error(error)
    if decisive is None:
        return None
    cause: dict[str, Any] = {"error": type(decisive).__name__}
    if isinstance(decisive, MetiBudgetError):
        cause.update(request=decisive.request, reason=decisive.reason)
    elif isinstance(decisive, MetiApiError):
        cause.update(
            message=decisive.message,
            status_code=decisive.status_code,
            method=decisive.method,
            path=decisive.path,
            retry_after=decisive.retry_after,
        )
    return cause


def error_from_event(event: dict[str, Any], message: str) -> MetiError:
    """The error to raise for an error ``event``; ``message`` is the event's own text."""
    cause = event.get("cause")
    name = cause.get("error") if isinstance(cause, dict) else event.get("error")
    if isinstance(cause, dict):
        rebuilt = _rebuilt(name, cause)
        if rebuilt is not None:
            return rebuilt
    return _PLAIN.get(str(name), MetiError)(message)


def _rebuilt(name: Any, cause: dict[str, Any]) -> MetiError | None:
    try:
        if name in _API:
            return _API[name](
                str(cause["message"]),
                status_code=_status(cause.get("status_code")),
                method=cause.get("method"),
                path=cause.get("path"),
                retry_after=_seconds(cause.get("retry_after")),
            )
        if name == MetiConnectionError.__name__:
            return MetiConnectionError(
                str(cause["message"]),
                method=str(cause.get("method")),
                path=str(cause.get("path")),
                request_sent=True,
            )
        if name == MetiBudgetError.__name__:
            return MetiBudgetError(str(cause["request"]), str(cause["reason"]))
    except KeyError:  # an event of another shape: the plain error is raised instead
        return None
    return None


def _status(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
