"""MetiSourcesChangedTrigger's loop: one event per change, a durable snapshot, faults.

The loop is driven with scripted listings, an injected sleep and a dict-backed state store;
the listing itself runs over real HTTP against the emulator on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import warnings
from collections.abc import Iterable
from typing import Any

import pytest

from airflow_provider_meti.exceptions import MetiApiError
from airflow_provider_meti.triggers import snapshots
from airflow_provider_meti.triggers.listing import IncompleteListingError, list_sources
from airflow_provider_meti.triggers.snapshots import Listing
from airflow_provider_meti.triggers.sources_changed import MetiSourcesChangedTrigger
from tests.features import collection, square_feature


class DictStore:
    """``asset_state_store`` as a dict: ``aget``/``aset``, with a count of writes."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0
        self.fail_reads = False

    async def aget(self, key: str, default: Any = None) -> Any:
        if self.fail_reads:
            raise RuntimeError("the API server is down")
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.writes += 1
        self.values[key] = value


class ScriptEnded(BaseException):
    """Ends a scripted run (a BaseException, so the poll loop does not take it for a fault)."""


class Script:
    """Scripted METI answers: each poll takes the next listing or raises the next error."""

    def __init__(self, *outcomes: dict[str, bool] | BaseException) -> None:
        self.outcomes = list(outcomes)
        self.polls = 0
        self.sleeps: list[float] = []

    async def list_once(self) -> Listing:
        if not self.outcomes:
            raise ScriptEnded
        self.polls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return listing(outcome, polled_at=f"poll-{self.polls}")

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def listing(
    flags: dict[str, bool], *, partners: dict[str, tuple[str, ...]] | None = None, polled_at="t"
) -> Listing:
    if partners is None:  # every flagged source in conflict with every other one
        flagged = tuple(sorted(sid for sid, flag in flags.items() if flag))
        partners = {sid: tuple(p for p in flagged if p != sid) for sid in flagged}
    return Listing(flags=flags, partners=partners, polled_at=polled_at)


def trigger(**kwargs: Any) -> MetiSourcesChangedTrigger:
    kwargs.setdefault("poll_interval", 60)
    return MetiSourcesChangedTrigger(**kwargs)


def events(
    watcher: MetiSourcesChangedTrigger, script: Script, store: DictStore | None
) -> list[dict[str, Any]]:
    """The payloads ``watcher`` fires over ``script``'s polls."""
    watcher.asset_state_store = store

    async def collect() -> list[dict[str, Any]]:
        payloads: list[dict[str, Any]] = []
        try:
            async for event in watcher.watch(watcher.listings(script.list_once, script.sleep)):
                payloads.append(event.payload)
        except ScriptEnded:
            pass
        return payloads

    return asyncio.run(collect())


def only_ids(payloads: Iterable[dict[str, Any]]) -> list[dict[str, list[str]]]:
    return [
        {k: v for k, v in payload.items() if k not in ("count", "polled_at") and v}
        for payload in payloads
    ]


A, B, C = "src_a", "src_b", "src_c"


def test_the_baseline_and_five_unchanged_polls_fire_nothing():
    store = DictStore()
    script = Script(*[{A: False, B: False}] * 6)
    assert events(trigger(), script, store) == []
    assert script.polls == 6
    assert store.writes == 1  # the baseline; an unchanged listing is not written again
    assert script.sleeps == [60.0] * 6


def test_each_change_fires_exactly_one_event():
    script = Script(
        {A: False},
        {A: False, B: False},  # added
        {A: False, B: False},
        {B: False},  # removed
        {B: False},
        {B: True, C: True},  # C added in conflict with B
        {B: True, C: True},
        {B: False, C: False},  # settled
        {C: False},  # B withdrawn, no conflict: only removed
    )
    payloads = events(trigger(), script, DictStore())
    assert only_ids(payloads) == [
        {"added": [B]},
        {"removed": [A]},
        {"added": [C], "conflict_raised": [B, C]},
        {"conflict_cleared": [B, C]},
        {"removed": [B]},
    ]
    assert [p["polled_at"] for p in payloads] == ["poll-2", "poll-4", "poll-6", "poll-8", "poll-9"]
    assert [p["count"] for p in payloads] == [2, 1, 2, 2, 1]


