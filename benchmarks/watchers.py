"""Section 8: 50 sources-changed watchers on one triggerer, with and without shared polling.

Fifty ``MetiSourcesChangedTrigger`` watchers of the same connection, filters and interval
(half report additions and withdrawals, half conflict changes) run on one event loop in this
process against the emulator (its own process) holding the Standard plan's 15,000 sources.
*Shared*: Airflow 3.3's own ``SharedStreamManager`` runs one listing per interval and hands
it to every watcher's ``filter_shared_stream``, as the triggerer does. *Not shared*: each
watcher runs its own ``run()`` loop. Each variant runs until every watcher has compared
``LISTINGS`` listings with its snapshot; the emulator counts the GETs. Then the snapshot a
watcher stores, at 15,000 and 95,000 sources (the Standard and Enterprise plan limits), made
of the ids the emulator gave out.

``python -m benchmarks.watchers [--quick] [--output FILE]`` writes this section alone (the
watchers' log lines go to standard output too: use ``--output`` to keep them apart).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import warnings
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import machine, report
from benchmarks.airflow_env import define_meti_connection, quiet_task_logs
from benchmarks.emulator_process import EmulatorProcess
from benchmarks.results import Section, Table, Target
from benchmarks.sizes import QUICK, Sizes


@dataclass(frozen=True)
class WatcherSizes:
    watchers: int = 50
    sources: int = 15_000
    large_sources: int = 95_000
    listings: int = 3
    poll_interval_s: float = 5.0
    conflict_share: int = 20
    """One source in this many is flagged in conflict in the flagged snapshot."""


FULL_WATCHERS = WatcherSizes()
QUICK_WATCHERS = WatcherSizes(watchers=5, sources=1_500, large_sources=3_000, listings=2)
PAGE_SIZE = 1000


class DictStore:
    """An ``asset_state_store`` in memory (the triggerer's goes through its supervisor)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


def _watchers(conn_id: str, sizes: WatcherSizes) -> list[Any]:
    from airflow_provider_meti.triggers.sources_changed import MetiSourcesChangedTrigger

    kinds = (["added", "removed"], ["conflict_raised", "conflict_cleared"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a short interval, on purpose
        watchers = [
            MetiSourcesChangedTrigger(
                meti_conn_id=conn_id, poll_interval=sizes.poll_interval_s, changes=kinds[n % 2]
            )
            for n in range(sizes.watchers)
        ]
    for watcher in watchers:
        watcher.asset_state_store = DictStore()
    return watchers


async def _until_each_saw(
    counts: list[int], listings: int, tasks: list[asyncio.Task[None]]
) -> None:
    while min(counts) < listings:
        failed = [task for task in tasks if task.done()]
        if failed:
            failed[0].result()  # raises what ended it
            raise RuntimeError("a watcher stopped early")
        await asyncio.sleep(0.05)


async def _counted(stream: AsyncIterator[Any], counts: list[int], n: int) -> AsyncIterator[Any]:
    async for item in stream:
        counts[n] += 1
        yield item


async def _drive(watchers: list[Any], listings: int, shared: bool) -> None:
    from airflow.triggers.shared_stream import SharedStreamManager

    counts = [0] * len(watchers)
    manager = SharedStreamManager()

    async def one(n: int, watcher: Any) -> None:
        if shared:
            key = watcher.shared_stream_key()
            stream = manager.subscribe(trigger_id=n, trigger=watcher, key=key)
            events = watcher.filter_shared_stream(_counted(stream, counts, n))
        else:
            events = watcher.watch(_counted(watcher.listings(), counts, n))
        async for _event in events:
            pass

    tasks = [asyncio.create_task(one(n, w)) for n, w in enumerate(watchers)]
    try:
        await _until_each_saw(counts, listings, tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await manager.stop_all()


def _gets(stats: dict[str, Any]) -> int:
    return int(stats["requests"].get("GET /sources", 0))


class ListingCounter:
    """Counts the listings the watchers start and finish, by wrapping the trigger's one
    listing call for the duration of a variant (the GETs alone cannot tell a listing more
    from a page retried)."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0

    def __enter__(self) -> ListingCounter:
        from airflow_provider_meti.triggers.sources_changed import MetiSourcesChangedTrigger

        self._original = original = MetiSourcesChangedTrigger._list_once
        counter = self

        async def counted(trigger: Any) -> Any:
            counter.started += 1
            listing = await original(trigger)
            counter.finished += 1
            return listing

        MetiSourcesChangedTrigger._list_once = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc_info: object) -> None:
        from airflow_provider_meti.triggers.sources_changed import MetiSourcesChangedTrigger

        MetiSourcesChangedTrigger._list_once = self._original  # type: ignore[method-assign]


def _run_variant(emulator: EmulatorProcess, sizes: WatcherSizes, shared: bool) -> dict[str, Any]:
    before = emulator.stats()
    conn_id = define_meti_connection(emulator.url)
    watchers = _watchers(conn_id, sizes)
    cpu_before, emulator_before = time.process_time(), emulator.cpu_seconds()
    started = time.perf_counter()
    with ListingCounter() as listings:
        asyncio.run(_drive(watchers, sizes.listings, shared))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    emulator_after = emulator.cpu_seconds()
    stats = emulator.stats()
    gets = _gets(stats) - _gets(before)
    return {
        "shared": shared,
        "watchers": sizes.watchers,
        "gets": gets,
        "listings_started": listings.started,
        "listings": listings.finished,
        # Every watcher compared `listings` listings (a late one may have seen one more).
        "listings_per_interval": listings.finished / sizes.listings,
        "gets_per_interval": gets / sizes.listings,
        "token_requests": stats["token_requests"] - before["token_requests"],
        "seconds": seconds,
        "client_cpu_s": cpu,
        "emulator_cpu_s": None
        if emulator_before is None or emulator_after is None
        else emulator_after - emulator_before,
    }


def _pages_per_listing(sources: int) -> int:
    # Full pages, a short one if any, and the empty page that ends a bare-array listing.
    return sources // PAGE_SIZE + (1 if sources % PAGE_SIZE else 0) + 1


async def _listing(conn_id: str) -> Any:
    from airflow_provider_meti.triggers.sources_changed import MetiSourcesChangedTrigger

    return await MetiSourcesChangedTrigger(meti_conn_id=conn_id)._list_once()


def _snapshot_sizes(emulator: EmulatorProcess, sources: int, share: int) -> dict[str, Any]:
    from airflow_provider_meti.triggers import snapshots
    from airflow_provider_meti.triggers.snapshots import Listing

    emulator.fresh(sources)
    listing = asyncio.run(_listing(define_meti_connection(emulator.url)))
    assert len(listing.flags) == sources, f"listed {len(listing.flags)} of {sources}"
    ids_only = snapshots.kept(listing, ["added", "removed"])
    flagged = {sid: n % share == 0 for n, sid in enumerate(sorted(listing.flags))}
    flagged_listing = Listing(flags=flagged, partners={}, polled_at=listing.polled_at)
    raw = sum(len(sid) + 1 for sid in listing.flags)
    figures: dict[str, Any] = {"sources": sources, "raw_id_bytes": raw}
    for name, snapshot in (
        ("ids", ids_only),
        ("flagged", snapshots.kept(flagged_listing, snapshots.KINDS)),
    ):
        text = snapshots.encode(snapshot)
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            snapshots.decode(snapshots.encode(snapshot))
            timings.append(time.perf_counter() - started)
        figures[f"{name}_bytes"] = len(text)
        figures[f"{name}_roundtrip_ms"] = statistics.median(timings) * 1000
    started = time.perf_counter()
    snapshots.diff(flagged, flagged_listing, snapshots.KINDS)
    figures["diff_ms"] = (time.perf_counter() - started) * 1000
    return figures


def _kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB"


def run(emulator: EmulatorProcess, sizes: Sizes) -> Section:
    wsizes = QUICK_WATCHERS if sizes == QUICK else FULL_WATCHERS
    emulator.fresh(wsizes.sources)
    shared = _run_variant(emulator, wsizes, shared=True)
    alone = _run_variant(emulator, wsizes, shared=False)
    small = _snapshot_sizes(emulator, wsizes.sources, wsizes.conflict_share)
    large = _snapshot_sizes(emulator, wsizes.large_sources, wsizes.conflict_share)
    pages = _pages_per_listing(wsizes.sources)

    polling = Table(
        [
            "variant",
            "watchers",
            "listings per interval",
            "listings (started)",
            "listing GETs per interval",
            "token requests",
            "client CPU s",
            "emulator CPU s",
            "wall s",
        ]
    )
    for name, f in (("shared (shared_stream_key)", shared), ("not shared (run())", alone)):
        emulator_cpu = "n/a" if f["emulator_cpu_s"] is None else f"{f['emulator_cpu_s']:.1f}"
        polling.rows.append(
            [
                name,
                str(f["watchers"]),
                f"{f['listings_per_interval']:,.2f}",
                f"{f['listings']:,} ({f['listings_started']:,})",
                f"{f['gets_per_interval']:,.1f}",
                str(f["token_requests"]),
                f"{f['client_cpu_s']:.1f}",
                emulator_cpu,
                f"{f['seconds']:.1f}",
            ]
        )
    sizes_table = Table(
        [
            "sources",
            "ids as text",
            "stored: ids only",
            f"stored: ids + 1 in {wsizes.conflict_share} flagged",
            "encode + decode ms",
            "diff ms",
        ]
    )
    for f in (small, large):
        sizes_table.rows.append(
            [
                f"{f['sources']:,}",
                _kib(f["raw_id_bytes"]),
                f"{_kib(f['ids_bytes'])} ({f['ids_bytes'] / f['sources']:.1f} B/source)",
                f"{_kib(f['flagged_bytes'])} ({f['flagged_bytes'] / f['sources']:.1f} B/source)",
                f"{f['flagged_roundtrip_ms']:.0f}",
                f"{f['diff_ms']:.0f}",
            ]
        )
    ratio = alone["gets_per_interval"] / shared["gets_per_interval"]
    beyond = shared["gets"] - pages * shared["listings"]
    return Section(
        key="watchers",
        title=f"8. {wsizes.watchers} sources-changed watchers on one triggerer",
        method=(
            f"{wsizes.watchers} `MetiSourcesChangedTrigger` watchers of one connection, the "
            f"same (no) filters and a {wsizes.poll_interval_s:g} s interval, half reporting "
            "additions and withdrawals and half conflict changes, on one event loop, against "
            f"the emulator (its own process) holding {wsizes.sources:,} sources, listed in "
            f"pages of {PAGE_SIZE:,} ({pages} GETs a listing, the last one empty). *Shared*: "
            "Airflow's `SharedStreamManager`, as the 3.3 triggerer runs it, drives one "
            "`open_shared_stream` listing per interval into every watcher's "
            "`filter_shared_stream`. *Not shared*: every watcher's own `run()` loop. Each "
            f"variant runs until every watcher has compared {wsizes.listings} listings with "
            "its snapshot. *Listings* are counted as they finish (and start), by wrapping the "
            "trigger's one listing call; *per interval* divides by "
            f"{wsizes.listings}. *Listing GETs* is the emulator's count of `GET /sources`. "
            "The snapshot table stores listings of "
            "the emulator's own ids (`src_` and 13 letters or digits): ids only (what "
            "`added`/`removed` need), and with the conflict flag of one source in "
            f"{wsizes.conflict_share}; *ids as text* is the sum of the ids' lengths plus one "
            "byte each. Encode + decode and the diff of two listings are medians of 5 and "
            "one run, on the flagged snapshot."
        ),
        tables=[polling, sizes_table],
        notes=[
            f"Sharing: {shared['listings_per_interval']:,.2f} listings and "
            f"{shared['gets_per_interval']:,.1f} listing GETs per interval for "
            f"{wsizes.watchers} watchers (one listing: {pages} GETs), against "
            f"{alone['listings_per_interval']:,.2f} listings and "
            f"{alone['gets_per_interval']:,.1f} GETs without ({ratio:.0f}x the GETs).",
            f"Shared, the emulator counted {shared['gets']:,} listing GETs for "
            f"{shared['listings']:,} finished listings of {pages} pages"
            + (
                "."
                if beyond == 0
                else f": {beyond:+,} (a page asked again, or a listing cut off at the end)."
            ),
            f"*Listings* counts every watcher's listings: without sharing, watchers that "
            f"finished their {wsizes.listings} early listed again while the last caught up. "
            "*Token requests*: the second variant found the first one's token in the "
            "provider's token cache (one token per host and account), so it asked for none.",
            f"The stored snapshot: {_kib(small['flagged_bytes'])} at {small['sources']:,} "
            f"sources and {_kib(large['flagged_bytes'])} at {large['sources']:,} "
            "(base64 of zlib-compressed JSON; Airflow keeps it in a TEXT column).",
        ],
        targets=[
            Target(
                f"8. listings per interval, {wsizes.watchers} shared watchers",
                "1 (one for every watcher)",
                f"{shared['listings_per_interval']:,.2f}",
                shared["listings_started"] <= wsizes.listings,
            ),
        ],
        data={"shared": shared, "not_shared": alone, "snapshots": [small, large]},
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.watchers", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--output", type=Path, help="write the Markdown here (default: standard output)"
    )
    args = parser.parse_args(argv)
    quiet_task_logs()
    described = machine.describe()
    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    started = time.perf_counter()
    with EmulatorProcess() as emulator:
        section = run(emulator, QUICK if args.quick else Sizes())
    section.seconds = time.perf_counter() - started
    command = "python -m benchmarks.watchers" + (" --quick" if args.quick else "")
    text = report.render(
        [section],
        machine=described,
        command=command,
        started=started_at,
        seconds=section.seconds,
        load_at_end=machine.load_average(),
        quick=args.quick,
    )
    if args.output is None:
        print(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
