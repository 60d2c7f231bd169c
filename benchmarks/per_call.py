"""Section 1: the cost of one ``get_source`` call, the provider against two limits (requests
with the environment resolved once, and urllib3), the naive loop and two peers."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from benchmarks import seed_snippet
from benchmarks.airflow_env import define_http_connection, define_meti_connection
from benchmarks.emulator_process import EmulatorProcess
from benchmarks.limit_client import LimitClient, TightClient, Urllib3Client
from benchmarks.measure import TIMES, Spread, Timing, ratio_text, rotated
from benchmarks.peer_http import PeerHttpHook
from benchmarks.results import Section, Table, Target
from benchmarks.sizes import Sizes

PROVIDER = "provider: MetiHook.get_source"
LIMIT = "limit: one Session, trust_env=False, msgspec"
URLLIB3 = "urllib3 limit: one pool, msgspec"
NAIVE = "naive loop: one Session, trust_env=True, json"
SNIPPET = "seed snippet: requests.get, global token"
PEER = "peer: HttpHook.run"
PEER_RETRY = "peer: HttpHook.run_with_advanced_retry"
WARM_UP_CALLS = 20
BLOCK_CALLS = 250
CPU_TARGET = 1.15


def _variants(emulator: EmulatorProcess, source_id: str) -> dict[str, Callable[[], object]]:
    from airflow_provider_meti.hooks.meti import MetiHook

    hook = MetiHook(define_meti_connection(emulator.url))
    limit = TightClient(emulator.url)
    floor = Urllib3Client(emulator.url)
    naive = LimitClient(emulator.url)
    seed_snippet.configure(emulator.url)
    peer = PeerHttpHook(define_http_connection(emulator.url))
    return {
        PROVIDER: lambda: hook.get_source(source_id),
        LIMIT: lambda: limit.get_source(source_id),
        URLLIB3: lambda: floor.get_source(source_id),
        NAIVE: lambda: naive.get_source(source_id),
        SNIPPET: lambda: seed_snippet.get_source(source_id),
        PEER: lambda: peer.get_source(source_id),
        PEER_RETRY: lambda: peer.get_source_with_retry(source_id),
    }


def run(emulator: EmulatorProcess, sizes: Sizes) -> Section:
    emulator.fresh(sources=10)
    source_id = emulator_first_source(emulator)
    variants = _variants(emulator, source_id)
    calls = sizes.per_call_calls
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    wall: dict[str, list[float]] = {name: [] for name in variants}
    server: dict[str, list[float]] = {name: [] for name in variants}
    for call in variants.values():
        for _ in range(WARM_UP_CALLS):  # token, connection, lazy imports
            call()
    blocks = max(1, calls // BLOCK_CALLS)
    per_block = calls // blocks
    for round_number in range(sizes.per_call_rounds):
        spent = {name: Timing() for name in variants}
        server_seen = True
        for block in range(blocks):
            # Short blocks in turn: a slow spell of a shared machine lands on every variant
            # of the round alike, rather than on whichever ran through it whole.
            for name in rotated(list(variants), round_number + block):
                call, timing = variants[name], spent[name]
                gc.collect()  # the block before's garbage is not billed to this one
                server_before = emulator.cpu_seconds()
                cpu_before, wall_before = time.process_time(), time.perf_counter()
                for _ in range(per_block):
                    call()
                timing.wall += time.perf_counter() - wall_before
                timing.cpu += time.process_time() - cpu_before
                server_after = emulator.cpu_seconds()
                if server_before is None or server_after is None:
                    server_seen = False
                else:
                    timing.server_cpu = (timing.server_cpu or 0.0) + server_after - server_before
        done = blocks * per_block
        for name, timing in spent.items():
            cpu[name].append(timing.cpu / done * 1e6)
            wall[name].append(timing.wall / done * 1e6)
            if server_seen and timing.server_cpu is not None:
                server[name].append(timing.server_cpu / done * 1e6)
    return _section(sizes, cpu, wall, server)


def emulator_first_source(emulator: EmulatorProcess) -> str:
    client = LimitClient(emulator.url)
    return str(next(client.pages(1))[0]["id"])


def _per_round_ratios(values: dict[str, list[float]], name: str, base: str) -> Spread:
    return Spread.of(
        [mine / theirs for mine, theirs in zip(values[name], values[base], strict=True)]
    )


def _section(
    sizes: Sizes,
    cpu: dict[str, list[float]],
    wall: dict[str, list[float]],
    server: dict[str, list[float]],
) -> Section:
    table = Table(
        [
            "variant",
            "client CPU µs/call",
            "CPU vs limit",
            "wall µs/call",
            "wall vs limit",
            "CPU vs urllib3 limit",
            "emulator CPU µs/call",
        ]
    )
    for name in cpu:
        table.rows.append(
            [
                name,
                Spread.of(cpu[name]).text(),
                ratio_text(_per_round_ratios(cpu, name, LIMIT)),
                Spread.of(wall[name]).text(),
                ratio_text(_per_round_ratios(wall, name, LIMIT)),
                ratio_text(_per_round_ratios(cpu, name, URLLIB3)),
                Spread.of(server[name]).text() if server[name] else "n/a",
            ]
        )
    cpu_ratio = _per_round_ratios(cpu, PROVIDER, LIMIT)
    urllib3_ratio = _per_round_ratios(cpu, PROVIDER, URLLIB3)
    provider_cpu, provider_wall = Spread.of(cpu[PROVIDER]), Spread.of(wall[PROVIDER])
    slower_rivals = [
        name
        for name in (SNIPPET, PEER, PEER_RETRY)
        if not (
            provider_cpu.median < Spread.of(cpu[name]).median
            and provider_wall.median < Spread.of(wall[name]).median
        )
    ]
    fastest_rival = min((SNIPPET, PEER, PEER_RETRY), key=lambda name: Spread.of(cpu[name]).median)
    targets = [
        Target(
            "1. per-call client CPU, provider vs limit",
            f"≤ {CPU_TARGET:.2f}{TIMES}",
            ratio_text(cpu_ratio),
            cpu_ratio.median <= CPU_TARGET,
        ),
        Target(
            "1. per-call client CPU, provider vs urllib3 limit",
            "reported",
            ratio_text(urllib3_ratio),
            True,
        ),
        Target(
            "1. provider faster than peer and seed snippet (CPU and wall)",
            "faster",
            f"CPU {ratio_text(_per_round_ratios(cpu, PROVIDER, fastest_rival))} of the "
            f"cheapest of them ({fastest_rival.split(':')[0]})",
            not slower_rivals,
        ),
    ]
    return Section(
        key="per_call",
        title="1. Per-call cost of get_source",
        method=(
            f"{sizes.per_call_calls:,} `get_source` calls per variant and round, "
            f"{sizes.per_call_rounds} rounds, after a warm-up of {WARM_UP_CALLS} calls each. "
            f"Within a round the variants take turns in blocks of {BLOCK_CALLS:,} calls (a "
            "different one first each block), so a slow spell of the machine falls on all of "
            "them alike; a round's figure sums its blocks, and garbage is collected before "
            "each block, outside its timing. Client CPU is "
            "`time.process_time()` of the benchmark process; emulator CPU is read from `/proc` "
            "for the emulator process. Ratios are "
            "the median (and range) of the per-round ratios. The limit resolves the "
            "environment's proxies once and then sets `trust_env=False` (the naive loop keeps "
            "`trust_env=True`, so each request rescans the environment and netrc, and decodes "
            "with stdlib `json`). The limits, the naive loop and the provider keep one "
            "connection open; the seed snippet and `HttpHook.run()` open a new TCP "
            "connection per call (HttpHook also builds a new Session and reads the connection "
            "from the environment on every call)."
        ),
        tables=[table],
        targets=targets,
        data={
            "cpu_us": {name: Spread.of(values).as_dict() for name, values in cpu.items()},
            "wall_us": {name: Spread.of(values).as_dict() for name, values in wall.items()},
        },
    )
