"""Parallel creates never send overlapping features concurrently (#24), and an interrupted
create with one worker (or one v2 batch) reports what the server stored (#25.9)."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest

from airflow_provider_meti.api import API_V2
from airflow_provider_meti.client import ClientSettings, MetiClient
from airflow_provider_meti.create import Batch, lanes_of_batches
from airflow_provider_meti.emulator import MetiEmulator
from airflow_provider_meti.exceptions import MetiPartialCreateError
from airflow_provider_meti.retries import RetryPolicy
from tests.airflow_context import METI_CLIENT_ID, METI_CLIENT_SECRET
from tests.features import collection, square_feature
from tests.test_create_and_delete_safety import TaskTimeout, alarm  # noqa: F401

FAST = RetryPolicy(max_retries=2, max_retry_time=10, initial_wait=0.01, max_wait=0.02)


def v2_client(meti: MetiEmulator, max_workers: int = 4) -> MetiClient:
    source = API_V2.token_source(
        meti.url, METI_CLIENT_ID, METI_CLIENT_SECRET, token_url=meti.token_url
    )
    settings = ClientSettings(base_url=meti.url, timeout=5, retry=FAST, max_workers=max_workers)
    return MetiClient(settings, source, api=API_V2)


def test_batches_sharing_a_lane_are_one_sequential_lane():
    batches = [Batch([{"id": name}]) for name in "abcd"]
    lanes = lanes_of_batches(batches, {"a": 0, "b": 1, "c": 0, "d": 2})
    assert [[batch[0]["id"] for batch in lane] for lane in lanes] == [["a", "c"], ["b"], ["d"]]


def test_overlapping_features_are_flagged_as_meti_flags_them_sequentially():
    # Four copies of one field and four fields apart; the ledger's race would store the copies
    # unflagged if two of them were in concurrent transactions.
    fc = collection(
        *(square_feature(f"same-{n}") for n in range(4)),
        *(square_feature(f"apart-{n}", x=3 * (n + 1)) for n in range(4)),
    )
    copies_in_transaction = 0
    most_copies_at_once = 0
    lock = threading.Lock()

    with MetiEmulator(port=0, documented_only=True, concurrent_conflicts="ledger") as meti:
        ledger = meti.state.ledger
        original = ledger.create

        def create(feature_collection: Any, **kwargs: Any) -> Any:
            nonlocal copies_in_transaction, most_copies_at_once
            copy = feature_collection["features"][0]["id"].startswith("same")
            with lock:
                copies_in_transaction += copy
                most_copies_at_once = max(most_copies_at_once, copies_in_transaction)
            try:
                return original(feature_collection, **kwargs)
            finally:
                with lock:
                    copies_in_transaction -= copy

        ledger.create = create
        with v2_client(meti, max_workers=4) as client:
            created = client.create_sources(fc, batch_size=1)
        stored = {source["alt_id"]: source for source in meti.ledger.all()}

    assert [item["alt_id"] for item in created] == [f["id"] for f in fc["features"]]
    assert most_copies_at_once == 1
    for n in range(4):
        others = {created[m]["id"] for m in range(4) if m != n}
        assert stored[f"same-{n}"]["conflict"] is True
        assert set(stored[f"same-{n}"]["conflict_with"]) == others
        assert stored[f"apart-{n}"]["conflict"] is False


def test_an_interrupted_single_batch_v2_create_reports_what_was_stored(alarm):  # noqa: F811
    with MetiEmulator(port=0, documented_only=True) as meti:
        client = v2_client(meti, max_workers=1)
        original = client._post_features

        def post(batch: Batch, budget: Any) -> Any:
            result = original(batch, budget)  # stored: the alarm comes while the answer travels
            os.kill(os.getpid(), signal.SIGALRM)
            assert alarm.wait(60)
            return result

        client._post_features = post  # type: ignore[method-assign]
        fc = collection(*(square_feature(f"F{n}", x=2 * n) for n in range(3)))
        with client, pytest.raises(MetiPartialCreateError) as raised:
            client.create_sources(fc)
        stored = sorted(source["alt_id"] for source in meti.ledger.all())

    assert isinstance(raised.value.cause, TaskTimeout)
    assert sorted(item["alt_id"] for item in raised.value.created) == stored == ["F0", "F1", "F2"]
    assert not any(t.name.startswith("meti-create") for t in threading.enumerate())