def test_the_payload_names_every_kind_asked_for_and_only_those():
    script = Script({A: False}, {A: False, B: False})
    (payload,) = events(trigger(changes=["added", "removed"]), script, DictStore())
    assert payload == {"added": [B], "removed": [], "count": 2, "polled_at": "poll-2"}


def test_a_watcher_fires_only_for_its_own_kinds():
    script = Script({A: False}, {A: False, B: False}, {B: False}, {B: True, C: True})
    payloads = events(trigger(changes="conflict_raised"), script, DictStore())
    assert payloads == [{"conflict_raised": [B, C], "count": 2, "polled_at": "poll-4"}]


def test_a_raised_conflict_lists_both_sources_of_the_pair_when_one_was_in_conflict_already():
    before = listing({A: True, B: True, C: False}, partners={A: (B,), B: (A,)})
    after = listing({A: True, B: True, C: True}, partners={A: (B, C), B: (A,), C: (A,)})
    changed = snapshots.diff(snapshots.kept(before, snapshots.KINDS), after, snapshots.KINDS)
    assert changed == {"conflict_raised": [A, C]}


def test_a_source_withdrawn_in_conflict_counts_as_removed_and_cleared():
    script = Script({A: True, B: True}, {A: False})
    (payload,) = events(trigger(), script, DictStore())
    assert only_ids([payload]) == [{"removed": [B], "conflict_cleared": [A, B]}]


def test_a_restart_with_the_same_store_repeats_nothing_and_reports_a_change_made_while_down():
    store = DictStore()
    first = events(trigger(), Script({A: False}, {A: False, B: False}), store)
    assert only_ids(first) == [{"added": [B]}]
    # The same watcher after a triggerer restart: its first listing is what it last saw ...
    assert events(trigger(), Script({A: False, B: False}, {A: False, B: False}), store) == []
    # ... and a change made while it was down is reported once, on its first poll.
    again = events(trigger(), Script({A: False, B: False, C: False}, {A: False, C: False}), store)
    assert only_ids(again) == [{"added": [C]}, {"removed": [B]}]
    assert [p["polled_at"] for p in again] == ["poll-1", "poll-2"]


class DiesOnSecondWrite(DictStore):
    """A triggerer that dies after the event left but before the snapshot was stored."""

    async def aset(self, key: str, value: Any) -> None:
        if self.writes:
            raise ScriptEnded
        await super().aset(key, value)


def test_a_triggerer_dying_between_event_and_store_reports_the_change_again_not_never():
    store = DiesOnSecondWrite()
    first = events(trigger(), Script({A: False}, {A: False, B: False}), store)
    assert only_ids(first) == [{"added": [B]}]
    assert snapshots.decode(store.values[trigger().store_key()]) == {A: False}
    plain = DictStore()  # the restarted triggerer, reading what was stored
    plain.values = store.values
    assert only_ids(events(trigger(), Script({A: False, B: False}), plain)) == [{"added": [B]}]


def test_without_a_state_store_a_restart_takes_a_new_baseline():
    # Airflow 3.0-3.2 inject no asset_state_store: the snapshot lives as long as the trigger.
    assert only_ids(events(trigger(), Script({A: False}, {A: False, B: False}), None)) == [
        {"added": [B]}
    ]
    # A change made while the triggerer was down (C added) fires nothing after the restart.
    assert events(trigger(), Script({A: False, B: False, C: False}), None) == []


def test_watchers_of_different_kinds_keep_separate_snapshots_in_one_store():
    store = DictStore()
    events(trigger(changes=["added"]), Script({A: False}), store)
    events(trigger(changes=["removed"]), Script({A: False, B: False}), store)
    assert len(store.values) == 2
    assert trigger(changes=["added"]).store_key() != trigger(changes=["removed"]).store_key()
    assert trigger(poll_interval=60).store_key() == trigger(poll_interval=300).store_key()


def logged(caplog, capsys) -> str:
    """What was logged, whether through logging (Airflow 2.11) or structlog's console (3.x)."""
    captured = capsys.readouterr()
    return max(caplog.text, captured.out + captured.err, key=len)


