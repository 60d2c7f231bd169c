"""A batch that fails ends the create at once: the worker that saw the failure starts no
further batch itself, whenever the calling thread gets round to noticing it; a batch whose
answer was lost and that the failure stopped before its lookup is named in doubt."""

from __future__ import annotations

import pickle
import threading
import time

import pytest

from airflow_provider_meti.create import Batch, BatchCreator
from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiConnectionError,
    MetiPartialCreateError,
)
from airflow_provider_meti.retries import RetryPolicy

FEATURES = 6
FAILING = 2  # the third batch is refused


def feature(n: int) -> dict:
    return {"type": "Feature", "id": f"F-{n}", "geometry": None, "properties": {}}


def test_one_worker_starts_no_batch_after_one_failed():
    posted: list[str] = []
    lock = threading.Lock()

    def post(batch: Batch, budget) -> dict[str, dict[str, str]]:
        # In memory, so the worker holds the interpreter from one batch to the next: the
        # calling thread wakes only later, as on a loaded machine.
        alt_id = batch[0]["id"]
        with lock:
            posted.append(alt_id)
        if alt_id == f"F-{FAILING}":
            raise MetiApiError("refused", status_code=422, method="POST", path="/sources")
        return {alt_id: {"id": f"src-{alt_id}", "alt_id": alt_id}}

    def no_lookup(features, budget):  # a 422 is no lost answer: nothing is looked up
        raise AssertionError("looked up after a refusal")

    policy = RetryPolicy(max_retries=0)
    creator = BatchCreator(
        post=post,
        look_up=no_lookup,
        new_budget=lambda cancelled: policy.budget(
            clock=time.monotonic, sleep=None, cancelled=cancelled
        ),
        total=FEATURES,
        already={},
    )
    # One lane per feature, so a worker takes the next lane as soon as one ends.
    lanes = [[Batch([feature(n)])] for n in range(FEATURES)]

    with pytest.raises(MetiPartialCreateError) as caught:
        creator.run(lanes, 1)

    # The batches up to the refused one, and none after it (all six before the fix).
    assert posted == [f"F-{n}" for n in range(FAILING + 1)]
    assert [item["alt_id"] for item in caught.value.created] == ["F-0", "F-1"]
    assert caught.value.in_doubt == []  # a refusal stores nothing: F-2 is not in doubt


def test_the_first_failure_is_the_cause_not_a_batch_it_stopped():
    # Two workers: the second lane's batch is refused while the first lane's is in flight;
    # the first then fails too (its server went away as the create stopped). The refusal,
    # the first failure in time, is what the create raises, not the batch submitted first.
    cancel_events: list[threading.Event] = []
    policy = RetryPolicy(max_retries=0)

    def new_budget(cancelled: threading.Event):
        cancel_events.append(cancelled)
        return policy.budget(clock=time.monotonic, sleep=None, cancelled=cancelled)

    def post(batch: Batch, budget) -> dict[str, dict[str, str]]:
        if batch[0]["id"] == "F-1":
            raise MetiApiError("refused", status_code=422, method="POST", path="/sources")
        assert cancel_events[0].wait(30), "the refusal never stopped the create"
        raise MetiApiError("unavailable", status_code=503, method="POST", path="/sources")

    def no_lookup(features, budget):
        return {}, []

    creator = BatchCreator(post=post, look_up=no_lookup, new_budget=new_budget, total=2, already={})
    with pytest.raises(MetiApiError) as caught:
        creator.run([[Batch([feature(0)])], [Batch([feature(1)])]], 2)

    assert caught.value.status_code == 422


def test_a_lost_answer_stopped_before_its_lookup_is_in_doubt():
    # Lane A's POST is stored but its answer is lost; before A's lookup runs, lane B's batch
    # is refused and stops the create. A's feature may be stored: the error must say so
    # (it was in neither ``created`` nor ``unconfirmed``).
    cancel_events: list[threading.Event] = []
    stored: dict[str, str] = {}
    policy = RetryPolicy(max_retries=3, initial_wait=0.0)

    def new_budget(cancelled: threading.Event):
        cancel_events.append(cancelled)
        return policy.budget(clock=time.monotonic, cancelled=cancelled)

    def post(batch: Batch, budget) -> dict[str, dict[str, str]]:
        alt_id = batch[0]["id"]
        if alt_id == "F-1":
            raise MetiApiError("refused", status_code=422, method="POST", path="/sources")
        stored[alt_id] = f"src-{alt_id}"
        raise MetiConnectionError("lost", method="POST", path="/sources", request_sent=True)

    def look_up(features, budget_for_page):
        budget = budget_for_page()
        assert cancel_events[0].wait(30), "the refusal never stopped the create"
        return budget.run("GET /sources", lambda: ({}, []))  # cancelled: never sent

    creator = BatchCreator(post=post, look_up=look_up, new_budget=new_budget, total=2, already={})
    with pytest.raises(MetiPartialCreateError) as caught:
        creator.run([[Batch([feature(0)])], [Batch([feature(1)])]], 2)

    assert caught.value.status_code == 422
    assert caught.value.created == []
    assert caught.value.unconfirmed == []
    assert caught.value.in_doubt == ["F-0"]
    assert "In doubt" in str(caught.value) and "'F-0'" in str(caught.value)
    assert stored == {"F-0": "src-F-0"}


