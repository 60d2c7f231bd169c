"""Section 3: extracting N sources to an NDJSON file, the operator against the naive loop,
a tight loop, a ``msgspec.json.Encoder`` loop and a serve-only ceiling; and the same operator
writing GeoParquet.

Each extract runs in a fresh process (see ``extract_worker``), so that its peak RSS says what
the extract itself needed: the growth is the peak during the extract minus the RSS after the
imports.
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
from benchmarks.limit_client import LimitClient
from benchmarks.measure import TIMES, Spread, ratio_text, rotated, timed
from benchmarks.results import Section, Table, Target
from benchmarks.sizes import Sizes

PAGE_SIZE = 1000  # the operator's default and the emulator's (and METI's) largest page
VARIANTS = (
    "limit",  # the naive loop
    "provider",
    "limit_bare",
    "provider_parquet",
    "tight",
    "msgspec_loop",
    "serve_only",
)
TRACED = ("limit_traced", "provider_traced", "provider_parquet_traced")
THROUGHPUT_TARGET = 0.9  # of the msgspec.json.Encoder loop
CEILING_TARGET = 0.12  # of the serve-only ceiling
RSS_TARGET = 1.2
TARGET_AT = 100_000  # the goals hold at this many sources; smaller runs are reported only
MIB = 1024.0


def _run_worker(emulator: EmulatorProcess, variant: str, workdir: Path) -> dict[str, Any]:
    suffix = ".parquet" if "parquet" in variant else ".ndjson"  # the suffix picks the format
    output, result = workdir / f"{variant}{suffix}", workdir / f"{variant}.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.extract_worker",
        variant,
        emulator.url,
        str(PAGE_SIZE),
        str(output),
        str(result),
    ]
    with timed(emulator.cpu_seconds) as timing:
        subprocess.run(command, check=True, env=child_environment(), stdout=subprocess.DEVNULL)
    measured: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    measured["server_cpu"] = timing.server_cpu
    output.unlink()
    return measured


def _warm_emulator(emulator: EmulatorProcess) -> None:
    """One untimed pass, so every timed run finds the emulator's per-source JSON cached."""
    for _ in LimitClient(emulator.url).pages(PAGE_SIZE):
        pass


def run(emulator: EmulatorProcess, sizes: Sizes) -> Section:
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="meti-bench-") as tmp:
        for count, repeats in sizes.extract_runs:
            emulator.fresh(sources=count)
            _warm_emulator(emulator)
            runs[count] = {variant: [] for variant in VARIANTS}
            for run_number in range(repeats):
                for variant in rotated(VARIANTS, run_number):
                    measured = _run_worker(emulator, variant, Path(tmp))
                    if measured["count"] != count:
                        raise RuntimeError(f"{variant} extracted {measured['count']} of {count}")
                    runs[count][variant].append(measured)
            for variant in TRACED:  # once each: the heap peak barely varies
                runs[count][variant] = [_run_worker(emulator, variant, Path(tmp))]
    return _section(sizes, runs)


def _repeats_text(sizes: Sizes) -> str:
    return ", ".join(f"{repeats} runs for {count:,}" for count, repeats in sizes.extract_runs)


def _server_cpu_text(measured: list[dict[str, Any]]) -> str:
    values = [m["server_cpu"] for m in measured if m["server_cpu"] is not None]
    return Spread.of(values).text(2) if values else "n/a"


def _heap_peak_mib(measured: list[dict[str, Any]]) -> str:
    return f"{measured[0]['python_heap_peak_kib'] / MIB:.1f}"


def _throughputs(measured: list[dict[str, Any]]) -> list[float]:
    return [m["count"] / m["wall"] for m in measured]


def _growth_mib(measured: list[dict[str, Any]]) -> Spread:
    """The paging's peak over the RSS after the imports: the set-up's peak (for the provider
    the host token cache's scrypt, 8 MiB) is the same at every size and would hide it."""
    return Spread.of(
        [(m["rss_paging_peak_kib"] - m["rss_after_imports_kib"]) / MIB for m in measured]
    )


