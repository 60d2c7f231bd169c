"""When and how long to retry a METI request (tenacity).

Retried: no response at all (connection refused or dropped, timeouts), 429 and 5xx.
Never retried: every other 4xx. Waits grow exponentially with jitter, a server's
``Retry-After`` wins over the computed wait, and the whole sequence is bounded both by a
number of retries and by a total time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import tenacity

from airflow_provider_meti.exceptions import MetiApiError, MetiConnectionError

log = logging.getLogger(__name__)


def is_retryable(error: BaseException) -> bool:
    """True for failures that a later attempt may not repeat."""
    if isinstance(error, MetiConnectionError):
        return True
    if isinstance(error, MetiApiError) and error.status_code is not None:
        return error.status_code == 429 or error.status_code >= 500
    return False


def may_have_been_processed(error: BaseException) -> bool:
    """True when the server may have acted on the request despite the failure."""
    if isinstance(error, MetiConnectionError):
        return error.request_sent
    # 429 and 503 say "not now"; other 5xx may come after the work was done.
    return isinstance(error, MetiApiError) and error.status_code not in (429, 503)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying one request.

    :param max_retries: retries after the first attempt
    :param max_retry_time: seconds from the first attempt after which no retry starts
    :param initial_wait: first backoff (seconds); doubles each retry, with full jitter
    :param max_wait: longest single backoff (seconds)
    """

    max_retries: int = 5
    max_retry_time: float = 120.0
    initial_wait: float = 0.5
    max_wait: float = 30.0

    def retrying(
        self, *, retry_if: Callable[[BaseException], bool] = is_retryable
    ) -> tenacity.Retrying:
        """A tenacity ``Retrying`` that re-raises the last real error when it gives up."""
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(retry_if),
            stop=self._should_stop,
            wait=self._wait_seconds,
            before_sleep=_log_retry,
            reraise=True,
        )

    def _backoff(self, retry_state: tenacity.RetryCallState) -> float:
        jittered = tenacity.wait_random_exponential(multiplier=self.initial_wait, max=self.max_wait)
        return float(jittered(retry_state))

    def _wait_seconds(self, retry_state: tenacity.RetryCallState) -> float:
        retry_after = _retry_after(retry_state)
        wait = retry_after if retry_after is not None else self._backoff(retry_state)
        remaining = self.max_retry_time - (retry_state.seconds_since_start or 0.0)
        return max(0.0, min(wait, remaining))

    def _should_stop(self, retry_state: tenacity.RetryCallState) -> bool:
        if retry_state.attempt_number > self.max_retries:
            return True
        elapsed = retry_state.seconds_since_start or 0.0
        remaining = self.max_retry_time - elapsed
        retry_after = _retry_after(retry_state)
        # Waiting less than the server asked for would only earn another refusal.
        return remaining <= 0 or (retry_after is not None and retry_after > remaining)


def _retry_after(retry_state: tenacity.RetryCallState) -> float | None:
    error = retry_state.outcome.exception() if retry_state.outcome else None
    return getattr(error, "retry_after", None)


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    error = retry_state.outcome.exception() if retry_state.outcome else None
    wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
    log.warning("%s; retry %d in %.2f s", error, retry_state.attempt_number, wait)
