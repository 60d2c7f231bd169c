"""One token renewal at a time, whose failure every waiter shares (#25.6), and the wait
for it counted against the waiter's deadline; sync threads and asyncio alike."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter

import pytest

from airflow_provider_meti.aio.client import AsyncMetiClient
from airflow_provider_meti.aio.tokens import AsyncTokenManager
from airflow_provider_meti.auth import IssuedToken, TokenManager
from airflow_provider_meti.client import MetiClient
from airflow_provider_meti.exceptions import MetiApiError, MetiBudgetError
from tests.test_gate_budget import SOURCE, scripted, settings_for, url_of  # noqa: F401

WAITERS = 40


def token_endpoint_down(request) -> None:
    request.reply_json(503, {"message": "token service down"})


def test_40_triggers_waiting_for_a_failing_renewal_share_its_failure(scripted):  # noqa: F811
    server = scripted(token_endpoint_down)
    settings, auth = settings_for(url_of(server), max_retries=3)

    async def main() -> list[BaseException | None]:
        async with AsyncMetiClient(settings, auth) as client:
            calls = [client.get_source(SOURCE) for _ in range(WAITERS)]
            return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 60)

    outcomes = asyncio.run(main())

    assert all(isinstance(outcome, MetiApiError) for outcome in outcomes), outcomes
    assert all("HTTP 503" in str(outcome) for outcome in outcomes)
    # One renewal's budget (max_retries + 1), not one renewal per waiting trigger (160).
    assert server.seen == {"POST /token": 4}


def token_endpoint_slowly_down(request) -> None:
    time.sleep(0.5)  # so that every thread is waiting before the renewal fails
    request.reply_json(503, {"message": "token service down"})


def test_threads_waiting_for_a_failing_renewal_share_its_failure(scripted):  # noqa: F811
    server = scripted(token_endpoint_slowly_down)
    settings, auth = settings_for(url_of(server), max_retries=3)
    outcomes: list[BaseException] = []
    start = threading.Barrier(8)

    with MetiClient(settings, auth) as client:

        def call() -> None:
            start.wait()
            try:
                client.get_source(SOURCE)
            except MetiApiError as error:
                outcomes.append(error)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert len(outcomes) == 8
    # All 8 wait for the one renewal (four 0.5 s attempts) and fail with its error: one
    # renewal's budget, not one per thread.
    assert server.seen["POST /token"] == 4


def never_answers(release: asyncio.Event):
    async def fetch() -> IssuedToken:
        await release.wait()
        return IssuedToken("tok-late", 3600)

    return fetch


def test_an_async_waiter_stops_waiting_for_a_renewal_at_its_deadline():
    async def main() -> None:
        tokens = AsyncTokenManager()
        release = asyncio.Event()
        renewer = asyncio.create_task(tokens.get(never_answers(release)))
        await asyncio.sleep(0)  # the renewal is under way
        with pytest.raises(MetiBudgetError, match=r"waited 0\.01 s for the renewal"):
            await tokens.get(never_answers(release), wait=0.01)
        release.set()
        assert await renewer == "tok-late"

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_thread_stops_waiting_for_a_renewal_at_its_deadline():
    release = threading.Event()
    renewing = threading.Event()

    def fetch() -> IssuedToken:
        renewing.set()
        release.wait(30)
        return IssuedToken("tok-late", 3600)

    tokens = TokenManager(fetch)
    renewer = threading.Thread(target=tokens.get)
    renewer.start()
    assert renewing.wait(30)
    with pytest.raises(MetiBudgetError, match=r"waited 0\.01 s for the renewal"):
        tokens.get(wait=0.01)
    release.set()
    renewer.join(30)
    assert tokens.current() == "tok-late"


def test_async_waiters_of_a_failed_renewal_get_its_error_without_asking_again():
    asked = 0

    async def failing() -> IssuedToken:
        nonlocal asked
        asked += 1
        await asyncio.sleep(0.01)
        raise MetiApiError("down", status_code=503, method="POST", path="/token")

    async def main() -> list[BaseException]:
        tokens = AsyncTokenManager()
        calls = [tokens.get(failing) for _ in range(WAITERS)]
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert asked == 1
    assert [type(outcome) for outcome in outcomes] == [MetiApiError] * WAITERS
    assert len({id(outcome) for outcome in outcomes}) == WAITERS  # each its own traceback


def test_a_cancelled_renewal_is_taken_over_by_a_waiter():
    async def main() -> str:
        tokens = AsyncTokenManager()
        release = asyncio.Event()
        renewer = asyncio.create_task(tokens.get(never_answers(release)))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(tokens.get(lambda: _issued("tok-waiter")))
        await asyncio.sleep(0)
        renewer.cancel()
        return await waiter

    assert asyncio.run(asyncio.wait_for(main(), 30)) == "tok-waiter"


async def _issued(value: str) -> IssuedToken:
    return IssuedToken(value, 3600)


STEPS_TO_UNWIND = 50  # a cancelled waiter ends in a handful of event-loop steps


@pytest.mark.parametrize("steps_between", range(6))
def test_a_waiter_cancelled_as_the_renewal_is_abandoned_stays_cancelled(steps_between):
    # The renewer and its waiter are cancelled together, as every trigger is at a shared
    # deadline. Python 3.11's wait_for returns instead of raising when the awaited event
    # fires in the step the cancellation lands; the waiter then renewed on its own and kept
    # the trigger waiting for a token endpoint that does not answer.
    started = cancelled = 0

    async def counted() -> IssuedToken:
        nonlocal started, cancelled
        started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise
        raise AssertionError("unreachable")

    async def main() -> None:
        tokens = AsyncTokenManager()
        renewer = asyncio.create_task(tokens.get(never_answers(asyncio.Event())))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(tokens.get(counted, wait=100))
        await asyncio.sleep(0)
        renewer.cancel()
        for _ in range(steps_between):
            await asyncio.sleep(0)
        waiter.cancel()
        # Loop steps, not seconds: a waiter that swallowed its cancellation never ends.
        for _ in range(STEPS_TO_UNWIND):
            if renewer.done() and waiter.done():
                break
            await asyncio.sleep(0)
        assert waiter.done(), "the cancelled waiter is still waiting for its own renewal"
        assert renewer.cancelled() and waiter.cancelled()

    asyncio.run(main())
    assert started == cancelled  # a renewal the waiter took over ended with it


def test_an_async_wait_is_one_wait_across_an_abandoned_renewal():
    # The clock is injected: the wait ran out while the first renewal was still under way,
    # so a waiter that finds the renewal taken over by another must not wait afresh.
    now = [0.0]

    async def main() -> None:
        tokens = AsyncTokenManager(clock=lambda: now[0])
        renewer = asyncio.create_task(tokens.get(never_answers(asyncio.Event())))
        await asyncio.sleep(0)
        waiters = [
            asyncio.create_task(tokens.get(never_answers(asyncio.Event()), wait=100))
            for _ in range(2)
        ]
        await asyncio.sleep(0)
        now[0] = 150.0  # past both waits
        renewer.cancel()
        for _ in range(STEPS_TO_UNWIND):
            if any(waiter.done() for waiter in waiters):
                break
            await asyncio.sleep(0)
        finished = [waiter for waiter in waiters if waiter.done()]
        assert len(finished) == 1, "the waiter that did not take over is waiting afresh"
        with pytest.raises(MetiBudgetError, match=r"waited 100 s for the renewal"):
            finished[0].result()
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(renewer, *waiters, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_thread_waits_once_across_an_abandoned_renewal():
    now = [0.0]
    clock_calls: Counter[int] = Counter()
    renewing, release, take_over_release = threading.Event(), threading.Event(), threading.Event()
    outcomes: list[BaseException | str] = []
    failed = threading.Event()

    class Abandon(BaseException):
        """Ends the first renewal as an interrupt would (abandoned, not failed)."""

    def clock() -> float:
        clock_calls[threading.get_ident()] += 1
        return now[0]

    def abandoning() -> IssuedToken:
        renewing.set()
        release.wait(30)
        raise Abandon

    def taken_over() -> IssuedToken:
        take_over_release.wait(30)
        return IssuedToken("tok-late", 3600)

    tokens = TokenManager(abandoning, clock=clock)

    def renew_first() -> None:
        with contextlib.suppress(Abandon):
            tokens.get()

    def wait() -> None:
        try:
            outcomes.append(tokens.get(taken_over, wait=100))
        except MetiBudgetError as error:
            outcomes.append(error)
            failed.set()

    renewer = threading.Thread(target=renew_first)
    renewer.start()
    assert renewing.wait(30)
    waiters = [threading.Thread(target=wait) for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    # Each waiter reads the clock twice before it waits: once for the end of its wait,
    # once for what is left of it.
    while not all(clock_calls[w.ident or 0] >= 2 for w in waiters):
        take_over_release.wait(0.001)
    now[0] = 150.0  # past both waits, while the first renewal is still under way
    release.set()
    # A bound, not a timing: the old wait started again with its full 100 s.
    assert failed.wait(30), f"the waiter that did not take over waits afresh: {outcomes}"
    take_over_release.set()
    for thread in (renewer, *waiters):
        thread.join(30)
    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["MetiBudgetError", "str"]


def test_waiters_of_a_renewal_slower_than_the_margin_share_its_token():
    # The token endpoint answers only after the token's renewal time has passed (a 10 s
    # token, renewed 2 s early, issued 9 s after it was asked for): it is still valid, and
    # every waiter takes it instead of renewing one after another.
    now = [0.0]
    asked = 0
    release = asyncio.Event()

    async def slow() -> IssuedToken:
        nonlocal asked
        asked += 1
        await release.wait()
        now[0] += 9.0
        return IssuedToken(f"tok-slow-{asked}", 10)

    async def main() -> list[str]:
        tokens = AsyncTokenManager(margin=60, clock=lambda: now[0])
        calls = [asyncio.create_task(tokens.get(slow)) for _ in range(5)]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*calls)

    assert asyncio.run(asyncio.wait_for(main(), 30)) == ["tok-slow-1"] * 5
    assert asked == 1


def test_threads_waiting_for_a_renewal_slower_than_the_margin_share_its_token():
    # The sync twin: the token comes 9 s after it was asked for, past its renewal time
    # (10 s, renewed 2 s early) but still valid; the threads that waited take it.
    now = [0.0]
    asked = 0
    asking, release = threading.Event(), threading.Event()
    waiting_threads: set[int] = set()

    def clock() -> float:
        waiting_threads.add(threading.get_ident())
        return now[0]

    def slow() -> IssuedToken:
        nonlocal asked
        asked += 1
        asking.set()
        release.wait(30)
        now[0] += 9.0
        return IssuedToken(f"tok-slow-{asked}", 10)

    tokens = TokenManager(slow, margin=60, clock=clock)
    got: list[str] = []
    renewer = threading.Thread(target=lambda: got.append(tokens.get()))
    renewer.start()
    assert asking.wait(30)
    waiters = [threading.Thread(target=lambda: got.append(tokens.get())) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    # With no token cached and no wait limit, a thread reads the clock first just before it
    # waits for the renewal under way (for what is left of its wait). Should get() read it
    # earlier, the token would come too soon and the test fail, never pass wrongly.
    arrived_by = time.monotonic() + 30
    while not all(w.ident in waiting_threads for w in waiters):
        assert time.monotonic() < arrived_by, "a waiter never reached the renewal's wait"
        release.wait(0.001)
    release.set()
    for thread in (renewer, *waiters):
        thread.join(30)
    assert got == ["tok-slow-1"] * 5
    assert asked == 1
