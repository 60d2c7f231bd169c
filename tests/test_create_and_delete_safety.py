"""Creates that never duplicate and stop when interrupted; deletes that are safe to retry.

The emulator runs in its documented-only mode (the ``emulator`` fixture): it ignores the
``alt_id`` filter the way METI ignores an unknown parameter, so these tests cannot lean on it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_meti.exceptions import (
    MetiConfigError,
    MetiConnectionError,
    MetiNotFoundError,
    MetiPartialCreateError,
)
from airflow_provider_meti.hooks.meti import MetiHook
from airflow_provider_meti.operators.meti import MetiDeleteSourceOperator
from tests.api_versions import v1_only, v2_only
from tests.features import collection, square_feature

FAST = {"max_retries": 3}


def features(count: int) -> dict[str, Any]:
    return collection(*(square_feature(f"F-{n:03d}", x=2 * n) for n in range(count)))


def sent(emulator, key: str) -> int:
    return emulator.stats()["requests"].get(key, 0)


def alt_ids_stored(emulator) -> list[str]:
    return sorted(source["alt_id"] for source in emulator.ledger.all())


# --- duplicate safety without undocumented filters --------------------------------------------


def test_a_lost_create_answer_costs_one_scan_or_one_filtered_get(
    meti_connection, emulator, meti_api_version
):
    meti_connection(extra=FAST)
    emulator.ledger.seed(2500)  # three pages of 1,000
    emulator.set_faults(rate=1.0, kinds=["stored_then_drop"], methods=["POST"], count=1)

    created = MetiHook().create_sources(features(1))

    assert [item["alt_id"] for item in created] == ["F-000"]
    assert sent(emulator, "POST /sources") == 1  # found, so not sent again
    # v1: one scan, 2,501 sources in pages of 1,000; v2: one GET filtered by alt_id
    assert sent(emulator, "GET /sources") == (3 if meti_api_version == 1 else 1)
    assert [s["alt_id"] for s in emulator.ledger.all()].count("F-000") == 1


def test_a_lookup_stops_as_soon_as_every_feature_is_found(
    meti_connection, emulator, meti_api_version
):
    meti_connection(extra=FAST)
    emulator.set_faults(rate=1.0, kinds=["stored_then_drop"], methods=["POST"], count=1)
    MetiHook().create_sources(features(1))
    emulator.ledger.seed(2500)  # stored after ours: the first page already shows it
    emulator.set_faults(rate=1.0, kinds=["stored_then_drop"], methods=["POST"], count=1)

    MetiHook().create_sources(collection(square_feature("G-1", x=50)))

    # v1: 1 for the first create, 3 for the second; v2: one filtered GET each
    assert sent(emulator, "GET /sources") == (4 if meti_api_version == 1 else 2)


@pytest.fixture
def listing_without_alt_ids(emulator) -> None:
    """The emulator's listing drops ``alt_id``: nothing in it can be matched to a feature."""
    ledger = emulator.state.ledger
    original = ledger.page

    def page(filters, limit, offset):
        items, total = original(filters, limit, offset)
        stripped = []
        for item in items:
            source = json.loads(item)
            source.pop("alt_id", None)
            stripped.append(json.dumps(source).encode())
        return stripped, total

    ledger.page = page


def test_a_create_the_listing_cannot_confirm_is_not_sent_again(
    meti_connection, emulator, listing_without_alt_ids
):
    meti_connection(extra=FAST)
    emulator.ledger.seed(3)
    emulator.set_faults(rate=1.0, kinds=["stored_then_drop"], methods=["POST"], count=1)

    with pytest.raises(MetiPartialCreateError, match=r"check them in METI.*'F-000'") as caught:
        MetiHook().create_sources(features(1))

    assert caught.value.unconfirmed == ["F-000"]
    assert caught.value.in_doubt == []  # looked up: unconfirmed, not left in doubt
    assert caught.value.created == []
    assert sent(emulator, "POST /sources") == 1
    assert alt_ids_stored(emulator).count("F-000") == 1


