"""Section 7: thousands of deferred sensors on one triggerer (one event loop).

Each variant runs in a fresh process (``benchmarks.trigger_worker``) against the emulator,
which holds every ``GET`` for the same latency: the provider's ``MetiSourceTrigger`` (asyncio
client), the thread-based check it replaced (the baseline) and the HTTP provider's
``HttpSensorTrigger`` polling the same endpoint (the peer). Then the provider alone at a
larger N, for memory per trigger and the emulator's headroom.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.airflow_env import child_environment
from benchmarks.emulator_process import EmulatorProcess
from benchmarks.results import Section, Table, Target
from benchmarks.sizes import Sizes

VARIANTS = {
    "provider": "provider: MetiSourceTrigger (asyncio client)",
    "baseline": "baseline: the old check, sync client in a thread",
    "peer": "peer: HttpSensorTrigger (HTTP provider)",
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


def _row(name: str, f: dict[str, Any]) -> list[str]:
    threads = f["threads_peak"] - f["threads_before"]
    grown_mib = (f["rss_peak_kib"] - f["rss_before_kib"]) / 1024
    return [
        name,
        f"{f['triggers']:,}",
        f"{f['checks_per_s']:.1f} ({f['checks_per_s'] / f['ideal_per_s']:.0%})",
        f"{f['lateness_p50_s'] * 1000:,.0f}",
        f"{f['lateness_p99_s'] * 1000:,.0f}",
        f"{f['stall_max_s'] * 1000:,.1f} ({f['stall_outside_gc_max_s'] * 1000:,.1f})",
        f"{f['gc_full_pause_max_s'] * 1000:,.0f}",
        f"{threads:+d} ({f['threads_peak']})",
        str(f["token_requests"]),
        f"{f['rss_peak_kib'] / 1024:,.0f} (+{grown_mib:,.1f})",
        f"{f['cpu_s'] / f['seconds']:.0%}",
    ]


def run(emulator: EmulatorProcess, sizes: Sizes) -> Section:
    n = sizes.triggers
    results = {variant: _run_variant(emulator, variant, n, sizes) for variant in VARIANTS}
    large = _run_variant(emulator, "provider", sizes.triggers_large, sizes)

    table = Table(
        [
            "variant",
            "triggers",
            "checks/s (of ideal)",
            "lateness p50 ms",
            "lateness p99 ms",
            "largest loop stall ms (outside GC)",
            "longest full GC ms",
            "threads added (peak)",
            "token requests",
            "peak RSS MiB (+ over the idle process)",
            "client CPU",
        ]
    )
    for variant, name in VARIANTS.items():
        table.rows.append(_row(name, results[variant]))
    table.rows.append(_row(VARIANTS["provider"], large))

    provider = results["provider"]
    per_trigger_kib = (large["rss_peak_kib"] - large["rss_before_kib"]) / large["triggers"]
    share = provider["checks_per_s"] / provider["ideal_per_s"]
    threads = provider["threads_peak"] - provider["threads_before"]
    large_threads = large["threads_peak"] - large["threads_before"]
    emulator_cpu = large["emulator_cpu_s"]
    emulator_note = (
        f"The emulator served {large['gets']:,} GETs in that run ({large['checks_per_s']:.0f}/s "
        f"measured) using {emulator_cpu / (large['seconds'] + sizes.trigger_poll_interval_s):.0%}"
        " of a core on average (one thread per open connection; the latency holds no CPU)."
        if emulator_cpu is not None
        else ""
    )
    interval = sizes.trigger_poll_interval_s
    provider_heap = results["provider"]["heap_objects_before"]
    latency_ms = sizes.trigger_latency_s * 1000
    return Section(
        key="triggers",
        title=f"7. {n:,} deferred sensors on one triggerer",
        method=(
            f"{n:,} triggers of each variant on one event loop in a fresh process, polling a "
            f"source that does not exist (each check one `GET`, answered 404) every {interval:g} s "
            f"against the emulator (its own process), which holds every `GET` for "
            f"{latency_ms:.0f} ms. The triggers start spread over one poll interval, as on a "
            "triggerer that has been running for a while; after one interval to settle, "
            f"{sizes.trigger_seconds:g} s are measured. *Checks/s*: checks that ended in "
            f"that window; the ideal is N / poll interval. A trigger sleeps the poll interval "
            f"after each check, so even a perfect one checks every {interval:g} s + "
            f"{latency_ms:.0f} ms ({interval / (interval + sizes.trigger_latency_s):.0%} of the "
            "ideal). *Lateness*: when a check ended, minus when it would have ended had it "
            "started on schedule (the previous check's end plus the poll interval) and taken "
            f"only the {latency_ms:.0f} ms latency. *Loop stall*: how late a 10 ms ticker on the "
            "same loop woke up; in brackets, the same less the time the garbage collector ran "
            "meanwhile. *Longest full GC*: the longest generation-2 collection, which scans "
            f"every object of the process ({provider_heap:,} before the triggers, most of them "
            "Airflow's) and stops the loop while it runs. *Threads*: live threads at peak, "
            "over those before the triggers started. *Token requests*: counted by the "
            "emulator. *Peak RSS*: the worker's high-water mark, and its growth over the "
            "process before the triggers (Airflow imported). The baseline is the trigger's "
            "former check, kept in `benchmarks/trigger_worker.py`: "
            "`check_source(client.get_source, ...)` in `asyncio.to_thread` with the shared "
            "sync client. The peer opens a new "
            "`aiohttp.ClientSession` (and connection) for every check, as it is written."
        ),
        tables=[table],
        notes=[
            f"Memory per trigger at {large['triggers']:,} triggers: {per_trigger_kib:,.0f} KiB "
            f"(peak RSS growth over the process before the triggers, divided by N).",
            f"At {large['triggers']:,} triggers the provider reached "
            f"{large['checks_per_s'] / large['ideal_per_s']:.0%} of the ideal "
            f"({large['checks_per_s']:.0f} of {large['ideal_per_s']:.0f}/s), p99 lateness "
            f"{large['lateness_p99_s'] * 1000:,.0f} ms, largest stall "
            f"{large['stall_max_s'] * 1000:,.1f} ms, {large_threads:+d} threads, "
            f"{large['token_requests']} token request(s).",
            emulator_note,
        ],
        targets=[
            Target(
                f"7. check rate, {n:,} triggers",
                "≥ 90 % of N / poll interval",
                f"{share:.0%} ({provider['checks_per_s']:.1f}/s)",
                share >= 0.9,
            ),
            Target(
                f"7. p99 lateness of a check, {n:,} triggers",
                "< 1 s",
                f"{provider['lateness_p99_s'] * 1000:,.0f} ms",
                provider["lateness_p99_s"] < 1.0,
            ),
            Target(
                f"7. largest event-loop stall, {n:,} triggers",
                "< 50 ms",
                f"{provider['stall_max_s'] * 1000:,.1f} ms; outside full collections of the "
                f"heap: {provider['stall_outside_gc_max_s'] * 1000:,.1f} ms",
                provider["stall_max_s"] < 0.05,
            ),
            Target(
                f"7. token requests, {n:,} triggers",
                "exactly 1",
                str(provider["token_requests"]),
                provider["token_requests"] == 1,
            ),
            Target(
                "7. threads independent of N",
                f"same at {n:,} and {large['triggers']:,}",
                f"{threads:+d} and {large_threads:+d}",
                threads == large_threads,
            ),
        ],
        data={"variants": results, "large": large, "memory_per_trigger_kib": per_trigger_kib},
    )