def test_failed_polls_fire_nothing_keep_the_snapshot_and_log_once_per_outage(caplog, capsys):
    outage = MetiApiError("Service Unavailable", status_code=503, method="GET", path="/sources")
    unauthorized = MetiApiError("Unauthorized", status_code=401, method="GET", path="/sources")
    store = DictStore()
    script = Script(
        {A: False, B: False},
        outage,
        unauthorized,
        outage,
        {A: False, B: False},  # back: nothing changed, nothing fires
        outage,
        {A: False},  # back, with B withdrawn meanwhile
    )
    watcher = trigger()
    with caplog.at_level(logging.INFO, logger=watcher.log.name):
        payloads = events(watcher, script, store)
    assert only_ids(payloads) == [{"removed": [B]}]
    assert store.writes == 2  # the baseline and the change: never a failed poll
    lines = logged(caplog, capsys).splitlines()
    failures = [line for line in lines if "failed; the last snapshot is kept" in line]
    recoveries = [line for line in lines if "works again after" in line]
    assert len(failures) == 2  # two outages, however many polls each lasted
    assert len(recoveries) == 2
    assert "after 3 failed poll(s)" in recoveries[0]
    assert "after 1 failed poll(s)" in recoveries[1]


def test_an_unreadable_store_delays_the_baseline_instead_of_taking_a_new_one():
    store = DictStore()
    events(trigger(), Script({A: False}), store)
    store.fail_reads = True
    watcher = trigger()
    script = Script({A: False, B: False}, {A: False, B: False})
    assert events(watcher, script, store) == []
    store.fail_reads = False
    # Read again at the next start: B, added while the store was unreadable, is reported.
    assert only_ids(events(trigger(), Script({A: False, B: False}), store)) == [{"added": [B]}]


class SharedByTwoAssets(DictStore):
    """Airflow's accessors of a trigger that two assets watch: no single store."""

    async def aget(self, key: str, default: Any = None) -> Any:
        raise ValueError("Task has 2 concrete inlets and outlets")


def test_a_trigger_watched_by_two_assets_keeps_its_snapshot_in_memory():
    store = SharedByTwoAssets()
    script = Script({A: False}, {A: False, B: False})
    assert only_ids(events(trigger(), script, store)) == [{"added": [B]}]
    assert store.writes == 0


def test_a_corrupt_stored_snapshot_is_replaced_by_a_new_baseline(caplog, capsys):
    store = DictStore()
    store.values[trigger().store_key()] = "not a snapshot"
    with caplog.at_level(logging.WARNING):
        assert events(trigger(), Script({A: False}, {A: False}), store) == []
    assert snapshots.decode(store.values[trigger().store_key()]) == {A: False}
    assert "Ignoring the stored sources snapshot" in logged(caplog, capsys)


# The snapshot


def test_the_snapshot_round_trips_with_conflict_flags_and_drops_them_when_not_needed():
    flags = {f"src_{n:05d}": n % 7 == 0 for n in range(2000)}
    text = snapshots.encode(snapshots.kept(listing(flags), snapshots.KINDS))
    assert text.isascii() and snapshots.decode(text) == flags
    ids_only = snapshots.kept(listing(flags), ["added", "removed"])
    assert snapshots.decode(snapshots.encode(ids_only)) == dict.fromkeys(flags, False)
    assert len(snapshots.encode(ids_only)) < len(text)


@pytest.mark.parametrize(
    "text", ["", "not base64!", "aGVsbG8=", snapshots.encode({A: True}).replace("A", "B")]
)
def test_decode_refuses_what_is_not_a_snapshot(text):
    with pytest.raises(ValueError):
        snapshots.decode(text)


# Arguments


def test_serialize_is_plain_and_deterministic_and_holds_no_secret(meti_connection):
    one = trigger(filters={"project_id": "p1", "methodology": None}, changes=["removed", "added"])
    two = trigger(filters={"project_id": "p1"}, changes=["added", "removed"])
    assert one.serialize() == two.serialize()
    classpath, kwargs = one.serialize()
    assert classpath == "airflow_provider_meti.triggers.sources_changed.MetiSourcesChangedTrigger"
    assert kwargs == {
        "meti_conn_id": "meti_default",
        "filters": {"project_id": "p1"},
        "poll_interval": 60.0,
        "changes": ["added", "removed"],
    }
    assert MetiSourcesChangedTrigger(**kwargs).serialize() == one.serialize()
    assert "password" not in repr(kwargs) and meti_connection()["password"] not in repr(kwargs)


