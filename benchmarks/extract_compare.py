"""Extracts of this tree's provider against another tree's, in one run:
``python -m benchmarks.extract_compare``.

Each extract is one fresh process of this tree's ``benchmarks.extract_worker``; for the other
tree (``--before``, e.g. a ``git worktree`` of an older commit) the worker imports that
tree's ``airflow_provider_meti`` instead (put first on ``PYTHONPATH`` through a directory
holding only a link to it; the result records which one was imported). The emulator is this
tree's. Trees and variants are interleaved, a different one first each round; the emulator is
reset, seeded and warmed before each size. Without ``--before`` it runs this tree's variants
alone (e.g. the provider and the msgspec loop at 1,000 and 100,000 sources, for the peak RSS).

Prints a Markdown table per size: throughput over the whole extract and over its paging
alone (from the first page's request to the end, so without the set-up), the ratio to the
first tree and variant per round, client CPU seconds (whole and paging; CPU moves far less
than wall time on a loaded machine), and peak RSS growth over the RSS after the imports, for
the whole extract, the set-up and the paging apart (see ``extract_worker``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.airflow_env import child_environment
from benchmarks.emulator_process import EmulatorProcess
from benchmarks.extract import PAGE_SIZE, _warm_emulator
from benchmarks.extract_worker import EXTRACTS
from benchmarks.machine import load_average
from benchmarks.measure import Spread, ratio_text, rotated

MIB = 1024.0


def _environment(tree: Path | None, shims: Path) -> dict[str, str]:
    environment = child_environment()
    if tree is None:
        return environment
    shim = shims / tree.name
    shim.mkdir(exist_ok=True)
    link = shim / "airflow_provider_meti"
    if not link.exists():
        link.symlink_to(tree / "airflow_provider_meti", target_is_directory=True)
    environment["PYTHONPATH"] = os.pathsep.join([str(shim), environment["PYTHONPATH"]])
    return environment


def _run(
    emulator: EmulatorProcess, variant: str, environment: dict[str, str], workdir: Path
) -> dict[str, Any]:
    suffix = ".parquet" if "parquet" in variant else ".ndjson"
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
    # Not from ROOT: "-m" puts the working directory first on sys.path, before PYTHONPATH.
    subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL, cwd=workdir)
    measured: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    output.unlink()
    return measured


def _growth(measured: list[dict[str, Any]], field: str) -> str:
    return Spread.of([(m[field] - m["rss_after_imports_kib"]) / MIB for m in measured]).text(2)


def _table(count: int, runs: dict[str, list[dict[str, Any]]]) -> str:
    names = list(runs)
    first = runs[names[0]]
    lines = [
        f"{count:,} sources",
        "",
        "| tree: variant | sources/s | vs first | paging sources/s | paging vs first "
        "| client CPU s | paging CPU s | paging CPU, first over this "
        "| peak RSS growth MiB | set-up peak | paging peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        measured = runs[name]
        whole = Spread.of([f["wall"] / m["wall"] for m, f in zip(measured, first, strict=True)])
        paging = Spread.of(
            [f["paging_wall"] / m["paging_wall"] for m, f in zip(measured, first, strict=True)]
        )
        paging_cpu = Spread.of(
            [f["paging_cpu"] / m["paging_cpu"] for m, f in zip(measured, first, strict=True)]
        )
        lines.append(
            f"| {name} | {Spread.of([m['count'] / m['wall'] for m in measured]).text()} "
            f"| {ratio_text(whole)} "
            f"| {Spread.of([m['count'] / m['paging_wall'] for m in measured]).text()} "
            f"| {ratio_text(paging)} "
            f"| {Spread.of([m['cpu'] for m in measured]).text(2)} "
            f"| {Spread.of([m['paging_cpu'] for m in measured]).text(2)} "
            f"| {ratio_text(paging_cpu)} "
            f"| {_growth(measured, 'rss_peak_kib')} | {_growth(measured, 'rss_setup_peak_kib')} "
            f"| {_growth(measured, 'rss_paging_peak_kib')} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.extract_compare", description=__doc__
    )
    parser.add_argument("--before", type=Path, help="another checkout of the provider")
    parser.add_argument(
        "--variants", nargs="+", default=["provider_parquet"], choices=sorted(EXTRACTS)
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write every run's measurements here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The other tree first: the ratios are then this tree's against it.
    trees: dict[str, Path | None] = {} if args.before is None else {"before": args.before.resolve()}
    trees["now"] = None
    every: dict[str, dict[str, list[dict[str, Any]]]] = {}
    loads = [load_average()]
    print(f"nproc {os.cpu_count()}; load average at start {loads[0]}", flush=True)
    with EmulatorProcess() as emulator, tempfile.TemporaryDirectory(prefix="meti-cmp-") as tmp:
        environments = {tree: _environment(path, Path(tmp)) for tree, path in trees.items()}
        runs_of = [(tree, variant) for variant in args.variants for tree in trees]
        for count in args.sizes:
            emulator.fresh(sources=count)
            _warm_emulator(emulator)
            runs: dict[str, list[dict[str, Any]]] = {f"{t}: {v}": [] for t, v in runs_of}
            for round_number in range(args.repeats):
                for tree, variant in rotated(runs_of, round_number):
                    measured = _run(emulator, variant, environments[tree], Path(tmp))
                    if measured["count"] != count:
                        raise RuntimeError(f"{tree} {variant}: {measured['count']} of {count}")
                    runs[f"{tree}: {variant}"].append(measured)
                loads.append(load_average())
            every[str(count)] = runs
            print(_table(count, runs), "\n", flush=True)
    modules = {name: sorted({m["provider_module"] for m in ms}) for name, ms in runs.items()}
    print(f"provider imported from: {modules}")
    print(f"load average after each round: {'; '.join(loads[1:])}")
    if args.json:
        args.json.write_text(json.dumps({"loads": loads, "runs": every}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
