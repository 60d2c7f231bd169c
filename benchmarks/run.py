"""Run the benchmark sections and write the report.

``python -m benchmarks`` runs everything (about 40 minutes on two cores) and writes
``BENCHMARKS.md``; ``--quick`` runs every section on tiny sizes and prints the report instead
(a smoke test).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import (
    create,
    extract,
    host_tokens,
    imports,
    machine,
    per_call,
    report,
    retry_overhead,
    tokens,
    triggers,
    watchers,
)
from benchmarks.airflow_env import ROOT, quiet_task_logs
from benchmarks.emulator_process import EmulatorProcess
from benchmarks.results import Section
from benchmarks.sizes import FULL, QUICK, Sizes

SECTIONS: dict[str, Callable[[Any, Sizes], Section]] = {
    "per_call": per_call.run,
    "tokens": tokens.run,
    "extract": extract.run,
    "create": create.run,
    "imports": imports.run,
    "retries": retry_overhead.run,
    "triggers": triggers.run,
    "watchers": watchers.run,
    "host_tokens": host_tokens.run,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the Markdown report (default: BENCHMARKS.md for a full run, "
        "standard output for --quick)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw numbers as JSON here")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: put the sections run into the existing report (--output, default "
        "BENCHMARKS.md) in place of their earlier figures, labelled as run again",
    )
    return parser


def _command(argv: Sequence[str]) -> str:
    return os.environ.get("METI_BENCH_COMMAND") or shlex.join(["python", "-m", "benchmarks", *argv])


def _failed(key: str, error: BaseException) -> Section:
    return Section(
        key=key,
        title=f"{key}: FAILED",
        method="```\n" + "".join(traceback.format_exception(error)).rstrip() + "\n```",
    )


def _run_sections(names: Sequence[str], sizes: Sizes) -> list[Section]:
    sections = []
    with EmulatorProcess() as emulator:
        for name in names:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            try:
                section = SECTIONS[name](emulator, sizes)
            except Exception as error:  # reported in the output; the run goes on
                section = _failed(name, error)
            section.seconds = time.perf_counter() - started
            print(f"[bench] {name}: {section.seconds:.0f} s", file=sys.stderr, flush=True)
            sections.append(section)
    return sections


def _check_mergeable(args: argparse.Namespace, merge_into: Path) -> None:
    """Before anything runs: ``--merge`` has sections to run and a report that holds them."""
    if not args.only or args.quick:
        _parser().error("--merge needs --only and a full-size run")
    if not merge_into.exists():
        _parser().error(f"--merge: there is no report at {merge_into}")
    text = merge_into.read_text(encoding="utf-8")
    numbers = {key: f"{index}." for index, key in enumerate(SECTIONS, start=1)}
    missing = [key for key in args.only if f"\n## {numbers[key]} " not in text]
    if missing:
        _parser().error(f"--merge: {merge_into} has no section for {', '.join(missing)}")


def _write_json(
    path: Path | None, sizes: Sizes, described: dict[str, str], sections: Sequence[Section]
) -> None:
    if path is None:
        return
    raw = {
        "sizes": dataclasses.asdict(sizes),
        "machine": described,
        "sections": {s.key: {"title": s.title, "data": s.data} for s in sections},
    }
    path.write_text(json.dumps(raw, indent=2, default=str), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    sizes = QUICK if args.quick else FULL
    quiet_task_logs()
    described = machine.describe()
    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    started = time.perf_counter()
    merge_into = args.output or ROOT / "BENCHMARKS.md"
    if args.merge:
        _check_mergeable(args, merge_into)
    sections = _run_sections(args.only or list(SECTIONS), sizes)
    if args.merge:
        _write_json(args.json, sizes, described, sections)
        failed = [s for s in sections if s.title.endswith("FAILED")]
        for section in failed:  # the report keeps its earlier figures of these
            print(f"[bench] {section.title}, not merged:\n{section.method}", file=sys.stderr)
        merged = report.merge(
            merge_into.read_text(encoding="utf-8"),
            [s for s in sections if s not in failed],
            command=_command(argv),
            started=started_at,
            load=machine.load_average(),
        )
        merge_into.write_text(merged, encoding="utf-8")
        print(f"[bench] merged into {merge_into}", file=sys.stderr)
        return 1 if failed else 0
    text = report.render(
        sections,
        machine=described,
        command=_command(argv),
        started=started_at,
        seconds=time.perf_counter() - started,
        load_at_end=machine.load_average(),
        quick=args.quick,
    )
    output = args.output or (None if args.quick else ROOT / "BENCHMARKS.md")
    if output is None:
        print(text)
    else:
        output.write_text(text, encoding="utf-8")
        print(f"[bench] wrote {output}", file=sys.stderr)
    _write_json(args.json, sizes, described, sections)
    failed = [s.key for s in sections if s.title.endswith("FAILED")]
    return 1 if failed else 0
