"""The trigger's asyncio path: shared tokens, faults, cancellation, and its retry budget.

Against the emulator on 127.0.0.1; every wait is on a count or an event, never a duration.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from airflow_provider_meti.aio import shared
from airflow_provider_meti.exceptions import MetiApiError, MetiConnectionError
from airflow_provider_meti.retries import RetryPolicy
from airflow_provider_meti.triggers.meti import MetiSourceTrigger
from tests.api_versions import token_request
from tests.features import collection, square_feature

MISSING_ID = "src_0000000000000"


def create(emulator, count: int) -> list[str]:
    # One grid cell each, so that none of them conflicts with another.
    features = [square_feature(f"F{index}", x=index) for index in range(count)]
    return [source["id"] for source in emulator.ledger.create(collection(*features))]


def trigger(source_id: str, wait_for: str = "exists", **kwargs) -> MetiSourceTrigger:
    return MetiSourceTrigger(
        meti_conn_id="meti_default",
        source_id=source_id,
        wait_for=wait_for,
        poll_interval=kwargs.pop("poll_interval", 0.02),
        deadline=time.time() + 120,  # far away: the tests end on events, not on this
    )


async def events_of(trigger_: MetiSourceTrigger) -> list[dict]:
    return [event.payload async for event in trigger_.run()]


async def until(condition, *, what: str, within: float = 60.0) -> None:
    """Wait for ``condition()`` (a cheap in-process read) to hold."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.005)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def gets(emulator) -> int:
    return sum(n for key, n in emulator.stats()["requests"].items() if key.startswith("GET /"))


def responses(emulator, status: int) -> int:
    return emulator.stats()["responses"].get(str(status), 0)


def client_threads() -> set[threading.Thread]:
    """Live threads but the in-process emulator's own."""
    return {t for t in threading.enumerate() if not t.name.startswith("meti-emulator")}


def test_triggers_on_one_loop_share_one_token_and_close_their_session(
    meti_connection, emulator, meti_api_version
):
    source_ids = create(emulator, 30)

    async def main():
        events = await asyncio.gather(*(events_of(trigger(id_)) for id_ in source_ids))
        (entry,) = shared._by_loop[asyncio.get_running_loop()].values()
        return events, entry

    events, entry = run(main())
    assert [payload["status"] for (payload,) in events] == ["success"] * 30
    assert [payload["source"]["id"] for (payload,) in events] == source_ids
    stats = emulator.stats()
    assert stats["token_requests"] == 1
    assert stats["requests"][token_request(meti_api_version)] == 1
    assert gets(emulator) == 30
    assert entry.client is None, "the session outlived its last trigger"
    assert entry.tokens.current() is not None, "the token is kept for the next trigger"


def test_revoked_tokens_cost_one_renewal_and_at_most_one_replay_per_trigger(
    meti_connection, emulator
):
    source_ids = create(emulator, 20)

    async def main():
        waits = [asyncio.create_task(events_of(trigger(id_, "deleted"))) for id_ in source_ids]
        await until(lambda: gets(emulator) >= 20, what="every trigger checked once")
        emulator.expire_all_tokens()
        checked = gets(emulator)
        await until(lambda: gets(emulator) >= checked + 60, what="three more rounds of checks")
        for source_id in source_ids:
            emulator.ledger.delete(source_id)
        return await asyncio.gather(*waits)

    events = run(main())
    assert [payload["status"] for (payload,) in events] == ["success"] * 20
    stats = emulator.stats()
    assert stats["token_requests"] == 2, "one token, then exactly one renewal"
    assert 1 <= responses(emulator, 401) <= 20


def test_an_outage_longer_than_the_retry_budget_is_waited_out(
    meti_connection, emulator, caplog, capsys
):
    meti_connection(extra={"max_retries": 2})
    (source_id,) = create(emulator, 1)
    # Three checks' worth of refusals (three attempts each); Retry-After 0 keeps waits at zero.
    emulator.set_faults(rate=1.0, kinds=["429"], retry_after=0, methods=["GET"], count=9)

    with caplog.at_level("WARNING"):
        (event,) = run(events_of(trigger(source_id)))

    assert event["status"] == "success"
    assert responses(emulator, 429) == 9
    assert gets(emulator) == 10, "three failed checks of three attempts, then one that worked"
    assert emulator.stats()["token_requests"] == 1
    # Trigger logs go through structlog on Airflow 3 (printed) and logging on 2.11.
    printed, logged = capsys.readouterr().out, caplog.text
    assert max(printed.count("will check again"), logged.count("will check again")) == 3


