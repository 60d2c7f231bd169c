"""A create that resumes after its try was killed, from what it kept in the task state store.

A try is "killed" by a store that stops taking writes at a chosen write, as a dead process
would: the store's contents are what the killed try left, no POST starts after that point
(each one is recorded as in flight before it starts), and the POSTs already in flight reach
METI unrecorded. The next try gets the same store, as Airflow 3.3 gives each try of a task
instance the same ``task_state_store``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from airflow_provider_meti.create_state import (
    HEAD_KEY,
    PAGE_BYTES,
    PAGE_KEY,
    VERSION,
    TaskStateProgress,
)
from airflow_provider_meti.exceptions import MetiPartialCreateError
from airflow_provider_meti.operators.meti import MetiCreateSourcesOperator
from tests.airflow_context import (
    METI_CLIENT_SECRET,
    METI_PASSWORD,
    make_context,
)
from tests.features import collection, square_feature

FEATURES = 12
FAST = {"max_retries": 2}


class Killed(BaseException):
    """The worker process died: nothing after this point happens."""


class DyingStore:
    """Airflow's task state store as the operator sees it (values kept as JSON, as Airflow
    keeps them), which stops taking writes after ``writes_until_death`` of them."""

    def __init__(self, writes_until_death: int | None = None) -> None:
        self.values: dict[str, str] = {}
        self.writes = 0
        self.writes_until_death = writes_until_death

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else json.loads(value)

    def set(self, key: str, value: Any) -> None:
        if self.writes_until_death is not None and self.writes >= self.writes_until_death:
            raise Killed
        self.writes += 1
        self.values[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def revived(self) -> DyingStore:
        """The same contents, for the next try (which is not killed)."""
        store = DyingStore()
        store.values = dict(self.values)
        return store


def field_collection() -> dict[str, Any]:
    return collection(*(square_feature(f"FIELD-{n:03d}", x=2 * n) for n in range(FEATURES)))


def run_try(
    store: DyingStore | None, try_number: int, max_tries: int = 5, **kwargs: Any
) -> list[dict[str, str]]:
    operator = MetiCreateSourcesOperator(
        task_id="register", feature_collection=field_collection(), max_workers=2, **kwargs
    )
    context = make_context(try_number=try_number, max_tries=max_tries)
    if store is not None:
        context["task_state_store"] = store
    return operator.execute(context)


def stored_alt_ids(emulator) -> list[str]:
    return sorted(source["alt_id"] for source in emulator.ledger.all())


class Requests:
    """The emulator's request counts since this was made."""

    def __init__(self, emulator) -> None:
        self._emulator = emulator
        self._before = dict(emulator.stats()["requests"])

    def __getitem__(self, key: str) -> int:
        return self._emulator.stats()["requests"].get(key, 0) - self._before.get(key, 0)


def in_doubt_at_death(store: DyingStore) -> set[str]:
    head = store.get(HEAD_KEY)
    recorded = {
        alt_id
        for number in range(len(head["sizes"]))
        for alt_id in store.get(PAGE_KEY.format(number))
    }
    return set(head["in_flight"]) - recorded


# Write 1 is the record's head; then each POST costs one write before it and two after.
@pytest.mark.parametrize("writes_until_death", [1, 2, 3, 8, 17, 30])
def test_a_retry_after_a_killed_try_stores_each_feature_once_and_returns_the_same_ids(
    meti_connection, emulator, task_context, meti_api_version, writes_until_death
):
    meti_connection(extra=FAST)
    store = DyingStore(writes_until_death)
    with pytest.raises((Killed, Exception)):
        run_try(store, try_number=1, batch_size=1)
    stored_by_killed_try = len(emulator.ledger.all())
    in_doubt = in_doubt_at_death(store)
    sent = Requests(emulator)

    created = run_try(store.revived(), try_number=2, batch_size=1)

    expected = [f"FIELD-{n:03d}" for n in range(FEATURES)]
    assert [item["alt_id"] for item in created] == expected
    assert stored_alt_ids(emulator) == expected  # none twice, none missing
    by_alt_id = {source["alt_id"]: source["id"] for source in emulator.ledger.all()}
    assert [item["id"] for item in created] == [by_alt_id[alt_id] for alt_id in expected]
    assert sent["POST /sources"] == FEATURES - stored_by_killed_try
    # Only the features whose POST was in flight are looked up: v1 reads one listing (a
    # page, and an empty one to confirm its end when a feature is not there), v2 asks once
    # per feature by alt_id; with nothing in flight, nothing is looked up.
    if not in_doubt:
        assert sent["GET /sources"] == 0
    elif meti_api_version == 1:
        assert 1 <= sent["GET /sources"] <= 2
    else:
        assert sent["GET /sources"] == len(in_doubt)


