"""Section 4: registering 2,000 sources, one feature per POST (METI v1).

The limit posts them one after another on one session (``TightClient``: the environment
resolved once, msgspec encoding and decoding); the naive loop (``LimitClient``) is shown
beside it for reference. The provider validates the whole collection first, then posts with
``max_workers`` threads sharing one session and token.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from benchmarks.airflow_env import define_meti_connection
from benchmarks.emulator_process import EmulatorProcess
from benchmarks.features import feature_collection
from benchmarks.limit_client import LimitClient, TightClient
from benchmarks.machine import load_average
from benchmarks.measure import Spread, ratio_text, rotated, timed
from benchmarks.results import Section, Table
from benchmarks.sizes import Sizes

LIMIT = "limit: one thread, one Session, msgspec"
NAIVE = "naive loop: one thread, one Session, stdlib json"


def _limit(emulator: EmulatorProcess, collection: dict[str, Any]) -> None:
    client = TightClient(emulator.url)
    for feature in collection["features"]:
        client.create_one(feature)


def _naive(emulator: EmulatorProcess, collection: dict[str, Any]) -> None:
    client = LimitClient(emulator.url)
    for feature in collection["features"]:
        client.create_one(feature)


def _provider(workers: int) -> Callable[[EmulatorProcess, dict[str, Any]], None]:
    def create(emulator: EmulatorProcess, collection: dict[str, Any]) -> None:
        from airflow_provider_meti.hooks.meti import MetiHook

        # A new connection id: a new client, token and session, as a new task would have.
        hook = MetiHook(define_meti_connection(emulator.url), max_workers=workers)
        hook.create_sources(collection)

    return create


def _name(workers: int) -> str:
    return f"provider: create_sources, max_workers={workers}"


Timings = dict[str, list[float]]


def _measure(
    emulator: EmulatorProcess,
    workers: tuple[int, ...],
    count: int,
    rounds: int,
    faults: dict[str, Any] | None = None,
) -> tuple[Timings, Timings, Timings]:
    """Wall, client CPU and emulator CPU seconds of each variant, per round."""
    collection = feature_collection(count)
    variants = {LIMIT: _limit, NAIVE: _naive, **{_name(w): _provider(w) for w in workers}}
    wall: Timings = {name: [] for name in variants}
    cpu: Timings = {name: [] for name in variants}
    server: Timings = {name: [] for name in variants}
    for round_number in range(rounds):
        for name in rotated(list(variants), round_number):
            emulator.fresh()
            if faults:
                emulator.set_faults(**faults)
            with timed(emulator.cpu_seconds) as timing:
                variants[name](emulator, collection)
            stats = emulator.stats()
            if stats["sources_stored"] != count:
                raise RuntimeError(f"{name} stored {stats['sources_stored']} sources")
            wall[name].append(timing.wall)
            cpu[name].append(timing.cpu)
            if timing.server_cpu is not None:
                server[name].append(timing.server_cpu)
    emulator.clear_faults()
    return wall, cpu, server


def run(emulator: EmulatorProcess, sizes: Sizes) -> Section:
    workers = sizes.create_workers
    wall, cpu, server = _measure(emulator, workers, sizes.create_count, sizes.create_rounds)
    latency = {
        "rate": 1.0,
        "kinds": ["latency"],
        "latency": sizes.create_latency_s,
        "methods": ["POST"],
        "paths": ["/sources"],
    }
    slow_wall, slow_cpu, slow_server = _measure(
        emulator, workers, sizes.create_latency_count, sizes.create_rounds, latency
    )
    one_worker = _name(workers[0])
    serial = Spread.of(cpu[one_worker]).median + Spread.of(server[one_worker] or [0.0]).median
    floor = max(Spread.of(cpu[name]).median for name in cpu if name not in (LIMIT, NAIVE))
    notes = [
        f"On loopback, one worker's wall time is about the client's CPU plus the emulator's "
        f"({serial:.2f} s): they take turns. More workers can at best bring it down to the "
        f"client's CPU (~{floor:.2f} s; its threads share one GIL), and only while a second core "
        f"is free (load average as this section ended: {load_average()} on {os.cpu_count()} "
        "CPUs). With a server that takes time to answer, as a real one over a network does, "
        "the second table shows what the workers are for.",
    ]
    return Section(
        key="create",
        title=f"4. Create {sizes.create_count:,} sources",
        method=(
            f"{sizes.create_count:,} non-overlapping squares, one feature per `POST /sources` "
            "(API v1). The limit posts them in one thread on one `requests.Session` with the "
            "environment resolved once and msgspec encoding; the naive loop (stdlib json, the "
            "environment rescanned per request) is shown for reference. The provider runs "
            "`MetiHook(max_workers=w).create_sources(collection)` "
            "in a new connection each time (new client, token and session, like a new task), "
            "so it validates the whole collection before the first POST. The emulator is reset "
            f"before every run; {sizes.create_rounds} rounds, variants interleaved. Ratios are "
            "per round; the emulator column is the server process's CPU for the run. The second "
            f"table repeats it for {sizes.create_latency_count:,} sources with the emulator's "
            f"latency fault holding every POST for {sizes.create_latency_s * 1000:.0f} ms before "
            "it answers (a stand-in for network and server time)."
        ),
        tables=[
            _table(wall, cpu, server, one_worker),
            _table(slow_wall, slow_cpu, slow_server, one_worker),
        ],
        notes=notes,
        data={
            "wall_s": {name: Spread.of(values).as_dict() for name, values in wall.items()},
            "client_cpu_s": {name: Spread.of(values).as_dict() for name, values in cpu.items()},
            "emulator_cpu_s": {
                name: Spread.of(values).as_dict() for name, values in server.items() if values
            },
            "with_latency_wall_s": {
                name: Spread.of(values).as_dict() for name, values in slow_wall.items()
            },
        },
    )


def _table(wall: Timings, cpu: Timings, server: Timings, one_worker: str) -> Table:
    table = Table(
        [
            "variant",
            "wall s",
            "vs limit (wall)",
            f"speed-up vs {one_worker.rsplit(', ', 1)[-1]}",
            "client CPU s",
            "emulator CPU s",
        ]
    )
    for name in wall:
        vs_limit = Spread.of([m / base for m, base in zip(wall[name], wall[LIMIT], strict=True)])
        speedup = Spread.of(
            [base / m for m, base in zip(wall[name], wall[one_worker], strict=True)]
        )
        table.rows.append(
            [
                name,
                Spread.of(wall[name]).text(2),
                ratio_text(vs_limit),
                ratio_text(speedup) if name not in (LIMIT, NAIVE) else "",
                Spread.of(cpu[name]).text(2),
                Spread.of(server[name]).text(2) if server[name] else "n/a",
            ]
        )
    return table