def test_what_a_partial_create_names_survives_pickling():
    # Airflow carries a task's exception across processes (a triggerer, an executor).
    cause = MetiApiError("refused", status_code=422, method="POST", path="/sources")
    error = MetiPartialCreateError(
        cause, [{"id": "src-1", "alt_id": "F-1"}], 3, unconfirmed=["F-2"], in_doubt=["F-3"]
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.created, copy.unconfirmed, copy.in_doubt) == (error.created, ["F-2"], ["F-3"])
    assert str(copy) == str(error)


def creator_of_one(post, look_up, policy: RetryPolicy, **options) -> BatchCreator:
    """A creator of one feature, each batch's budget from ``policy``."""
    return BatchCreator(
        post=post,
        look_up=look_up,
        new_budget=lambda cancelled: policy.budget(clock=time.monotonic, cancelled=cancelled),
        total=1,
        already={},
        **options,
    )


def test_a_lost_answer_whose_lookup_fails_is_in_doubt():
    policy = RetryPolicy(max_retries=1, initial_wait=0.0)

    def post(batch: Batch, budget) -> dict[str, dict[str, str]]:
        raise MetiConnectionError("lost", method="POST", path="/sources", request_sent=True)

    def look_up(features, budget_for_page):
        raise MetiApiError("unavailable", status_code=503, method="GET", path="/sources")

    with pytest.raises(MetiPartialCreateError) as caught:
        creator_of_one(post, look_up, policy).run([[Batch([feature(0)])]], 1)

    assert caught.value.status_code == 503
    assert caught.value.in_doubt == ["F-0"]


def create_one_failing(error: MetiApiError, post_path: str | None = "/sources"):
    """Create one feature whose POST fails with ``error``; the error and what was recorded."""
    record: dict[str, list[str]] = {"sending": [], "stored": [], "not_stored": []}

    class Progress:
        def sending(self, alt_ids):
            record["sending"] += alt_ids

        def stored(self, created):
            record["stored"] += list(created)

        def not_stored(self, alt_ids):
            record["not_stored"] += alt_ids

    def post(batch: Batch, budget) -> dict[str, dict[str, str]]:
        raise error

    def no_lookup(features, budget_for_page):
        raise AssertionError("not reached: no retries")

    creator = creator_of_one(
        post, no_lookup, RetryPolicy(max_retries=0), progress=Progress(), post_path=post_path
    )
    with pytest.raises(MetiApiError) as caught:
        creator.run([[Batch([feature(0)])]], 1)
    return caught.value, record


@pytest.mark.parametrize("status", [200, 201, 500, 502, None])
def test_a_post_answered_but_unreadable_or_failing_after_the_work_is_in_doubt(status):
    # A 2xx whose body cannot be read (an HTML page, a truncated reply) stored the feature.
    error, record = create_one_failing(
        MetiApiError("unreadable", status_code=status, method="POST", path="/sources")
    )
    assert isinstance(error, MetiPartialCreateError) and error.in_doubt == ["F-0"]
    assert record == {"sending": ["F-0"], "stored": [], "not_stored": []}  # stays in flight


# Not 401: a 401 that outlives the renewal's replay is a MetiAuthError, which leaves the
# batch in flight (looked up on resume), the safe side.
@pytest.mark.parametrize("status", [400, 403, 404, 409, 422, 429, 503])
def test_a_refused_post_is_recorded_as_not_stored(status):
    error, record = create_one_failing(
        MetiApiError("refused", status_code=status, method="POST", path="/sources")
    )
    assert not isinstance(error, MetiPartialCreateError) and error.status_code == status
    assert record == {"sending": ["F-0"], "stored": [], "not_stored": ["F-0"]}


def test_a_failed_token_request_leaves_nothing_in_doubt():
    # The POST was never sent: its token request lost its connection.
    lost = MetiConnectionError("lost", method="POST", path="/token", request_sent=True)
    error, record = create_one_failing(lost)
    assert error is lost
    assert record["not_stored"] == ["F-0"]