def test_the_killed_tries_keep_the_promise_across_several_deaths(
    meti_connection, emulator, task_context
):
    meti_connection(extra=FAST)
    store = DyingStore(5)
    for try_number in (1, 2, 3):
        with pytest.raises((Killed, Exception)):
            run_try(store, try_number=try_number, batch_size=1)
        store = store.revived()
        store.writes_until_death = 7

    created = run_try(store.revived(), try_number=4, batch_size=1)

    assert [item["alt_id"] for item in created] == [f"FIELD-{n:03d}" for n in range(FEATURES)]
    assert stored_alt_ids(emulator) == [f"FIELD-{n:03d}" for n in range(FEATURES)]


def test_a_batch_of_several_features_in_flight_is_looked_up_as_one_batch(
    meti_connection, emulator, task_context, meti_api_version
):
    if meti_api_version == 1:
        pytest.skip("METI v1 takes one feature per POST")
    meti_connection(extra=FAST)
    store = DyingStore(4)  # the head, two batches sent (two workers), then it dies
    with pytest.raises((Killed, Exception)):
        run_try(store, try_number=1, batch_size=4)
    in_doubt = in_doubt_at_death(store)
    sent = Requests(emulator)

    created = run_try(store.revived(), try_number=2, batch_size=4)

    assert in_doubt and len(in_doubt) % 4 == 0  # whole batches
    assert [item["alt_id"] for item in created] == [f"FIELD-{n:03d}" for n in range(FEATURES)]
    assert stored_alt_ids(emulator) == [f"FIELD-{n:03d}" for n in range(FEATURES)]
    assert sent["GET /sources"] == len(in_doubt)


def test_a_create_that_succeeds_leaves_no_record(meti_connection, emulator, task_context):
    meti_connection(extra=FAST)
    store = DyingStore()

    run_try(store, try_number=1, batch_size=1)

    assert store.values == {}
    assert (
        store.writes == 1 + 3 * FEATURES
    )  # the head, then one write before and two after each POST


def test_without_a_task_state_store_a_retry_looks_every_feature_up_as_before(
    meti_connection, emulator, task_context
):
    # Airflow before 3.3 has no task_state_store in the context; durable=False opts out.
    meti_connection(extra=FAST)
    run_try(None, try_number=1, batch_size=1)
    sent = Requests(emulator)

    run_try(None, try_number=2, batch_size=1)
    run_try(DyingStore(), try_number=2, batch_size=1, durable=False)

    assert sent["POST /sources"] == 0
    assert sent["GET /sources"] >= 2  # each retry read the listing
    assert len(emulator.ledger.all()) == FEATURES


OTHER_INPUT_HEAD = {
    "version": VERSION,
    "input": "0" * 64,
    "try": [1, 5],
    "sizes": [1],
    "in_flight": [],
}
FIRST_VERSION_HEAD = {"version": 1, "input": "0" * 64, "pages": 1, "in_flight": []}


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (OTHER_INPUT_HEAD, "is for another input"),
        (FIRST_VERSION_HEAD, "unreadable or of another version"),
    ],
    ids=["other-input", "first-version"],
)
def test_a_record_of_another_input_or_version_is_not_used_and_is_deleted(
    meti_connection, emulator, task_context, caplog, head, why
):
    meti_connection(extra=FAST)
    store = DyingStore()
    store.set(HEAD_KEY, head)
    store.set(PAGE_KEY.format(0), {"FIELD-000": "src_not_from_this_input"})

    with caplog.at_level(logging.WARNING):
        created = run_try(store, try_number=2, batch_size=1)

    assert created[0]["id"] != "src_not_from_this_input"
    assert stored_alt_ids(emulator) == [f"FIELD-{n:03d}" for n in range(FEATURES)]
    assert why in caplog.text
    assert store.values == {}


