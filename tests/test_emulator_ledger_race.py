"""The ledger's READ COMMITTED race, reproduced on request (concurrent_conflicts="ledger")."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from airflow_provider_meti.emulator import MetiEmulator
from airflow_provider_meti.emulator.ledger import Ledger
from tests.emulator_ledger_fields import collection, feature, polygon, rect

LEFT = polygon(rect(0, 0, 100, 100))
RIGHT = polygon(rect(50, 0, 150, 100))


def create_both_at_once(ledger: Ledger) -> list[str]:
    ids: list[str] = []
    errors: list[BaseException] = []

    def create(alt_id: str, geometry: dict[str, Any]) -> None:
        try:
            ids.extend(row["id"] for row in ledger.create(collection(feature(alt_id, geometry))))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=create, args=args) for args in (("L", LEFT), ("R", RIGHT))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and len(ids) == 2
    return ids


def test_two_overlapping_creates_in_concurrent_transactions_both_miss_the_conflict():
    # The barrier holds each create between its conflict search and its commit until the
    # other has searched too: exactly the interleaving the ledger allows.
    barrier = threading.Barrier(2, timeout=30)
    ledger = Ledger(concurrent_conflicts="ledger", transaction_hold=barrier.wait)
    first, second = create_both_at_once(ledger)
    for source_id in (first, second):
        source = ledger.get(source_id)
        assert source is not None
        assert (source["conflict"], source["conflict_with"]) == (False, [])
    assert sorted(ledger.missed_conflicts[0]) == sorted((first, second))


def test_the_same_creates_one_after_the_other_conflict_in_both_modes():
    for mode in ("serial", "ledger"):
        ledger = Ledger(concurrent_conflicts=mode)  # type: ignore[arg-type]
        (left,) = ledger.create(collection(feature("L", LEFT)))
        (right,) = ledger.create(collection(feature("R", RIGHT)))
        assert ledger.get(left["id"])["conflict_with"] == [right["id"]]  # type: ignore[index]
        assert ledger.missed_conflicts == []


def test_serial_mode_never_misses_a_conflict_between_concurrent_creates():
    ledger = Ledger()
    first, second = create_both_at_once(ledger)
    assert ledger.get(first)["conflict_with"] == [second]  # type: ignore[index]
    assert ledger.get(second)["conflict_with"] == [first]  # type: ignore[index]


def test_the_race_over_http_with_a_held_transaction():
    barrier = threading.Barrier(2, timeout=30)
    with MetiEmulator() as meti:
        meti.state.ledger = Ledger(concurrent_conflicts="ledger", transaction_hold=barrier.wait)
        session = requests.Session()
        token = session.post(
            f"{meti.url}/token", json={"email": "demo@meti.local", "password": "demo-password"}
        ).json()["token"]
        replies: list[requests.Response] = []

        def post(alt_id: str, geometry: dict[str, Any]) -> None:
            replies.append(
                requests.post(
                    f"{meti.url}/sources",
                    json=collection(feature(alt_id, geometry)),
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
            )

        threads = [threading.Thread(target=post, args=a) for a in (("L", LEFT), ("R", RIGHT))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert [reply.status_code for reply in replies] == [201, 201]
        assert len(meti.ledger.missed_conflicts) == 1
        assert [source["conflict"] for source in meti.ledger.all()] == [False, False]


def test_a_failed_hold_rolls_the_transaction_back():
    def fail() -> None:
        raise RuntimeError("connection lost")

    ledger = Ledger(concurrent_conflicts="ledger", transaction_hold=fail)
    with pytest.raises(RuntimeError):
        ledger.create(collection(feature("L", LEFT)))
    assert ledger.count() == 0


def test_bad_modes_are_refused():
    with pytest.raises(ValueError, match="concurrent_conflicts"):
        Ledger(concurrent_conflicts="optimistic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="transaction_seconds"):
        Ledger(concurrent_conflicts="ledger", transaction_seconds=-1)