@v1_only
def test_a_retried_try_does_not_guess_when_the_listing_cannot_tell(
    meti_connection, emulator, listing_without_alt_ids
):
    meti_connection(extra=FAST)
    emulator.ledger.seed(3)
    with pytest.raises(MetiPartialCreateError) as caught:
        MetiHook().create_sources(features(2), skip_existing=True)
    assert caught.value.unconfirmed == ["F-000", "F-001"]
    assert sent(emulator, "POST /sources") == 0


# --- a timed-out or killed create stops sending -----------------------------------------------


class TaskTimeout(BaseException):
    """Stands in for Airflow's AirflowTaskTimeout: raised in the task's main thread."""


@pytest.fixture
def alarm() -> Iterator[threading.Event]:
    """SIGALRM raises ``TaskTimeout`` in the main thread, as ``execution_timeout`` does.

    Yields an event set when the handler has run.
    """
    fired = threading.Event()

    def on_alarm(signum: int, frame: Any) -> None:
        fired.set()
        raise TaskTimeout("Timeout, PID: test")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        yield fired
    finally:
        signal.signal(signal.SIGALRM, previous)


def interrupt_at_post(client, number: int, fired: threading.Event) -> list[int]:
    """Deliver SIGALRM to the process when the client starts its ``number``-th POST.

    The signal goes to the process, as a real timer's does, so any thread may receive it.
    POSTs that reach this point after it (at most one per worker: in flight when the alarm
    came) wait until the handler has run.
    """
    started: list[int] = []
    lock = threading.Lock()
    original = client._post_features

    def post(batch, budget):
        with lock:
            started.append(len(started) + 1)
            current = len(started)
        if current == number:
            os.kill(os.getpid(), signal.SIGALRM)
        if current >= number and threading.current_thread() is not threading.main_thread():
            assert fired.wait(60), "the main thread never ran the alarm's handler"
        return original(batch, budget)

    client._post_features = post
    return started


@pytest.mark.parametrize("workers", [1, 3])
def test_an_interrupted_create_starts_no_new_post_and_reports_what_it_created(
    meti_connection, emulator, alarm, workers
):
    meti_connection(extra=FAST)
    hook = MetiHook(max_workers=workers)
    started = interrupt_at_post(hook.get_conn(), 4, alarm)

    with pytest.raises(MetiPartialCreateError) as caught:
        hook.create_sources(features(30), batch_size=1)

    assert isinstance(caught.value.cause, TaskTimeout)
    stored = alt_ids_stored(emulator)
    assert sorted(item["alt_id"] for item in caught.value.created) == stored
    # POSTs already in flight when the alarm came may finish (one per worker); no batch
    # starts after it. (A worker may have picked its next batch in the instant between the
    # handler and the cancellation: hence 2 per worker, against 30 without the promise.)
    # Every POST the server got is reported, with one worker as with several (a POST that
    # had not reached the server when the alarm came is cancelled before sending).
    posts = sent(emulator, "POST /sources")
    assert posts == len(stored)
    # The 4th POST starts once a worker is free, so at least 4 - workers POSTs were answered
    # before the alarm (all three with one worker); the others may still be cancelled.
    assert 4 - workers <= posts <= len(started) <= 3 + 2 * workers
    assert not any(t.name.startswith("meti-create") for t in threading.enumerate())


def test_an_interrupt_before_a_lost_answer_is_looked_up_names_it_in_doubt(
    meti_connection, emulator, alarm
):
    meti_connection(extra=FAST)
    emulator.set_faults(rate=1.0, kinds=["stored_then_drop"], methods=["POST"], count=1)
    client = MetiHook(max_workers=1).get_conn()
    post, look_up = client._post_features, client._look_up

    def post_then_interrupt(batch, budget):
        try:
            return post(batch, budget)
        except MetiConnectionError:  # the answer was lost: the task times out now
            os.kill(os.getpid(), signal.SIGALRM)
            raise

    def look_up_once_cancelled(features, budget_for_page):
        budget = budget_for_page()
        assert budget._cancelled.wait(60), "the interrupt never cancelled the create"
        return look_up(features, lambda: budget)

    client._post_features = post_then_interrupt
    client._look_up = look_up_once_cancelled
    with pytest.raises(MetiPartialCreateError) as caught:
        client.create_sources(features(1), batch_size=1)

    assert isinstance(caught.value.cause, TaskTimeout)
    assert alt_ids_stored(emulator) == ["F-000"]  # stored, though its answer was lost
    assert caught.value.created == []
    assert caught.value.in_doubt == ["F-000"]
    assert sent(emulator, "GET /sources") == 0
    # The re-run the error asks for looks it up and sends nothing again.
    del client._post_features, client._look_up  # hooks of one connection share the client
    created = MetiHook().create_sources(features(1), skip_existing=True)
    assert [item["alt_id"] for item in created] == ["F-000"]
    assert sent(emulator, "POST /sources") == 1
    assert alt_ids_stored(emulator) == ["F-000"]