def test_a_cleared_task_does_not_trust_the_record_of_its_failed_run(
    meti_connection, emulator, task_context, caplog
):
    # Try 1 fails part-way; its sources are deleted by hand; the task is cleared, which
    # raises max_tries. The record names stored sources that no longer exist.
    meti_connection(extra={"max_retries": 0})
    emulator.set_faults(rate=1.0, kinds=["503"], methods=["POST"], count=1, skip=3)
    store = DyingStore()
    with pytest.raises(Exception, match="503"):
        run_try(store, try_number=1, batch_size=1, max_tries=1)
    assert store.get(HEAD_KEY) is not None
    for source in emulator.ledger.all():
        emulator.ledger.delete(source["id"])

    with caplog.at_level(logging.WARNING):
        created = run_try(store.revived(), try_number=2, batch_size=1, max_tries=2)

    assert "not written by the previous try" in caplog.text
    assert stored_alt_ids(emulator) == [f"FIELD-{n:03d}" for n in range(FEATURES)]
    assert {item["id"] for item in created} == {s["id"] for s in emulator.ledger.all()}


def test_a_try_without_durable_deletes_the_record_so_no_later_try_trusts_it(
    meti_connection, emulator, task_context
):
    meti_connection(extra=FAST)
    store = DyingStore(8)
    with pytest.raises((Killed, Exception)):
        run_try(store, try_number=1, batch_size=1)
    store = store.revived()

    run_try(store, try_number=2, batch_size=1, durable=False)
    assert store.values == {}
    run_try(store, try_number=3, batch_size=1)  # the task cleared later, durable again

    assert stored_alt_ids(emulator) == [f"FIELD-{n:03d}" for n in range(FEATURES)]


def test_a_record_missing_a_page_is_not_trusted(meti_connection, emulator, task_context, caplog):
    meti_connection(extra=FAST)
    store = DyingStore(20)
    with pytest.raises((Killed, Exception)):
        run_try(store, try_number=1, batch_size=1)
    store = store.revived()
    del store.values[PAGE_KEY.format(0)]  # expired, or lost by the store's backend

    with caplog.at_level(logging.WARNING):
        created = run_try(store, try_number=2, batch_size=1)

    assert "page 0 is missing or incomplete" in caplog.text
    assert stored_alt_ids(emulator) == [f"FIELD-{n:03d}" for n in range(FEATURES)]
    assert [item["alt_id"] for item in created] == [f"FIELD-{n:03d}" for n in range(FEATURES)]


def test_a_record_made_in_the_sandbox_is_not_used_in_production(
    meti_connection, emulator, task_context, monkeypatch
):
    from airflow_provider_meti.hooks import meti as meti_hooks

    meti_connection(extra={"max_retries": 0, "sandbox": True})
    emulator.set_faults(rate=1.0, kinds=["503"], methods=["POST"], count=1, skip=3)
    store = DyingStore()
    with pytest.raises(Exception, match="503"):
        run_try(store, try_number=1, batch_size=1)
    meti_connection(extra={"max_retries": 0})  # the same connection id, now production
    monkeypatch.setattr(meti_hooks, "_clients", {})

    created = run_try(store.revived(), try_number=2, batch_size=1)

    assert stored_alt_ids(emulator) == [f"FIELD-{n:03d}" for n in range(FEATURES)]
    assert not [item for item in created if item["id"].startswith("sandbox_")]


class BlipStore(DyingStore):
    """A store whose write of one key fails once, as one API-server error would."""

    def __init__(self, failing_key: str) -> None:
        super().__init__()
        self.failing_key: str | None = failing_key

    def set(self, key: str, value: Any) -> None:
        if key == self.failing_key:
            self.failing_key = None
            raise RuntimeError("the API server answered 503")
        super().set(key, value)


def test_a_failed_page_write_leaves_its_features_in_flight():
    store = BlipStore(PAGE_KEY.format(0))
    progress, _ = TaskStateProgress.open(store, "f" * 64, try_number=1, max_tries=5)
    progress.sending(["X"])
    progress.sending(["Y"])
    with pytest.raises(RuntimeError):
        progress.stored({"X": {"id": "src_x", "alt_id": "X"}})
    progress.sending(["Z"])  # another lane's next POST writes the head; then a kill

    _, resume = TaskStateProgress.open(store.revived(), "f" * 64, try_number=2, max_tries=5)

    assert resume is not None
    assert resume.recorded == {}
    assert sorted(resume.in_doubt) == ["X", "Y", "Z"]


def test_a_failed_head_write_does_not_start_the_post():
    store = BlipStore(HEAD_KEY)
    store.failing_key = None
    progress, _ = TaskStateProgress.open(store, "f" * 64, try_number=1, max_tries=5)
    store.failing_key = HEAD_KEY
    with pytest.raises(RuntimeError):
        progress.sending(["X"])
    progress.sending(["Y"])

    assert store.get(HEAD_KEY)["in_flight"] == ["Y"]


