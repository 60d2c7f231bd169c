"""Section 7: thousands of deferred sensors on one triggerer (one event loop).

Each variant runs in a fresh process (``benchmarks.trigger_worker``) against the emulator,
which holds every ``GET`` for the same latency: the provider's ``MetiSourceTrigger`` (asyncio
client), the same check in bare aiohttp with one shared session (the limit), the HTTP
provider's ``HttpSensorTrigger`` polling the same endpoint (the peer) and the thread-based
check the provider's replaced (the baseline), in interleaved rounds. Then the provider alone
at a larger N, for memory per trigger and the emulator's headroom.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.airflow_env import child_environment
from benchmarks.emulator_process import EmulatorProcess
from benchmarks.measure import DASH, Spread, ratio_text, rotated
from benchmarks.results import Section, Table, Target
from benchmarks.sizes import Sizes

VARIANTS = {
    "provider": "provider: MetiSourceTrigger (asyncio client)",
    "limit": "limit: bare aiohttp, one shared session, token once",
    "peer": "peer: HttpSensorTrigger (HTTP provider)",
    "baseline": "baseline: the old check, sync client in a thread",
}


def _gets(stats: dict[str, Any]) -> int:
    return sum(n for key, n in stats["requests"].items() if key.startswith("GET "))


def _run_variant(
    emulator: EmulatorProcess, variant: str, triggers: int, sizes: Sizes
) -> dict[str, Any]:
    emulator.fresh()
    emulator.set_faults(
        rate=1.0, kinds=["latency"], latency=sizes.trigger_latency_s, methods=["GET"]
    )
    cpu_before = emulator.cpu_seconds()
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks.trigger_worker",
            variant,
            emulator.url,
            str(triggers),
            str(sizes.trigger_poll_interval_s),
            str(sizes.trigger_seconds),
            str(sizes.trigger_latency_s),
            str(result),
        ]
        subprocess.run(
            command, check=True, env=child_environment(), stdout=subprocess.DEVNULL, timeout=900
        )
        figures: dict[str, Any] = json.loads(result.read_text())
    cpu_after = emulator.cpu_seconds()
    stats = emulator.stats()
    emulator.clear_faults()
    figures["token_requests"] = stats["token_requests"]
    figures["gets"] = _gets(stats)
    figures["emulator_cpu_s"] = (
        None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    )
    figures["ideal_per_s"] = triggers / sizes.trigger_poll_interval_s
    return figures


def _spread(runs: list[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> Spread:
    return Spread.of([value(f) for f in runs])


def _ceiling(sizes: Sizes) -> float:
    """The share of N / poll interval a perfect trigger reaches: it sleeps after each check."""
    interval = sizes.trigger_poll_interval_s
    return interval / (interval + sizes.trigger_latency_s)


def _row(name: str, runs: list[dict[str, Any]], sizes: Sizes) -> list[str]:
    ceiling = _ceiling(sizes)

    def ms(key: str) -> Callable[[dict[str, Any]], float]:
        return lambda f: f[key] * 1000

    return [
        name,
        f"{runs[0]['triggers']:,}",
        str(len(runs)),
        _spread(runs, lambda f: f["checks_per_s"]).text(1),
        _spread(runs, lambda f: f["checks_per_s"] / f["ideal_per_s"] * 100).text(1, "%"),
        _spread(runs, lambda f: f["checks_per_s"] / f["ideal_per_s"] / ceiling * 100).text(1, "%"),
        _spread(runs, ms("lateness_p50_s")).text(),
        _spread(runs, ms("lateness_p99_s")).text(),
        _spread(runs, ms("stall_max_s")).text(1),
        _spread(runs, ms("stall_outside_gc_max_s")).text(1),
        _spread(runs, ms("gc_full_pause_max_s")).text(),
        _spread(runs, lambda f: f["threads_peak"] - f["threads_before"]).text(),
        _spread(runs, lambda f: f["token_requests"]).text(),
        _spread(runs, lambda f: f["rss_peak_kib"] / 1024).text(),
        _spread(runs, lambda f: (f["rss_peak_kib"] - f["rss_before_kib"]) / 1024).text(1),
        _spread(runs, lambda f: f["cpu_s"] / f["seconds"] * 100).text(0, "%"),
    ]


def _ratio(results: dict[str, list[dict[str, Any]]], key: str, of: str = "limit") -> Spread | None:
    """The provider's ``key`` over ``of``'s, per round (the same round's two runs)."""
    ratios = [
        provider[key] / other[key]
        for provider, other in zip(results["provider"], results[of], strict=True)
        if other[key] > 0
    ]
    return Spread.of(ratios) if ratios else None


def _ratio_text(spread: Spread | None) -> str:
    return "n/a" if spread is None else ratio_text(spread)


def run(emulator: EmulatorProcess, sizes: Sizes) -> Section:
    n = sizes.triggers
    results: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for round_number in range(sizes.trigger_repeats):
        for variant in rotated(list(VARIANTS), round_number):
            results[variant].append(_run_variant(emulator, variant, n, sizes))
    large = _run_variant(emulator, "provider", sizes.triggers_large, sizes)

    table = Table(
        [
            "variant",
            "triggers",
            "runs",
            "checks/s",
            "of N / poll interval",
            "of the ceiling",
            "lateness p50 ms",
            "lateness p99 ms",
            "largest loop stall ms",
            "largest stall outside GC ms",
            "longest full GC ms",
            "threads added",
            "token requests",
            "peak RSS MiB",
            "RSS growth over the idle process MiB",
            "client CPU",
        ]
    )
    for variant, name in VARIANTS.items():
        table.rows.append(_row(name, results[variant], sizes))
    table.rows.append(_row(VARIANTS["provider"], [large], sizes))

    provider = results["provider"]
    ceiling = _ceiling(sizes)
    share = _spread(provider, lambda f: f["checks_per_s"] / f["ideal_per_s"])
    p99 = _spread(provider, lambda f: f["lateness_p99_s"])
    stall = _spread(provider, lambda f: f["stall_max_s"])
    stall_outside = _spread(provider, lambda f: f["stall_outside_gc_max_s"])
    tokens = [f["token_requests"] for f in provider]
    threads = {f["threads_peak"] - f["threads_before"] for f in provider}
    large_threads = large["threads_peak"] - large["threads_before"]
    rate_ratio = _ratio(results, "checks_per_s")
    p99_ratio = _ratio(results, "lateness_p99_s")
    per_trigger_kib = (large["rss_peak_kib"] - large["rss_before_kib"]) / large["triggers"]
    emulator_cpu = large["emulator_cpu_s"]
    emulator_note = (
        f"The emulator served {large['gets']:,} GETs in that run ({large['checks_per_s']:.0f}/s "
        f"measured) using {emulator_cpu / (large['seconds'] + sizes.trigger_poll_interval_s):.0%}"
        " of a core on average (one thread per open connection; the latency holds no CPU)."
        if emulator_cpu is not None
        else ""
    )
    interval = sizes.trigger_poll_interval_s
    provider_heap = provider[0]["heap_objects_before"]
    latency_ms = sizes.trigger_latency_s * 1000
    ideal = n / interval
    return Section(
        key="triggers",
        title=f"7. {n:,} deferred sensors on one triggerer",
        method=(
            f"{n:,} triggers of each variant on one event loop in a fresh process, polling a "
            f"source that does not exist (each check one `GET`, answered 404) every {interval:g} s "
            f"against the emulator (its own process), which holds every `GET` for "
            f"{latency_ms:.0f} ms. Rounds: {sizes.trigger_repeats}; each runs every variant "
            "once, each in a fresh process, a different variant first each round; figures are "
            f"the median (min{DASH}max) over the rounds, ratios are taken within a round. The "
            "triggers start spread over one poll interval, as on a triggerer that has been "
            "running for a while; after one interval to settle, "
            f"{sizes.trigger_seconds:g} s are measured. *Checks/s*: checks that ended in "
            f"that window; N / poll interval is {ideal:,.0f}/s. *The ceiling*: a trigger "
            f"sleeps the poll interval after each check, so even a perfect one checks once "
            f"every {interval:g} s + {latency_ms:.0f} ms, {interval:g} / "
            f"({interval:g} + {sizes.trigger_latency_s:g}) = {ceiling:.1%} of N / poll interval "
            f"({n / (interval + sizes.trigger_latency_s):,.1f}/s); *of the ceiling* is checks/s "
            "over that. *Lateness*: when a check ended, minus when it would have ended had it "
            "started on schedule (the previous check's end plus the poll interval) and taken "
            f"only the {latency_ms:.0f} ms latency. *Loop stall*: how late a 10 ms ticker on the "
            "same loop woke up; beside it, the same less the time the garbage collector ran "
            "meanwhile. *Longest full GC*: the longest generation-2 collection, which scans "
            f"every object of the process ({provider_heap:,} before the triggers, most of them "
            "Airflow's) and stops the loop while it runs. *Threads*: live threads at peak, "
            "over those before the triggers started. *Token requests*: counted by the "
            "emulator. *Peak RSS*: the worker's high-water mark, and its growth over the "
            "process before the triggers (Airflow imported). The limit is the fastest honest "
            "way to run the same check on the same loop, kept in "
            "`benchmarks/trigger_worker.py`: bare aiohttp, one `aiohttp.ClientSession` (one "
            "connector, as large as the provider's pool) shared by every trigger, the token "
            "fetched once, then per trigger `GET`, read the reply, 404 means not yet, sleep "
            "the poll interval; no retries, no token renewal, no connection lookup. The peer "
            "opens a new `aiohttp.ClientSession` (and connection) for every check, as it is "
            "written. The baseline is the trigger's former check, kept in the same file: "
            "`check_source(client.get_source, ...)` in `asyncio.to_thread` with the shared "
            "sync client."
        ),
        tables=[table],
        notes=[
            f"Provider over limit, per round: checks/s {_ratio_text(rate_ratio)}, p99 "
            f"lateness {_ratio_text(p99_ratio)}.",
            f"Memory per trigger at {large['triggers']:,} triggers: {per_trigger_kib:,.0f} KiB "
            f"(peak RSS growth over the process before the triggers, divided by N; one run).",
            f"At {large['triggers']:,} triggers (one run) the provider reached "
            f"{large['checks_per_s'] / large['ideal_per_s']:.1%} of N / poll interval "
            f"({large['checks_per_s']:.0f} of {large['ideal_per_s']:.0f}/s; "
            f"{large['checks_per_s'] / large['ideal_per_s'] / ceiling:.1%} of the ceiling), "
            f"p99 lateness {large['lateness_p99_s'] * 1000:,.0f} ms, largest stall "
            f"{large['stall_max_s'] * 1000:,.1f} ms, {large_threads:+d} threads, "
            f"{large['token_requests']} token request(s).",
            emulator_note,
        ],
        targets=[
            Target(
                f"7. check rate, {n:,} triggers",
                f"≥ 90 % of N / poll interval (ceiling {ceiling:.1%})",
                f"{share.scaled(100).text(1, '%')}; of the ceiling "
                f"{share.scaled(100 / ceiling).text(1, '%')}",
                share.median >= 0.9,
            ),
            Target(
                f"7. check rate, provider vs limit (bare aiohttp), {n:,} triggers",
                "reported",
                _ratio_text(rate_ratio),
                True,
            ),
            Target(
                f"7. p99 lateness of a check, {n:,} triggers",
                "< 1 s",
                p99.scaled(1000).text(0, " ms"),
                p99.median < 1.0,
            ),
            Target(
                f"7. p99 lateness, provider vs limit (bare aiohttp), {n:,} triggers",
                "reported",
                _ratio_text(p99_ratio),
                True,
            ),
            Target(
                f"7. largest event-loop stall, {n:,} triggers",
                "< 50 ms",
                f"{stall.scaled(1000).text(1, ' ms')}; outside full collections of the "
                f"heap: {stall_outside.scaled(1000).text(1, ' ms')}",
                stall.median < 0.05,
            ),
            Target(
                f"7. token requests, {n:,} triggers",
                "exactly 1",
                ", ".join(map(str, tokens)),
                all(t == 1 for t in tokens),
            ),
            Target(
                "7. threads independent of N",
                f"same at {n:,} and {large['triggers']:,}",
                f"{'/'.join(f'{t:+d}' for t in sorted(threads))} and {large_threads:+d}",
                threads == {large_threads},
            ),
        ],
        data={
            "variants": {variant: runs[0] for variant, runs in results.items()},
            "runs": results,
            "large": large,
            "memory_per_trigger_kib": per_trigger_kib,
            "ceiling_share": ceiling,
            "provider_vs_limit": {
                "checks_per_s": None if rate_ratio is None else rate_ratio.as_dict(),
                "lateness_p99_s": None if p99_ratio is None else p99_ratio.as_dict(),
            },
        },
    )
