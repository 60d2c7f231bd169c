"""within(): a check under a deadline, and the caller's cancellation never lost."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_meti.aio.within import within


def test_a_check_that_ends_in_time_gives_its_result():
    async def check() -> str:
        await asyncio.sleep(0)
        return "answered"

    assert asyncio.run(within(check(), 30)) == (True, "answered")


def test_a_check_past_the_deadline_is_cancelled_and_awaited():
    ended = []

    async def check() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append("unwound")
        return "unreachable"

    assert asyncio.run(within(check(), 0.01)) == (False, None)
    assert ended == ["unwound"]  # its cleanup ran before within() returned


def test_a_check_that_fails_raises_its_error():
    async def check() -> str:
        raise LookupError("not there")

    with pytest.raises(LookupError, match="not there"):
        asyncio.run(within(check(), 30))


def test_the_caller_cancelled_while_a_timed_out_check_unwinds_stays_cancelled():
    unwinding = asyncio.Event()
    release = asyncio.Event()

    async def check() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            unwinding.set()
            await release.wait()  # a cleanup that takes a while, e.g. closing a connection
            raise
        return "unreachable"

    async def main() -> None:
        caller = asyncio.create_task(within(check(), 0.01))
        await unwinding.wait()
        caller.cancel()
        await asyncio.sleep(0)
        release.set()
        outcome = await asyncio.gather(caller, return_exceptions=True)
        assert type(outcome[0]) is asyncio.CancelledError, outcome

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("steps_before", range(4))
def test_the_caller_cancelled_as_the_check_ends_stays_cancelled(steps_before):
    finish = asyncio.Event()

    async def check() -> str:
        await finish.wait()
        return "answered"

    async def main() -> None:
        caller = asyncio.create_task(within(check(), 100))
        await asyncio.sleep(0)
        finish.set()
        for _ in range(steps_before):
            await asyncio.sleep(0)
        caller.cancel()
        outcome = await asyncio.gather(caller, return_exceptions=True)
        if not isinstance(outcome[0], asyncio.CancelledError):
            # Only a check that had ended before the cancellation landed may give its result.
            assert outcome[0] == (True, "answered")
            assert steps_before > 0

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_check_that_returns_once_cancelled_past_the_deadline_is_late():
    async def check() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "answered only after the deadline"
        return "unreachable"

    assert asyncio.run(within(check(), 0.01)) == (False, None)


def test_nan_seconds_is_no_time_not_a_timer_that_never_fires():
    async def main() -> tuple[bool, object]:
        never = asyncio.Event()
        # If NaN became a timer, within() would wait for the check, which never ends.
        return await within(never.wait(), float("nan"))

    assert asyncio.run(asyncio.wait_for(main(), 30)) == (False, None)