def _section(sizes: Sizes, runs: dict[int, dict[str, list[dict[str, Any]]]]) -> Section:
    table = Table(
        [
            "sources",
            "naive loop sources/s",
            "provider sources/s",
            "provider vs naive loop",
            "client CPU s (naive loop / provider)",
            "peak RSS growth MiB (naive loop / provider)",
            "Python heap peak MiB (naive loop / provider)",
            "loops write the same file",
            "naive loop without Airflow loaded, sources/s",
            "emulator CPU s (provider run)",
        ]
    )
    targets: list[Target] = []
    growth: dict[int, Spread] = {}
    for count, by_variant in runs.items():
        limit, provider = by_variant["limit"], by_variant["provider"]
        ratio = Spread.of([lim["wall"] / p["wall"] for p, lim in zip(provider, limit, strict=True)])
        growth[count] = _growth_mib(provider)
        same = len({by_variant[v][0]["sha256"] for v in ("limit", "limit_bare", *LOOPS)}) == 1
        table.rows.append(
            [
                f"{count:,}",
                Spread.of(_throughputs(limit)).text(),
                Spread.of(_throughputs(provider)).text(),
                ratio_text(ratio),
                f"{Spread.of([m['cpu'] for m in limit]).text(2)} / "
                f"{Spread.of([m['cpu'] for m in provider]).text(2)}",
                f"{_growth_mib(limit).text(1)} / {growth[count].text(1)}",
                f"{_heap_peak_mib(by_variant['limit_traced'])} / "
                f"{_heap_peak_mib(by_variant['provider_traced'])}",
                "yes" if same else "NO",
                Spread.of(_throughputs(by_variant["limit_bare"])).text(),
                _server_cpu_text(provider),
            ]
        )
    limits_table, limit_targets = _limits(runs)
    targets.extend(limit_targets)
    targets.append(_memory_target("provider", growth, runs, "provider_traced"))
    parquet_table, parquet_target = _parquet(runs)
    targets.append(parquet_target)
    return Section(
        key="extract",
        title="3. Extract to NDJSON and GeoParquet",
        method=(
            "`MetiListSourcesOperator(output_path=...ndjson, page_size=1000).execute(context)` "
            "against the naive loop, which pages `GET /sources` the same way (limit/offset, "
            f"{PAGE_SIZE} per page) and writes GeoJSON Features, one per line, with "
            "`json.dumps` over a `requests.Session` that keeps `trust_env=True`. The second "
            "table adds a tight loop (environment resolved once, `trust_env=False`, msgspec "
            "decoding, one reused stdlib encoder, one write a page), the same loop encoding "
            "with one `msgspec.json.Encoder` (the loops' files are compared by SHA-256), and "
            "a serve-only ceiling that only fetches and splits the pages; collector time is "
            "summed from `gc.callbacks`. The provider copies the server's bytes of each value "
            "(msgspec.Raw), so its file differs in bytes, not in values. Each extract runs "
            f"in a fresh process; {_repeats_text(sizes)} per "
            "variant, interleaved; the emulator is reset and seeded before each size and "
            "warmed by one untimed pass. Both run where a task runs: in a process that has "
            "imported Airflow's task runner and connection cache and the provider with its "
            "client (section 5 shows what the client's import costs), as a `@task` holding the "
            "hand-written loop would; the last column runs the loop in a bare process for "
            "reference. Throughput is sources / wall seconds of the extract alone (after the "
            "imports); the ratio is per run. Peak RSS growth is the kernel's high-water mark "
            "(`VmHWM`) of the paging (reset once more as the first page is requested, so "
            "that the set-up's peak, for the provider the host token cache's 8 MiB scrypt, "
            "is not taken for the extract's) minus the RSS after the imports; "
            "`ru_maxrss` cannot be reset and in a child starts at the parent's size. RSS also "
            "moves with the C allocator's state (a few tenths of a MiB from run to run), so "
            "one more run of each loop under `tracemalloc` (untimed) gives the peak of "
            "Python's own heap during the extract. 'same file' compares the SHA-256 of the "
            "outputs. The second table is the provider writing GeoParquet "
            "(`output_path=...parquet`: one row group per page, zstd) in the same rotation; "
            "pyarrow and shapely are imported before the measurement like everything else "
            "(and pandas, which pyarrow imports on first use where it is installed)."
        ),
        tables=[table, limits_table, parquet_table],
        targets=targets,
        data={
            str(count): {
                variant: [
                    {
                        k: m[k]
                        for k in (
                            "wall",
                            "paging_wall",
                            "cpu",
                            "rss_after_imports_kib",
                            "rss_peak_kib",
                            "rss_setup_peak_kib",
                            "rss_paging_peak_kib",
                        )
                    }
                    for m in measured
                ]
                for variant, measured in by_variant.items()
            }
            for count, by_variant in runs.items()
        },
    )


LOOPS = ("tight", "msgspec_loop")


