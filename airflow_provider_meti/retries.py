"""When and how long to retry a METI request (tenacity), with one budget per call.

Retried: no response at all (connection refused or dropped, timeouts), 429 and 5xx.
Never retried: every other 4xx. Waits grow exponentially with jitter and a server's
``Retry-After`` wins over the computed wait.

A public client call (``get_source``, one page of a listing, one batch of a create) gets one
:class:`CallBudget`, the call's gate. Every HTTP exchange the call makes passes it, whichever
layer asks: the call itself, the token fetch inside it, the 401 replay, the lookup after a
lost create, and the wait for a token another request is renewing. Before each request
:meth:`_Budget.admit` counts it and checks the deadline: a request (by name; the 401 replay
and each token fetch count too) is sent at most ``max_retries + 1`` times in the call, and
no request starts after the call's ``max_retry_time`` deadline. An error that leaves the
budget is final: no layer above retries it again, so retries never multiply.

The rules live in :class:`_Budget`, which does no I/O; the sync and asyncio transports only
ask it before each request and after each failure.

:class:`AsyncCallBudget` is the same budget for coroutines (tenacity's ``AsyncRetrying``):
the same classification, backoff, ``Retry-After`` and deadline, awaited instead of slept.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from airflow_provider_meti.exceptions import MetiApiError, MetiBudgetError, MetiConnectionError

log = logging.getLogger(__name__)

T = TypeVar("T")
_FINAL = "_meti_retries_spent"

# The innermost ``run`` of this thread or task: (its budget, its request name). The requests
# sent inside it count under its name, so that a replay is one more send of the same request.
_current_run: contextvars.ContextVar[tuple[_Budget, str] | None] = contextvars.ContextVar(
    "meti_current_run", default=None
)
# True while a 401's renewal and replay are under way: even with max_retries=0 they are sent.
_replaying: contextvars.ContextVar[bool] = contextvars.ContextVar("meti_replaying", default=False)


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
    if not isinstance(error, MetiApiError):
        return False
    status = error.status_code
    # A 4xx is a refusal, and 503 says "not now"; other 5xx may come after the work was
    # done, and a 2xx whose body cannot be read did it. Without a status nothing shows that
    # the request was refused.
    return status is None or not (400 <= status < 500 or status == 503)


def is_final(error: BaseException) -> bool:
    """True for an error some layer has already retried as far as its budget allowed."""
    return bool(getattr(error, _FINAL, False))


def mark_final(error: BaseException) -> BaseException:
    """Mark ``error`` so that no outer layer retries it; return it."""
    setattr(error, _FINAL, True)
    return error


class CallCancelled(Exception):
    """The call was cancelled (e.g. the task was interrupted) before this attempt started."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying within one call.

    :param max_retries: retries after the first attempt of any one request
    :param max_retry_time: seconds from the start of a call after which no retry starts
    :param initial_wait: first backoff (seconds); doubles each retry, with full jitter
    :param max_wait: longest single backoff (seconds)
    """

    max_retries: int = 5
    max_retry_time: float = 120.0
    initial_wait: float = 0.5
    max_wait: float = 30.0

    def budget(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        cancelled: threading.Event | None = None,
    ) -> CallBudget:
        """A fresh budget for one call, its deadline counted from now.

        :param clock: a monotonic clock (injectable in tests)
        :param sleep: waits between attempts (default: ``time.sleep``, or a wait on
            ``cancelled`` that ends early when the call is cancelled)
        :param cancelled: when set, no further attempt starts
        """
        return CallBudget(self, clock=clock, sleep=sleep, cancelled=cancelled)

    def async_budget(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> AsyncCallBudget:
        """A fresh budget for one call made by coroutines, its deadline counted from now.

        Cancelling the coroutine that runs it cancels the call: no ``cancelled`` event needed.

        :param clock: a monotonic clock (injectable in tests)
        :param sleep: awaits the wait between attempts (default ``asyncio.sleep``)
        """
        return AsyncCallBudget(self, clock=clock, sleep=sleep)


class _Budget:
    """The gate's rules, free of I/O: requests counted by name, one deadline, the waits."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float],
        cancelled: threading.Event | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._deadline = clock() + policy.max_retry_time
        self._cancelled = cancelled
        self._failures: Counter[str] = Counter()
        self._sent: Counter[str] = Counter()
        self._last_error: dict[str, BaseException] = {}
        self._lock = threading.Lock()

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self._deadline - self._clock()

    def cancelled(self) -> bool:
        """True once the call was cancelled."""
        return self._cancelled is not None and self._cancelled.is_set()

    def sent(self, request: str) -> int:
        """How many times ``request`` was sent in this call."""
        with self._lock:
            return self._sent[request]

    def admit(self, request: str) -> None:
        """Count one HTTP request about to be sent; raise when the budget forbids it.

        Inside :meth:`CallBudget.run` (or the async ``run``) the request counts under that
        run's name: a 401 replay is one more sending of the same request.

        :param request: names the request when it is sent outside any run of this budget
        When the request was already sent ``max_retries + 1`` times or the deadline has
        passed, its own last failure in this call is raised again (marked final), or, when
        it had none, :class:`MetiBudgetError`; when the call was cancelled,
        :class:`CallCancelled`.
        """
        current = _current_run.get()
        name = current[1] if current is not None and current[0] is self else request
        with self._lock:
            sent = self._sent[name]
            limit = self.policy.max_retries + 1
            if _replaying.get():
                limit = max(limit, 2)  # the first try and its one replay
            if self.cancelled():
                # As a run that is cancelled before its attempt: not a failure of its own.
                raise mark_final(CallCancelled(f"{name}: cancelled before it was sent"))
            if sent >= limit:
                reason = f"it was already sent {sent} times (max_retries={limit - 1})"
            elif self._clock() > self._deadline:
                reason = f"the call's max_retry_time of {self.policy.max_retry_time:g} s has passed"
            else:
                self._sent[name] = sent + 1
                return
            last = self._last_error.get(name)
        if last is not None and not isinstance(last, MetiBudgetError):
            # The final error names the real cause: the request's own last failure.
            raise mark_final(last)
        raise mark_final(MetiBudgetError(name, reason, last))

    @contextlib.contextmanager
    def replaying(self) -> Iterator[None]:
        """Within: the renewal and replay after a 401, which are sent (at most once each)
        even when ``max_retries`` is 0; with more retries they count like any request."""
        entered = _replaying.set(True)
        try:
            yield
        finally:
            _replaying.reset(entered)

    def wait_limit(self, request_timeout: float) -> float:
        """How long a request may wait for another's work (a token renewal): until the
        deadline, plus one request's timeout, as long as a request started then may take."""
        return max(0.0, self.remaining()) + request_timeout

    def _record_failure(self, request: str, error: BaseException) -> None:
        with self._lock:
            self._last_error[request] = error

    def _retrying_arguments(
        self, request: str, retry_if: Callable[[BaseException], bool]
    ) -> dict[str, Any]:
        """tenacity's arguments for one request: what is retried, when to stop, how long to wait."""
        return {
            "retry": tenacity.retry_if_exception(lambda error: _may_retry(error, retry_if)),
            "stop": lambda state: self._should_stop(request, state),
            "wait": self._wait_seconds,
            "before_sleep": _log_retry,
            "reraise": True,
        }

    def _should_stop(self, request: str, state: tenacity.RetryCallState) -> bool:
        with self._lock:
            self._failures[request] += 1
            # A run whose call sends no request through the gate still counts its attempts.
            attempts = max(self._failures[request], self._sent[request])
        if attempts > self.policy.max_retries or self.cancelled():
            return True
        remaining = self.remaining()
        retry_after = _retry_after(state)
        # Waiting less than the server asked for would only earn another refusal.
        return remaining <= 0 or (retry_after is not None and retry_after > remaining)

    def _wait_seconds(self, state: tenacity.RetryCallState) -> float:
        retry_after = _retry_after(state)
        wait = retry_after if retry_after is not None else self._backoff(state)
        return max(0.0, min(wait, self.remaining()))

    def _backoff(self, state: tenacity.RetryCallState) -> float:
        policy = self.policy
        jittered = tenacity.wait_random_exponential(
            multiplier=policy.initial_wait, max=policy.max_wait
        )
        return float(jittered(state))

    def _enter(self, request: str) -> contextvars.Token[tuple[_Budget, str] | None]:
        return _current_run.set((self, request))

    def _failed(self, request: str, error: BaseException) -> None:
        self._record_failure(request, error)


