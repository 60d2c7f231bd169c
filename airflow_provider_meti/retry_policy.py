"""What a failed METI task does next: fail at once, retry, or leave it to Airflow.

Airflow 3.3 lets a task's ``retry_policy`` look at the exception that failed it (AIP-105).
The provider's operators and sensors use :class:`MetiRetryPolicy` unless told otherwise:

- fail without retrying what another try cannot fix: invalid input, an unusable
  connection, refused credentials, HTTP 4xx (403, 404, 400, 409, 422, ...), and a create
  that stopped with features whose outcome the listing cannot confirm (someone must look);
- retry what may pass later: no response, HTTP 408, 425, 429 and 5xx, after the server's
  ``Retry-After`` when it sent one (at most the task's ``max_retry_delay``, or
  ``MAX_RETRY_AFTER``), else after the task's ``retry_delay``;
- anything else (not a METI error, or an input file not there yet) gets Airflow's standard
  retry logic.

A retry stays within the task's ``retries``. The HTTP-level retries inside one call are
another matter (``retries.RetryPolicy``): this policy decides only once a call has given up.

:func:`decide` holds the rules and runs on every Airflow line; ``MetiRetryPolicy`` exists
only where Airflow has retry policies (elsewhere :func:`default_retry_policy` is None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_meti._compat import RETRY_POLICY_AVAILABLE, RetryDecision, RetryPolicy
from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiAuthError,
    MetiBudgetError,
    MetiConfigError,
    MetiConnectionError,
    MetiError,
    MetiInputUnavailableError,
    MetiPartialCreateError,
    MetiValidationError,
)

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

__all__ = [
    "MAX_RETRY_AFTER",
    "RETRYABLE_CLIENT_ERRORS",
    "MetiRetryPolicy",
    "Verdict",
    "decide",
    "default_retry_policy",
]

RETRYABLE_CLIENT_ERRORS = frozenset({408, 425, 429})
"""The 4xx statuses that say "not now" rather than "not like this"."""
MAX_RETRY_AFTER = timedelta(hours=1)
"""The longest ``Retry-After`` followed when the task sets no ``max_retry_delay``: a header
that asks for days is more likely a misconfigured gateway than a plan."""
MAX_CAUSES = 32
"""How far down a chain of causes to look for the METI error (chains can be cyclic)."""

FAIL, RETRY, DEFAULT = "fail", "retry", "default"


@dataclass(frozen=True)
class Verdict:
    """What to do after ``exception``, in terms every Airflow line understands.

    :param action: ``"fail"``, ``"retry"`` or ``"default"`` (Airflow's standard logic)
    :param reason: why, for the task log; names the error's class and status only, never
        its message (which quotes the server)
    :param retry_after: seconds to wait before the retry, when the server said
    """

    action: str
    reason: str | None = None
    retry_after: float | None = None


def decide(exception: BaseException) -> Verdict:
    """The verdict on the exception that failed a task."""
    error = deciding_error(exception)
    if error is None:
        return Verdict(DEFAULT)
    kind = type(error).__name__
    if error is not exception:
        kind = f"{type(exception).__name__}, caused by {kind}"
    if isinstance(error, MetiPartialCreateError):  # only when some outcomes are unconfirmed
        return Verdict(
            FAIL,
            f"{kind}: METI's listing cannot confirm whether some features were stored; check "
            "them in METI, then clear the task",
        )
    if isinstance(error, MetiInputUnavailableError):
        return Verdict(DEFAULT)
    if isinstance(error, MetiValidationError):
        return Verdict(FAIL, f"{kind}: the input is invalid; another try sends the same input")
    if isinstance(error, MetiConfigError):
        return Verdict(FAIL, f"{kind}: the connection's settings are unusable; fix them first")
    if isinstance(error, MetiAuthError):
        return Verdict(FAIL, f"{kind}: METI refused the credentials, also after a token renewal")
    if isinstance(error, MetiConnectionError):
        return Verdict(RETRY, f"{kind}: no response from METI; it may answer on the next try")
    if not isinstance(error, MetiApiError):
        return Verdict(DEFAULT)
    status = error.status_code
    if status is None:
        if isinstance(error, MetiBudgetError):  # gave up before any request of it failed
            return Verdict(RETRY, f"{kind}: the call ran out of time or attempts")
        return Verdict(DEFAULT)
    if status >= 500 or status in RETRYABLE_CLIENT_ERRORS:
        delay = _usable_delay(error.retry_after)
        after = f", retrying after its Retry-After of {delay:g} s" if delay is not None else ""
        return Verdict(RETRY, f"{kind}: METI answered HTTP {status}{after}", delay)
    if 400 <= status < 500:
        return Verdict(FAIL, f"{kind}: METI answered HTTP {status}{_why_final(status)}")
    return Verdict(DEFAULT)


def deciding_error(exception: BaseException) -> MetiError | None:
    """The METI error that decides: ``exception`` itself, what stopped a partial create or
    what failed before a retry budget ran out, or the nearest METI error it was raised from.
    """
    current: BaseException | None = exception
    seen: set[int] = set()
    while current is not None and id(current) not in seen and len(seen) < MAX_CAUSES:
        seen.add(id(current))
        if isinstance(current, MetiPartialCreateError):
            if current.unconfirmed:
                return current
            current = current.cause
        elif isinstance(current, MetiBudgetError) and current.last_error is not None:
            current = current.last_error
        elif isinstance(current, MetiError):
            return current
        else:
            current = current.__cause__
    return None


def _why_final(status: int) -> str:
    if status == 401:
        return ": the token was refused, also after a renewal"
    if status == 403:
        return ": the credentials lack a permission (scope) this call needs"
    if status == 404:
        return ": it does not exist"
    return ": the request was refused as it is; another try sends the same request"


def _usable_delay(seconds: float | None) -> float | None:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


if RETRY_POLICY_AVAILABLE:

    class MetiRetryPolicy(RetryPolicy):
        """Fails METI tasks at once on errors another try cannot fix, retries the others
        (after the server's ``Retry-After``); see :func:`decide`. Stateless: one instance
        can serve every task."""

        def evaluate(
            self,
            exception: BaseException,
            try_number: int,
            max_tries: int,
            context: Context | None = None,
        ) -> RetryDecision:
            """The decision on ``exception``; retries stay within the task's ``retries``."""
            verdict = decide(exception)
            if verdict.action == FAIL:
                return RetryDecision.fail(verdict.reason)
            if verdict.action == RETRY:
                delay = None
                if verdict.retry_after is not None:
                    wanted = timedelta(seconds=verdict.retry_after)
                    delay = min(wanted, _longest_delay(context))
                return RetryDecision.retry(delay, verdict.reason)
            return RetryDecision.default()

        def serialize(self) -> dict[str, Any]:
            """``{"__type": <dotted path of the class>}``: the policy has no settings."""
            return {"__type": _type_name(type(self))}

        @classmethod
        def deserialize(cls, data: dict[str, Any]) -> MetiRetryPolicy:
            """The policy ``serialize`` described."""
            if data.get("__type") != _type_name(cls):
                raise ValueError(f"not a serialized {cls.__name__}: {data.get('__type')!r}")
            return cls()

        def __eq__(self, other: object) -> bool:
            return type(other) is type(self)

        def __hash__(self) -> int:
            return hash(type(self))

        def __repr__(self) -> str:
            return f"{type(self).__name__}()"

        # Stateless, so copies of an operator (Airflow deep-copies tasks) may share it.
        def __copy__(self) -> MetiRetryPolicy:
            return self

        def __deepcopy__(self, memo: dict[int, Any]) -> MetiRetryPolicy:
            return self

    _DEFAULT = MetiRetryPolicy()
    NOT_GIVEN = MetiRetryPolicy()
    """The operators' ``retry_policy`` when they are given none: the default policy, as an
    instance of its own, so that ``is NOT_GIVEN`` tells it from a policy passed on purpose."""


def _longest_delay(context: Any) -> timedelta:
    """The task's ``max_retry_delay`` when it has one, else ``MAX_RETRY_AFTER``."""
    task = context.get("task") if isinstance(context, Mapping) else None
    longest = getattr(task, "max_retry_delay", None)
    if isinstance(longest, (int, float)) and not isinstance(longest, bool):
        longest = timedelta(seconds=longest)
    return longest if isinstance(longest, timedelta) else MAX_RETRY_AFTER


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def chosen_policy(given: Any, default_args: dict[str, Any] | None) -> Any:
    """An operator's ``retry_policy``: ``given`` unless it is ``NOT_GIVEN`` and the
    ``default_args`` (the DAG's, task group's and task's, merged) name one, even None."""
    if given is NOT_GIVEN and default_args and "retry_policy" in default_args:
        return default_args["retry_policy"]
    return given


def default_retry_policy() -> MetiRetryPolicy | None:
    """The policy the provider's operators and sensors use unless given another (or None):
    a ``MetiRetryPolicy``; None on Airflow lines without retry policies (before 3.3)."""
    return _DEFAULT if RETRY_POLICY_AVAILABLE else None