def _speed_ratio(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> Spread:
    """Per run: ``mine``'s throughput over ``theirs``."""
    return Spread.of([t["wall"] / m["wall"] for m, t in zip(mine, theirs, strict=True)])


def _limits(runs: dict[int, dict[str, list[dict[str, Any]]]]) -> tuple[Table, list[Target]]:
    """The provider against the msgspec loop and the serve-only ceiling, with the collector."""
    table = Table(
        [
            "sources",
            "serve-only sources/s",
            "tight loop sources/s",
            "msgspec loop sources/s",
            "provider vs msgspec loop",
            "provider vs serve-only",
            "collector s, collections (msgspec loop / provider)",
        ]
    )
    targets: list[Target] = []
    for count, by_variant in runs.items():
        provider, encoder = by_variant["provider"], by_variant["msgspec_loop"]
        ceiling = by_variant["serve_only"]
        vs_encoder = Spread.of(
            [e["wall"] / p["wall"] for p, e in zip(provider, encoder, strict=True)]
        )
        vs_ceiling = Spread.of(
            [c["wall"] / p["wall"] for p, c in zip(provider, ceiling, strict=True)]
        )
        collector = [
            f"{Spread.of([m['gc_seconds'] for m in ms]).median:.3f}, "
            f"{Spread.of([float(m['gc_collections']) for m in ms]).median:.0f}"
            for ms in (encoder, provider)
        ]
        table.rows.append(
            [
                f"{count:,}",
                Spread.of(_throughputs(ceiling)).text(),
                Spread.of(_throughputs(by_variant["tight"])).text(),
                Spread.of(_throughputs(encoder)).text(),
                ratio_text(vs_encoder),
                ratio_text(vs_ceiling),
                " / ".join(collector),
            ]
        )
        if count < TARGET_AT:
            continue
        targets.append(
            Target(
                f"3. extract throughput vs msgspec.json.Encoder loop, {count:,} sources",
                f"≥ {THROUGHPUT_TARGET:.1f}{TIMES}",
                ratio_text(vs_encoder),
                vs_encoder.median >= THROUGHPUT_TARGET,
            )
        )
        targets.append(
            Target(
                f"3. extract throughput vs serve-only ceiling, {count:,} sources",
                f"≥ {CEILING_TARGET:.2f}{TIMES}",
                ratio_text(vs_ceiling),
                vs_ceiling.median >= CEILING_TARGET,
            )
        )
    return table, targets


def _parquet(runs: dict[int, dict[str, list[dict[str, Any]]]]) -> tuple[Table, Target]:
    """The GeoParquet table and its memory target: flat in the number of sources too."""
    table = Table(
        [
            "sources",
            "GeoParquet sources/s",
            "vs NDJSON (provider)",
            "client CPU s",
            "peak RSS growth MiB",
            "Python heap peak MiB",
            "file size vs NDJSON",
        ]
    )
    growth: dict[int, Spread] = {}
    for count, by_variant in runs.items():
        parquet, ndjson = by_variant["provider_parquet"], by_variant["provider"]
        ratio = Spread.of([n["wall"] / p["wall"] for p, n in zip(parquet, ndjson, strict=True)])
        growth[count] = _growth_mib(parquet)
        table.rows.append(
            [
                f"{count:,}",
                Spread.of(_throughputs(parquet)).text(),
                ratio_text(ratio),
                Spread.of([m["cpu"] for m in parquet]).text(2),
                growth[count].text(1),
                _heap_peak_mib(by_variant["provider_parquet_traced"]),
                f"{parquet[0]['bytes'] / ndjson[0]['bytes']:.3f}{TIMES}",
            ]
        )
    return table, _memory_target("GeoParquet", growth, runs, "provider_parquet_traced")


def _memory_target(
    what: str,
    growth: dict[int, Spread],
    runs: dict[int, dict[str, list[dict[str, Any]]]],
    traced_variant: str,
) -> Target:
    """Peak RSS growth at the largest size against the smallest, with Python's heap beside it.

    :param what: names the extract in the target
    :param growth: peak RSS growth per number of sources
    :param runs: every run's measurements, per number of sources and variant
    :param traced_variant: the variant run under ``tracemalloc``
    """
    smallest, largest = min(growth), max(growth)
    heap_peak = {count: runs[count][traced_variant][0]["python_heap_peak_kib"] for count in runs}
    heap_ratio = heap_peak[largest] / heap_peak[smallest]
    if growth[smallest].median > 0:
        rss_ratio = growth[largest].median / growth[smallest].median
        rss_text = f"{rss_ratio:.2f}{TIMES}"
    else:  # only in smoke runs, where nothing grows measurably
        rss_ratio = 0.0 if growth[largest].median == 0 else float("inf")
        rss_text = "n/a"
    return Target(
        f"3. {what} peak RSS growth, {largest:,} vs {smallest:,} sources",
        f"≤ {RSS_TARGET:.1f}{TIMES}",
        f"{rss_text} ({growth[largest].text(1)} vs {growth[smallest].text(1)} MiB); "
        f"Python heap peak {heap_ratio:.2f}{TIMES}",
        rss_ratio <= RSS_TARGET,
    )