def test_a_404_while_waiting_for_deleted_ends_the_wait_after_one_request(meti_connection, emulator):
    (source_id,) = create(emulator, 1)

    async def main():
        wait = asyncio.create_task(events_of(trigger(source_id, "deleted")))
        await until(lambda: gets(emulator) >= 2, what="two checks of the existing source")
        emulator.ledger.delete(source_id)
        return await wait

    (event,) = run(main())
    assert event == {
        "status": "success",
        "message": f"Source {source_id} is deleted.",
        "source": None,
    }
    assert responses(emulator, 404) == 1, "a 404 is an answer, not a failure to retry"


def test_cancelling_a_trigger_cancels_its_request_at_once_and_uses_no_thread(
    meti_connection, emulator
):
    (source_id,) = create(emulator, 1)

    async def main():
        # A first wait does what is done once per process or token (connection lookup
        # machinery, token masking), so that the second one shows what a check costs.
        await events_of(trigger(source_id))
        # Until every thread of the loop's default executor is idle again: a worker releases
        # its idle mark only after the awaiting coroutine was woken, and a submit that comes
        # first makes the executor start one more thread (on a loaded machine it does).
        executor = asyncio.get_running_loop()._default_executor  # type: ignore[attr-defined]
        if executor is not None:
            await until(
                lambda: executor._idle_semaphore._value >= len(executor._threads),
                what="the executor idle",
            )
        before = client_threads()
        emulator.set_faults(rate=1.0, kinds=["latency"], latency=600, methods=["GET"])
        hanging = asyncio.create_task(events_of(trigger(source_id)))
        await until(lambda: emulator.stats()["faults"].get("latency") == 1, what="in flight")
        during = client_threads()
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        await until(lambda: emulator.stats()["abandoned"] == 1, what="the emulator saw it go")
        return before, during

    before, during = run(main())
    assert during == before, "a check in flight held a thread"
    assert gets(emulator) == 2


def test_a_connection_that_cannot_authenticate_is_one_error_event(meti_connection):
    meti_connection(login="")
    (event,) = run(events_of(trigger(MISSING_ID)))
    assert event["status"] == "error"
    assert event["error"] == "MetiConfigError"


# The asyncio retry budget: the sync budget's rules, awaited.


class FakeTime:
    """A clock that only moves when the budget sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(error: BaseException, attempts: list[int]):
    async def call():
        attempts.append(1)
        raise error

    return call


def test_async_budget_sends_a_failing_request_max_retries_plus_one_times():
    fake, attempts = FakeTime(), []
    budget = RetryPolicy(max_retries=3).async_budget(clock=fake.clock, sleep=fake.sleep)
    error = MetiApiError("down", status_code=503, method="GET", path="/sources")
    with pytest.raises(MetiApiError) as raised:
        asyncio.run(budget.run("GET /sources", failing(error, attempts)))
    assert raised.value is error
    assert len(attempts) == 4
    assert len(fake.slept) == 3


def test_async_budget_honours_retry_after_and_cuts_waits_to_the_deadline():
    fake, attempts = FakeTime(), []
    policy = RetryPolicy(max_retries=10, max_retry_time=5.0)
    budget = policy.async_budget(clock=fake.clock, sleep=fake.sleep)
    error = MetiApiError("slow down", status_code=429, method="GET", path="/", retry_after=2.0)
    with pytest.raises(MetiApiError):
        asyncio.run(budget.run("GET /", failing(error, attempts)))
    assert fake.slept == [2.0, 2.0], "Retry-After waits; a third would pass the deadline"
    assert len(attempts) == 3


def test_async_budget_never_retries_a_4xx_or_a_cancellation():
    for error in (
        MetiApiError("no", status_code=400, method="GET", path="/"),
        asyncio.CancelledError(),
    ):
        fake, attempts = FakeTime(), []
        budget = RetryPolicy(max_retries=5).async_budget(clock=fake.clock, sleep=fake.sleep)
        with pytest.raises(type(error)):
            asyncio.run(budget.run("GET /", failing(error, attempts)))
        assert len(attempts) == 1
        assert fake.slept == []


def test_async_budget_retries_a_post_only_when_it_cannot_have_been_processed():
    from airflow_provider_meti.transport import retryable_unprocessed

    fake, attempts = FakeTime(), []
    budget = RetryPolicy(max_retries=5).async_budget(clock=fake.clock, sleep=fake.sleep)
    lost = MetiConnectionError("dropped", method="POST", path="/sources", request_sent=True)
    with pytest.raises(MetiConnectionError):
        asyncio.run(
            budget.run("POST /sources", failing(lost, attempts), retry_if=retryable_unprocessed)
        )
    assert len(attempts) == 1