def test_a_failed_store_write_then_a_retry_stores_each_feature_once(
    meti_connection, emulator, task_context
):
    meti_connection(extra=FAST)
    store = BlipStore(PAGE_KEY.format(0))
    with pytest.raises(MetiPartialCreateError, match="503"):
        run_try(store, try_number=1, batch_size=1)

    created = run_try(store.revived(), try_number=2, batch_size=1)

    assert stored_alt_ids(emulator) == [f"FIELD-{n:03d}" for n in range(FEATURES)]
    assert [item["alt_id"] for item in created] == [f"FIELD-{n:03d}" for n in range(FEATURES)]


def test_a_record_that_cannot_be_deleted_does_not_fail_a_create_that_succeeded(
    meti_connection, emulator, task_context, caplog, capsys
):
    class Undeletable(DyingStore):
        def delete(self, key: str) -> None:
            raise RuntimeError("the API server answered 503")

    meti_connection(extra=FAST)
    with caplog.at_level(logging.WARNING):
        created = run_try(Undeletable(), try_number=1, batch_size=1)

    assert len(created) == FEATURES
    # The task's logger: structlog's (printed) on Airflow 3, the standard one before.
    assert "could not be deleted" in caplog.text + capsys.readouterr().out


def test_the_record_holds_no_secret(meti_connection, emulator, task_context, meti_api_version):
    meti_connection(extra=FAST)
    store = DyingStore(20)
    with pytest.raises((Killed, Exception)):
        run_try(store, try_number=1, batch_size=1)
    from airflow_provider_meti.hooks.meti import MetiHook

    token = MetiHook().get_token()
    kept = json.dumps(store.values)

    secret = METI_PASSWORD if meti_api_version == 1 else METI_CLIENT_SECRET
    assert secret not in kept
    assert token not in kept
    assert "FIELD-000" in kept  # it does hold the progress


def test_the_record_of_10000_features_stays_in_small_values():
    # v2's defaults: 100 features per POST, 4 POSTs in flight; METI's ids have 17 characters.
    store = DyingStore()
    progress, resume = TaskStateProgress.open(store, "f" * 64, try_number=1, max_tries=5)
    alt_ids = [f"FIELD-{n:014d}" for n in range(10_000)]  # 20 characters
    batch, in_flight = 100, 4
    head_sizes = []
    for start in range(0, len(alt_ids), batch * in_flight):
        chunks = [alt_ids[at : at + batch] for at in range(start, start + batch * in_flight, batch)]
        for chunk in chunks:
            progress.sending(chunk)
        head_sizes.append(len(store.values[HEAD_KEY]))
        for chunk in chunks:
            progress.stored(
                {a: {"id": f"src_{hash(a) & 2**52 - 1:013x}", "alt_id": a} for a in chunk}
            )

    page_sizes = [len(v) for k, v in store.values.items() if k != HEAD_KEY]
    assert resume is None
    assert max(page_sizes) <= PAGE_BYTES
    assert 100 <= len(page_sizes) <= 120
    assert sum(page_sizes) < 512 * 1024
    assert max(head_sizes) <= 12 * 1024  # 400 alt_ids in flight, and one number a page
    _, resumed = TaskStateProgress.open(store.revived(), "f" * 64, try_number=2, max_tries=5)
    assert resumed is not None
    assert sorted(resumed.recorded) == alt_ids
    assert resumed.in_doubt == []


def test_a_post_refused_before_it_was_processed_leaves_nothing_in_doubt(
    meti_connection, emulator, task_context
):
    meti_connection(extra={"max_retries": 0})
    emulator.set_faults(rate=1.0, kinds=["503"], methods=["POST"], count=1, skip=3)
    store = DyingStore()
    with pytest.raises(Exception, match="503"):
        run_try(store, try_number=1, batch_size=1)
    assert in_doubt_at_death(store) == set()
    sent = Requests(emulator)

    created = run_try(store.revived(), try_number=2, batch_size=1)

    assert [item["alt_id"] for item in created] == [f"FIELD-{n:03d}" for n in range(FEATURES)]
    assert sent["GET /sources"] == 0
    assert stored_alt_ids(emulator) == [f"FIELD-{n:03d}" for n in range(FEATURES)]