def test_a_retried_create_task_registers_only_the_rest(meti_connection, emulator, alarm):
    meti_connection(extra=FAST)
    hook = MetiHook(max_workers=2)
    interrupt_at_post(hook.get_conn(), 5, alarm)
    with pytest.raises(MetiPartialCreateError):
        hook.create_sources(features(12), batch_size=1)
    first_try = len(alt_ids_stored(emulator))

    created = MetiHook(max_workers=2).create_sources(features(12), batch_size=1, skip_existing=True)

    assert len(created) == 12
    assert alt_ids_stored(emulator) == [f"F-{n:03d}" for n in range(12)]
    assert sent(emulator, "POST /sources") == first_try + (12 - first_try)


# --- safe deletes ----------------------------------------------------------------------------


def test_a_delete_whose_answer_was_lost_succeeds(meti_connection, emulator):
    meti_connection(extra=FAST)
    (source,) = emulator.ledger.create(features(1))
    emulator.set_faults(rate=1.0, kinds=["stored_then_drop"], methods=["DELETE"], count=1)

    MetiHook().delete_source(source["id"])  # the retry's 404: our first attempt deleted it

    assert emulator.ledger.count() == 0
    assert emulator.stats()["responses"].get("404") == 1


@v2_only
def test_a_delete_by_alt_id_whose_answer_was_lost_succeeds(meti_connection, emulator):
    meti_connection(extra=FAST)
    emulator.ledger.create(features(1))
    emulator.set_faults(rate=1.0, kinds=["stored_then_drop"], methods=["DELETE"], count=1)
    MetiHook().delete_source(alt_id="F-000")
    assert emulator.ledger.count() == 0


def test_a_404_after_a_refused_delete_is_still_not_found(meti_connection, emulator):
    # A 503 means the first attempt did nothing: the 404 that follows is the truth.
    meti_connection(extra=FAST)
    emulator.set_faults(rate=1.0, kinds=["503"], methods=["DELETE"], count=1)
    with pytest.raises(MetiNotFoundError):
        MetiHook().delete_source("src_0000000000000")


@pytest.mark.parametrize("bad", ["", "   ", "None", "null", None])
def test_an_empty_source_id_is_refused_without_a_request(meti_connection, emulator, bad):
    with pytest.raises(MetiConfigError, match="source_id"):
        MetiHook().get_conn().delete_source(source_id=bad or "")
    assert emulator.stats()["requests"] == {}


@v2_only
@pytest.mark.parametrize("bad", ["", "  ", "None"])
def test_an_empty_alt_id_is_refused_without_a_request(meti_connection, emulator, bad):
    with pytest.raises(MetiConfigError, match="alt_id"):
        MetiHook().delete_source(alt_id=bad)
    assert emulator.stats()["requests"] == {}


@v2_only
def test_a_template_that_rendered_to_none_deletes_nothing(meti_connection, emulator, task_context):
    emulator.ledger.create(features(2))
    operator = MetiDeleteSourceOperator(task_id="d", alt_id="{{ params.missing }}")
    operator.render_template_fields({**task_context, "params": {"missing": None}})
    with pytest.raises(MetiConfigError, match="alt_id"):
        operator.execute(task_context)
    assert emulator.stats()["requests"] == {}
    assert emulator.ledger.count() == 2