class CallBudget(_Budget):
    """The retries one call may still make: per request, and against one deadline.

    Thread-safe: the requests of one call may run on several threads.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], object] | None,
        cancelled: threading.Event | None,
    ) -> None:
        super().__init__(policy, clock=clock, cancelled=cancelled)
        if sleep is None:
            sleep = cancelled.wait if cancelled is not None else time.sleep
        self._sleep = sleep

    def run(
        self,
        request: str,
        call: Callable[[], T],
        *,
        retry_if: Callable[[BaseException], bool] = is_retryable,
    ) -> T:
        """``call()`` (one HTTP request, named ``request``), retried while the budget allows.

        The error that ends the attempts is raised as it is, marked final.

        :param request: names the request for counting, e.g. ``"GET /sources offset=0"``
        :param call: sends the request
        :param retry_if: which errors this request may be retried on
        """
        entered = self._enter(request)
        try:
            return self._run(request, call, retry_if)
        finally:
            _current_run.reset(entered)

    def _run(
        self, request: str, call: Callable[[], T], retry_if: Callable[[BaseException], bool]
    ) -> T:
        # As the async twin: tenacity steps in only after a retryable failure, so a call
        # that succeeds at once builds none of its retry state (per-call CPU, and garbage).
        first_failure: BaseException | None = None
        try:
            return self._attempt(request, call)
        except Exception as error:
            if not _may_retry(error, retry_if):
                mark_final(error)
                raise
            first_failure = error

        def attempt() -> T:
            nonlocal first_failure
            if first_failure is not None:  # tenacity's first attempt is the one that failed
                failure, first_failure = first_failure, None
                raise failure
            return self._attempt(request, call)

        retrying = tenacity.Retrying(
            sleep=self._wait, **self._retrying_arguments(request, retry_if)
        )
        try:
            for attempt_manager in retrying:
                with attempt_manager:
                    return attempt()
        except Exception as error:
            mark_final(error)
            raise
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _attempt(self, request: str, call: Callable[[], T]) -> T:
        if self.cancelled():
            raise CallCancelled(f"{request}: cancelled before it was sent")
        try:
            return call()
        except Exception as error:
            self._failed(request, error)
            raise

    def _wait(self, seconds: float) -> None:
        self._sleep(seconds)


class AsyncCallBudget(_Budget):
    """:class:`CallBudget` for coroutines: the same rules, waits awaited.

    Meant for the coroutines of one event loop. Cancelling the awaiting task cancels the
    attempt in flight or the wait, at once; ``CancelledError`` is never retried.

    The first attempt runs without tenacity, which only steps in once a retryable failure
    has happened: tenacity's retry state is a reference cycle, and in a triggerer making
    hundreds of checks a second those cycles set off a full garbage collection of Airflow's
    heap every few seconds, stalling the event loop for hundreds of milliseconds.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[object]],
    ) -> None:
        super().__init__(policy, clock=clock)
        self._sleep = sleep

    async def run(
        self,
        request: str,
        call: Callable[[], Awaitable[T]],
        *,
        retry_if: Callable[[BaseException], bool] = is_retryable,
    ) -> T:
        """``await call()`` (one HTTP request, named ``request``), retried while the budget
        allows; the error that ends the attempts is raised as it is, marked final.

        :param request: names the request for counting
        :param call: sends the request
        :param retry_if: which errors this request may be retried on
        """
        entered = self._enter(request)
        try:
            return await self._run(request, call, retry_if)
        finally:
            _current_run.reset(entered)

    async def _run(
        self,
        request: str,
        call: Callable[[], Awaitable[T]],
        retry_if: Callable[[BaseException], bool],
    ) -> T:
        try:
            return await call()
        except Exception as error:
            self._failed(request, error)
            if not _may_retry(error, retry_if):
                mark_final(error)
                raise
            first_failure: BaseException | None = error

        async def attempt() -> T:
            nonlocal first_failure
            if first_failure is not None:  # tenacity's first attempt is the one that failed
                failure, first_failure = first_failure, None
                raise failure
            try:
                return await call()
            except Exception as error:
                self._failed(request, error)
                raise

        retrying = tenacity.AsyncRetrying(
            sleep=self._wait, **self._retrying_arguments(request, retry_if)
        )
        try:
            async for attempt_manager in retrying:
                with attempt_manager:
                    return await attempt()
        except Exception as error:
            mark_final(error)
            raise
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _wait(self, seconds: float) -> None:
        await self._sleep(seconds)


def _may_retry(error: BaseException, retry_if: Callable[[BaseException], bool]) -> bool:
    """True when ``error`` may be retried: ``retry_if`` allows it and no layer spent it."""
    return retry_if(error) and not is_final(error)


def _retry_after(state: tenacity.RetryCallState) -> float | None:
    error = state.outcome.exception() if state.outcome else None
    return getattr(error, "retry_after", None)


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("%s; retry %d in %.2f s", error, state.attempt_number, wait)
