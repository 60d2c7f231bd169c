"""MetiSourceTrigger driven on an event loop against the emulator."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from airflow_provider_meti.triggers.meti import MetiSourceTrigger
from tests.airflow_context import trigger_events
from tests.api_versions import SECRETS
from tests.features import collection, square_feature

MISSING_ID = "src_0000000000000"


def create(emulator, *features) -> list[str]:
    return [source["id"] for source in emulator.ledger.create(collection(*features))]


def trigger(source_id: str, wait_for: str = "exists", *, within: float = 60.0, **kwargs):
    return MetiSourceTrigger(
        meti_conn_id=kwargs.pop("meti_conn_id", "meti_default"),
        source_id=source_id,
        wait_for=wait_for,
        poll_interval=kwargs.pop("poll_interval", 0.05),
        deadline=time.time() + within,  # generous: a loaded machine is slow, not wrong
    )


def only_event(trigger_) -> dict:
    events = trigger_events(trigger_)
    assert len(events) == 1
    return events[0].payload


async def after(seconds: float, action) -> None:
    await asyncio.sleep(seconds)
    await asyncio.to_thread(action)


async def once(condition, action, *, within: float = 10.0) -> None:
    """Run ``action`` as soon as ``condition()`` holds (a fixed delay is flaky under load)."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)
    await asyncio.to_thread(action)


def run_with(trigger_, *background) -> list:
    """Events of ``trigger_`` while ``background`` coroutines run beside it."""

    async def main():
        tasks = [asyncio.create_task(coroutine) for coroutine in background]
        events = [event async for event in trigger_.run()]
        await asyncio.gather(*tasks)
        return events

    return asyncio.run(asyncio.wait_for(main(), 120))


def test_serialize_round_trips_plain_data_only():
    original = MetiSourceTrigger("meti_default", "src_1", "no_conflict", 30, 1_900_000_000.0)
    classpath, kwargs = original.serialize()
    assert classpath == "airflow_provider_meti.triggers.meti.MetiSourceTrigger"
    assert kwargs == {
        "meti_conn_id": "meti_default",
        "source_id": "src_1",
        "wait_for": "no_conflict",
        "poll_interval": 30.0,
        "deadline": 1_900_000_000.0,
    }
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert MetiSourceTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_exists_fires_with_the_source(meti_connection, emulator):
    (source_id,) = create(emulator, square_feature("A"))
    event = only_event(trigger(source_id))
    assert event["status"] == "success"
    assert event["source"]["alt_id"] == "A"


def test_exists_waits_for_the_source(meti_connection, emulator):
    (source_id,) = create(emulator, square_feature("A"))
    emulator.ledger.clear()  # restarts the id generator: the same create brings the same id
    (event,) = run_with(
        trigger(source_id), after(0.3, lambda: create(emulator, square_feature("A")))
    )
    assert event.payload["status"] == "success"
    assert event.payload["source"]["id"] == source_id


def test_deleted_fires_without_a_source(meti_connection, emulator):
    (source_id,) = create(emulator, square_feature("A"))
    (event,) = run_with(
        trigger(source_id, "deleted"), after(0.2, lambda: emulator.ledger.delete(source_id))
    )
    assert event.payload == {
        "status": "success",
        "message": f"Source {source_id} is deleted.",
        "source": None,
    }


def test_no_conflict_is_released_by_deleting_the_other_source(meti_connection, emulator):
    first, second = create(emulator, square_feature("A"), square_feature("B", y=0.1))
    (event,) = run_with(
        trigger(first, "no_conflict"), after(0.3, lambda: emulator.ledger.delete(second))
    )
    assert event.payload["status"] == "success"
    assert event.payload["source"]["conflict"] is False


def test_resolved_is_released_when_the_conflicting_source_itself_is_withdrawn(
    meti_connection, emulator
):
    first, second = create(emulator, square_feature("A"), square_feature("B", y=0.1))
    (event,) = run_with(
        trigger(first, "resolved"), after(0.3, lambda: emulator.ledger.delete(first))
    )
    assert event.payload["status"] == "success"
    assert event.payload["source"] is None
    assert emulator.ledger.get(second)["conflict"] is False


def test_deadline_passing_fires_a_timeout(meti_connection):
    started = time.monotonic()
    # A poll interval of an hour: had the trigger waited for its next check instead of its
    # deadline, the test would run into pytest's timeout.
    event = only_event(trigger(MISSING_ID, within=0.4, poll_interval=3600))
    assert event["status"] == "timeout"
    # "still not found" once a check was answered; on a loaded machine the connection lookup
    # or the first check may still be waiting when the 0.4 s run out, and then the event
    # says that instead, naming the source all the same.
    assert MISSING_ID in event["message"] and "timeout ran out" in event["message"]
    assert time.monotonic() - started >= 0.4  # not before the deadline


def test_wrong_password_fires_an_error_without_the_password(meti_connection):
    meti_connection(password="not-the-password")
    event = only_event(trigger(MISSING_ID))
    assert event["status"] == "error"
    assert event["error"] == "MetiAuthError"
    assert "not-the-password" not in event["message"]
    assert not any(secret in event["message"] for secret in SECRETS)


def test_a_source_gone_while_waiting_for_no_conflict_is_an_error(meti_connection):
    event = only_event(trigger(MISSING_ID, "no_conflict"))
    assert event["status"] == "error"
    assert "can never become free of conflicts" in event["message"]


def test_an_unknown_connection_is_an_error_event(meti_connection):
    event = only_event(trigger(MISSING_ID, meti_conn_id="no_such_connection"))
    assert event["status"] == "error"
    assert "no_such_connection" in event["message"]


def test_retryable_errors_are_outlasted(meti_connection, emulator):
    meti_connection(extra={"max_retries": 0})
    (source_id,) = create(emulator, square_feature("A"))
    emulator.set_faults(rate=1.0, kinds=["503"], methods=["GET"])

    def served_503s() -> int:
        return emulator.stats()["responses"].get("503", 0)

    (event,) = run_with(trigger(source_id), once(lambda: served_503s() >= 2, emulator.clear_faults))
    assert event.payload["status"] == "success"
    assert served_503s() >= 2


def test_checks_never_block_the_event_loop(meti_connection, emulator, monkeypatch):
    # METI holds the trigger's check until another coroutine on the same loop releases it:
    # a check that blocked the loop would never let that coroutine run.
    (source_id,) = create(emulator, square_feature("A"))
    in_flight, released = threading.Event(), threading.Event()
    released_in_time: list[bool] = []
    read_source = emulator.state.ledger.get

    def held_read(*args, **kwargs):
        in_flight.set()
        released_in_time.append(released.wait(60))
        return read_source(*args, **kwargs)

    monkeypatch.setattr(emulator.state.ledger, "get", held_read)

    async def release_once_in_flight():
        while not in_flight.is_set():
            await asyncio.sleep(0.01)
        released.set()

    (event,) = run_with(trigger(source_id), release_once_in_flight())
    assert event.payload["status"] == "success"
    assert released_in_time == [True]


@pytest.mark.parametrize("wait_for", ["gone", ""])
def test_unknown_condition_is_refused(wait_for):
    with pytest.raises(ValueError, match="wait_for"):
        MetiSourceTrigger("meti_default", "src_1", wait_for)