def test_watchers_share_a_listing_only_for_the_same_connection_filters_and_interval():
    key = trigger(changes=["added"]).shared_stream_key()
    assert key == trigger(changes=["conflict_raised"]).shared_stream_key()
    assert key != trigger(filters={"project_id": "p1"}).shared_stream_key()
    assert key != trigger(poll_interval=120).shared_stream_key()
    assert key != trigger(meti_conn_id="other").shared_stream_key()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": {"projectid": "p1"}}, "not a METI listing filter"),
        ({"filters": {"project_id": ["p1"]}}, "text or a whole number"),
        ({"changes": ["added", "renamed"]}, "changes must be among"),
        ({"changes": []}, "at least one kind"),
        ({"poll_interval": 0.5}, "at least 1 s"),
        ({"poll_interval": "300"}, "a number of seconds"),
    ],
)
def test_bad_arguments_are_refused_when_the_dag_is_parsed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        trigger(**kwargs)


def test_a_poll_interval_below_30_s_is_accepted_with_a_warning():
    with pytest.warns(UserWarning, match="meant for tests"):
        assert trigger(poll_interval=1).poll_interval == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MetiSourcesChangedTrigger().poll_interval == 300.0


# The listing, over HTTP


def created(emulator, *features: dict[str, Any]) -> list[str]:
    return [source["id"] for source in emulator.ledger.create(collection(*features))]


def poll_with(emulator_changes: list[Any], store: DictStore, **kwargs: Any) -> list[dict]:
    """Payloads of a watcher polling the emulator; before poll n+1, ``emulator_changes[n]()``
    runs (the last one ends the run)."""
    watcher = trigger(**kwargs)
    watcher.asset_state_store = store
    pending = list(emulator_changes)

    async def sleep(seconds: float) -> None:
        if not pending:
            raise ScriptEnded
        pending.pop(0)()

    async def collect() -> list[dict]:
        found: list[dict] = []
        try:
            async for event in watcher.watch(watcher.listings(sleep=sleep)):
                found.append(event.payload)
        except ScriptEnded:
            pass
        return found

    return asyncio.run(asyncio.wait_for(collect(), 120))


def test_polling_the_emulator_reports_additions_conflicts_and_withdrawals(
    meti_connection, emulator
):
    (first,) = created(emulator, square_feature("A"))
    ids: list[str] = []
    payloads = poll_with(
        [
            lambda: ids.extend(created(emulator, square_feature("B", y=0.1))),  # overlaps A
            lambda: None,
            lambda: emulator.ledger.delete(ids[0]),
            lambda: None,
        ],
        DictStore(),
    )
    (second,) = ids
    assert only_ids(payloads) == [
        {"added": [second], "conflict_raised": sorted([first, second])},
        {"removed": [second], "conflict_cleared": sorted([first, second])},
    ]


def test_a_listing_cut_short_by_a_fault_is_no_removal(meti_connection, emulator):
    meti_connection(extra={"max_retries": 0})
    emulator.ledger.seed(2500)
    store = DictStore()
    faulty = lambda: emulator.set_faults(1.0, ["503"], methods=["GET"], skip=1)  # noqa: E731
    payloads = poll_with([faulty, emulator.clear_faults, lambda: None], store)
    assert payloads == []
    assert store.writes == 1
    assert len(snapshots.decode(next(iter(store.values.values())))) == 2500


def test_the_listing_reads_every_page_and_keeps_ids_and_flags(meti_connection, emulator):
    emulator.ledger.seed(2345)
    first, second = created(emulator, square_feature("A"), square_feature("B", y=0.1))
    watcher = trigger()

    async def main() -> Listing:
        return await watcher._list_once()

    result = asyncio.run(main())
    assert len(result.flags) == 2347
    assert result.flags[first] and result.flags[second]
    assert result.partners[first] == (second,)
    gets = [k for k in emulator.stats()["requests"] if k.startswith("GET ")]
    # 1000 + 1000 + 347, then the empty page that ends a listing without a total
    assert sum(emulator.stats()["requests"][k] for k in gets) == 4


class EnvelopeClient:
    """Pages of a server that announces a total, then serves an empty page early."""

    class api:
        sources_path = "/sources"

    def __init__(self, pages: list[list[dict]], total: int) -> None:
        self.pages, self.total = pages, total

    async def request(self, method: str, path: str, *, params: dict) -> dict:
        page = self.pages.pop(0) if self.pages else []
        return {"sources": page, "total": self.total}


def test_a_listing_that_ends_before_its_announced_total_is_incomplete():
    client = EnvelopeClient([[{"id": A}, {"id": B}]], total=5)
    with pytest.raises(IncompleteListingError, match="after 2 of the 5"):
        asyncio.run(list_sources(client, {}, page_size=2))  # type: ignore[arg-type]


def test_a_server_that_ignores_offset_is_an_incomplete_listing():
    client = EnvelopeClient([[{"id": A}], [{"id": A}]], total=9)
    with pytest.raises(IncompleteListingError, match="same page"):
        asyncio.run(list_sources(client, {}, page_size=1))  # type: ignore[arg-type]


# Shared polling


def test_watchers_sharing_listings_compare_each_once_and_each_get_their_own_kinds(monkeypatch):
    calls = []
    real_diff = snapshots.diff
    monkeypatch.setattr(snapshots, "diff", lambda *a: calls.append(a) or real_diff(*a))
    polls = [listing({A: False}), listing({A: False, B: False}), listing({B: True, C: True})]
    watchers = [trigger(changes=["added"]) for _ in range(3)] + [trigger(changes="removed")]
    for watcher in watchers:
        watcher.asset_state_store = DictStore()

    async def one(watcher) -> list[dict]:
        async def shared():
            for item in polls:
                yield item

        return [event.payload async for event in watcher.watch(shared())]

    async def main() -> list[list[dict]]:
        return list(await asyncio.gather(*(one(w) for w in watchers)))

    *added, removed = asyncio.run(main())
    assert [only_ids(p) for p in added] == [[{"added": [B]}, {"added": [C]}]] * 3
    assert only_ids(removed) == [{"removed": [A]}]
    # The three "added" watchers hold one snapshot object: one diff per listing for them.
    assert len(calls) == 2 * 2


airflow_33 = pytest.mark.skipif(
    importlib.util.find_spec("airflow.triggers.shared_stream") is None,
    reason="Airflow before 3.3 has no shared streams",
)


@airflow_33
@pytest.mark.filterwarnings("ignore:poll_interval 1 s")
def test_airflow_s_shared_stream_lists_once_per_interval_for_every_watcher(
    meti_connection, emulator
):
    from airflow.triggers.shared_stream import SharedStreamManager

    emulator.ledger.seed(1500)  # two pages, then the empty one: 3 GETs a listing
    with pytest.warns(UserWarning):
        watchers = [trigger(poll_interval=1, changes=[kind]) for kind in snapshots.KINDS]
    seen = [0] * len(watchers)

    async def counted(stream, n):
        async for item in stream:
            seen[n] += 1
            yield item

    async def main() -> None:
        manager = SharedStreamManager()

        async def one(n, watcher):
            watcher.asset_state_store = DictStore()
            stream = manager.subscribe(
                trigger_id=n, trigger=watcher, key=watcher.shared_stream_key()
            )
            async for _ in watcher.filter_shared_stream(counted(stream, n)):
                pass

        tasks = [asyncio.create_task(one(n, w)) for n, w in enumerate(watchers)]
        while min(seen) < 2:
            await asyncio.sleep(0.01)
        # The next listing starts a whole interval after the second one was handed out.
        gets.append(emulator.stats()["requests"]["GET /sources"])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await manager.stop_all()

    gets: list[int] = []
    asyncio.run(asyncio.wait_for(main(), 120))
    assert seen == [2] * 4
    assert gets == [2 * 3]  # two listings for all four watchers, not eight
