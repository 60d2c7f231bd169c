"""Token requests of many task processes on one host, with and without the host's token cache.

``python -m benchmarks.host_tokens`` (``--quick``: tiny sizes; ``--output``: where the Markdown
goes, default standard output). Also a section ``run(emulator, sizes)`` like the others.

Each task process is a fresh interpreter (``multiprocessing``'s spawn) holding a fresh
``MetiHook`` on a connection of its own ``AIRFLOW_CONN_*`` variable (Airflow's JSON form), as
a task on a worker host would. The processes wait at a barrier until all have imported
Airflow, then call METI together. The token requests are the emulator's ``token_requests``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import machine
from benchmarks.emulator_process import EMAIL, PASSWORD, EmulatorProcess
from benchmarks.measure import TIMES, Spread, ratio_text, rotated
from benchmarks.per_call import emulator_first_source
from benchmarks.results import Section, Table, Target
from benchmarks.sizes import QUICK, Sizes

CLIENT_ID = "demo-client"  # the emulator's default v2 client
CLIENT_SECRET = "demo-client-secret"
API_VERSIONS = (1, 2)
WAIT_S = 600.0  # how long any process waits at a barrier or for a child: a hung run fails
CACHE_GOAL = 1
REVOKED_GOAL = 2


@dataclass(frozen=True)
class HostSizes:
    processes: int = 16
    calls: int = 50
    revoke_after: int = 25
    cost_calls: int = 2_000
    cost_rounds: int = 5


FULL_HOST = HostSizes()
QUICK_HOST = HostSizes(processes=2, calls=4, revoke_after=2, cost_calls=20, cost_rounds=1)


def host_sizes(sizes: Sizes) -> HostSizes:
    return QUICK_HOST if sizes == QUICK else FULL_HOST


# --- the task processes (run in spawned interpreters) ----------------------------------------


@dataclass(frozen=True)
class Task:
    """What one task process needs: plain data, as it crosses into a spawned interpreter."""

    base_url: str
    api_version: int
    cache_dir: str | None
    """The shared cache folder, or None for ``token_cache: false``."""
    private_dir: str
    """This process's own ``XDG_CACHE_HOME``: nothing ever reaches the user's ~/.cache."""
    source_id: str
    calls: int


def _define_connection(task: Task) -> str:
    """``AIRFLOW_CONN_METI_HOST_BENCH`` in this (child) process's environment."""
    if task.api_version == 1:
        spec: dict[str, Any] = {"login": EMAIL, "password": PASSWORD, "extra": {}}
    else:
        extra = {"api_version": 2, "token_url": f"{task.base_url}/oauth/token"}
        spec = {"login": CLIENT_ID, "password": CLIENT_SECRET, "extra": extra}
    if task.cache_dir is None:
        spec["extra"]["token_cache"] = False
    else:
        spec["extra"]["token_cache_dir"] = task.cache_dir
    spec.update(conn_type="meti", host=task.base_url)
    os.environ["XDG_CACHE_HOME"] = task.private_dir
    os.environ["AIRFLOW_CONN_METI_HOST_BENCH"] = json.dumps(spec)
    return "meti_host_bench"


def _new_hook(task: Task) -> Any:
    from benchmarks.airflow_env import quiet_task_logs

    conn_id = _define_connection(task)
    from airflow_provider_meti.hooks.meti import MetiHook

    quiet_task_logs()
    import airflow_provider_meti.client  # noqa: F401  (the client's import is not a call)

    return MetiHook(conn_id)


def _calling_process(
    task: Task,
    revoke_after: int | None,
    start: Any,
    reached: Any,
    revoked: Any,
    results: Any,
) -> None:
    """Wait for the others, make ``task.calls`` calls; pause at ``revoke_after`` calls while
    the parent revokes every token."""
    try:
        hook = _new_hook(task)
        start.wait(WAIT_S)
        for call in range(task.calls):
            if call == revoke_after:
                reached.wait(WAIT_S)
                revoked.wait(WAIT_S)
            hook.get_source(task.source_id)
        results.put(None)
    except BaseException as error:  # reported by the parent
        results.put(f"{type(error).__name__}: {error}")
        for barrier in (start, reached, revoked):
            barrier.abort()


def _cost_process(task: Task, results: Any) -> None:
    """One call (the token), then ``task.calls`` timed calls: CPU and wall µs per call."""
    try:
        hook = _new_hook(task)
        started = time.perf_counter()
        hook.get_source(task.source_id)
        first_s = time.perf_counter() - started
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(task.calls):
            hook.get_source(task.source_id)
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        results.put(
            {
                "cpu_us": cpu / task.calls * 1e6,
                "wall_us": wall / task.calls * 1e6,
                "first_ms": first_s * 1e3,
            }
        )
    except BaseException as error:  # reported by the parent
        results.put(f"{type(error).__name__}: {error}")


# --- the parent --------------------------------------------------------------------------------


def _context() -> Any:
    return multiprocessing.get_context("spawn")


@contextmanager
def _folder(prefix: str) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=f"meti-host-tokens-{prefix}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _counts(emulator: EmulatorProcess) -> dict[str, int]:
    stats = emulator.stats()
    return {
        "tokens": stats["token_requests"],
        "gets": sum(n for key, n in stats["requests"].items() if key.startswith("GET ")),
        "401s": int(stats["responses"].get("401", 0)),
    }


def _minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in after}


def _run_processes(
    targets: Sequence[tuple[Callable[..., None], tuple[Any, ...]]], results: Any
) -> list[Any]:
    """Start one process per target, collect one result each, join them all."""
    processes = [_context().Process(target=f, args=(*args, results)) for f, args in targets]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=WAIT_S) for _ in processes]
    finally:
        for process in processes:
            process.join(WAIT_S)
            if process.is_alive():
                process.kill()
                process.join()
    failures = [outcome for outcome in outcomes if isinstance(outcome, str)]
    if failures:
        raise RuntimeError(f"{len(failures)} task processes failed, the first: {failures[0]}")
    return outcomes


def _together(
    emulator: EmulatorProcess, api_version: int, cached: bool, sizes: HostSizes, revoke: bool
) -> dict[str, int]:
    """Token requests (and GETs, 401s) of ``sizes.processes`` processes calling together;
    with ``revoke``, also those after every token was revoked mid-run (keys ``*_after``)."""
    emulator.fresh(sources=10)  # no valid token anywhere
    source_id = emulator_first_source(emulator)
    context = _context()
    parties = sizes.processes + 1  # and this process, which revokes
    start = context.Barrier(sizes.processes)
    reached, revoked = context.Barrier(parties), context.Barrier(parties)
    results = context.Queue()
    with _folder("shared") as shared, _folder("private") as private:
        tasks = [
            Task(
                emulator.url,
                api_version,
                str(shared) if cached else None,
                str(private / str(index)),
                source_id,
                sizes.calls,
            )
            for index in range(sizes.processes)
        ]
        revoke_after = sizes.revoke_after if revoke else None
        targets = [
            (_calling_process, (task, revoke_after, start, reached, revoked)) for task in tasks
        ]
        before = _counts(emulator)
        figures: dict[str, int] = {}
        if revoke:
            parent = _revoking(emulator, reached, revoked, figures)
            with parent:
                _run_processes(targets, results)
        else:
            _run_processes(targets, results)
        after = _counts(emulator)
    if revoke:
        at_revoke = {key: figures[key] for key in after}
        return {
            **_minus(at_revoke, before),
            **{f"{key}_after": n for key, n in _minus(after, at_revoke).items()},
        }
    return _minus(after, before)


@contextmanager
def _revoking(
    emulator: EmulatorProcess, reached: Any, revoked: Any, figures: dict[str, int]
) -> Iterator[None]:
    """A thread of this process that waits until every task process has made its first
    calls, notes the counts, revokes every token and lets the processes go on."""
    import threading

    problems: list[BaseException] = []

    def revoke() -> None:
        try:
            reached.wait(WAIT_S)
            figures.update(_counts(emulator))
            emulator.admin("POST", "expire-tokens")
            revoked.wait(WAIT_S)
        except BaseException as error:  # re-raised below
            problems.append(error)
            reached.abort()
            revoked.abort()

    thread = threading.Thread(target=revoke, name="revoke-tokens")
    thread.start()
    try:
        yield
    finally:
        thread.join(WAIT_S)
    if problems:
        raise problems[0]


def _costs(emulator: EmulatorProcess, api_version: int, sizes: HostSizes) -> dict[str, Any]:
    """Per-call CPU and wall of a fresh process after its first call, cache against none,
    interleaved over ``sizes.cost_rounds`` rounds (a different one first each round)."""
    emulator.fresh(sources=10)
    source_id = emulator_first_source(emulator)
    variants = ("cache", "no cache")
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    results = _context().Queue()
    with _folder("shared") as shared, _folder("private") as private:
        for round_number in range(sizes.cost_rounds):
            for name in rotated(list(variants), round_number):
                task = Task(
                    emulator.url,
                    api_version,
                    str(shared) if name == "cache" else None,
                    str(private / f"{round_number}-{name}"),
                    source_id,
                    sizes.cost_calls,
                )
                (outcome,) = _run_processes([(_cost_process, (task,))], results)
                measured[name].append(outcome)
    ratios = {
        figure: Spread.of(
            [
                mine[figure] / theirs[figure]
                for mine, theirs in zip(measured["cache"], measured["no cache"], strict=True)
            ]
        )
        for figure in ("cpu_us", "wall_us")
    }
    return {"measured": measured, "ratios": ratios}


def run(emulator: EmulatorProcess, sizes: Sizes) -> Section:
    host = host_sizes(sizes)
    tokens: dict[tuple[int, bool], dict[str, int]] = {}
    revoked: dict[tuple[int, bool], dict[str, int]] = {}
    costs: dict[int, dict[str, Any]] = {}
    for api_version in API_VERSIONS:
        for cached in (True, False):
            tokens[api_version, cached] = _together(emulator, api_version, cached, host, False)
            revoked[api_version, cached] = _together(emulator, api_version, cached, host, True)
        costs[api_version] = _costs(emulator, api_version, host)
    return _section(host, tokens, revoked, costs)


def _spread(values: Sequence[dict[str, float]], figure: str, digits: int = 0) -> str:
    return Spread.of([value[figure] for value in values]).text(digits)


def _section(
    host: HostSizes,
    tokens: dict[tuple[int, bool], dict[str, int]],
    revoked: dict[tuple[int, bool], dict[str, int]],
    costs: dict[int, dict[str, Any]],
) -> Section:
    label = {True: "host token cache (default)", False: "`token_cache: false`"}
    counts = Table(
        [
            "API",
            "tokens",
            "token requests",
            "GET requests",
            "token requests after the revocation",
            "401 replies after it",
            "GET requests after it",
        ]
    )
    for (api_version, cached), figures in tokens.items():
        after = revoked[api_version, cached]
        counts.rows.append(
            [
                f"v{api_version}",
                label[cached],
                str(figures["tokens"]),
                f"{figures['gets']:,}",
                str(after["tokens_after"]),
                str(after["401s_after"]),
                f"{after['gets_after']:,}",
            ]
        )
    cost = Table(
        [
            "API",
            "tokens",
            "client CPU µs/call",
            "CPU vs no cache",
            "wall µs/call",
            "wall vs no cache",
            "first call ms",
        ]
    )
    for api_version, result in costs.items():
        for name in ("cache", "no cache"):
            values = result["measured"][name]
            mine = name == "cache"
            cost.rows.append(
                [
                    f"v{api_version}",
                    label[mine],
                    _spread(values, "cpu_us"),
                    ratio_text(result["ratios"]["cpu_us"]) if mine else f"1.00{TIMES}",
                    _spread(values, "wall_us"),
                    ratio_text(result["ratios"]["wall_us"]) if mine else f"1.00{TIMES}",
                    _spread(values, "first_ms", 1),
                ]
            )
    targets: list[Target] = []
    for api_version in API_VERSIONS:
        shared, revocation = tokens[api_version, True], revoked[api_version, True]
        cpu = costs[api_version]["ratios"]["cpu_us"]
        targets += [
            Target(
                f"9. v{api_version} token requests, {host.processes} fresh processes x "
                f"{host.calls} calls, cache",
                f"{CACHE_GOAL} (without the cache: {tokens[api_version, False]['tokens']})",
                str(shared["tokens"]),
                shared["tokens"] == CACHE_GOAL,
            ),
            Target(
                f"9. v{api_version} extra token requests after every token is revoked, cache",
                f"≤ {REVOKED_GOAL} (without: {revoked[api_version, False]['tokens_after']})",
                str(revocation["tokens_after"]),
                revocation["tokens_after"] <= REVOKED_GOAL,
            ),
            Target(
                f"9. v{api_version} per-call client CPU after the first call, cache vs none",
                f"no measurable change (the range spans 1.00{TIMES})",
                ratio_text(cpu),
                cpu.low <= 1.0 <= cpu.high,
            ),
        ]
    return Section(
        key="host_tokens",
        title="9. Token requests of one host's task processes (host token cache)",
        method=_method(host),
        tables=[counts, cost],
        notes=_notes(host, tokens, revoked, costs),
        targets=targets,
        data={
            "tokens": {f"v{v} {label[c]}": n for (v, c), n in tokens.items()},
            "revoked": {f"v{v} {label[c]}": n for (v, c), n in revoked.items()},
            "cost": {
                f"v{v}": {
                    "measured": result["measured"],
                    "ratios": {k: s.as_dict() for k, s in result["ratios"].items()},
                }
                for v, result in costs.items()
            },
        },
    )


def _method(host: HostSizes) -> str:
    return (
        f"{host.processes} task processes start together (spawned interpreters that wait at a "
        "barrier once Airflow is imported), each with a fresh `MetiHook` on a connection from "
        f"its own `AIRFLOW_CONN_*` variable (JSON form), each making {host.calls} `get_source` "
        "calls against the emulator (a separate process on 127.0.0.1; tokens live 3600 s). "
        "With the cache the processes share one new temporary `token_cache_dir`; with "
        "`token_cache: false` each has its own temporary `XDG_CACHE_HOME`. Token requests are "
        "the emulator's `token_requests` (reset before each run, setup requests subtracted). "
        f"The revocation run is a second run of the same kind: once every process has made "
        f"{host.revoke_after} calls (a second barrier), the emulator revokes every token "
        "(`POST /_emulator/expire-tokens`) and the processes go on; the table counts what "
        "came after. Cost per call: one fresh process at a time makes one call (its token: "
        f"from the cache's file, or a token request), then {host.cost_calls:,} timed calls; "
        f"{host.cost_rounds} rounds, the two variants interleaved (a different one first each "
        "round), the cache's folder shared across the rounds. Ratios are the median (and "
        "range) of the per-round ratios."
    )


def _notes(
    host: HostSizes,
    tokens: dict[tuple[int, bool], dict[str, int]],
    revoked: dict[tuple[int, bool], dict[str, int]],
    costs: dict[int, dict[str, Any]],
) -> list[str]:
    notes = []
    for api_version in API_VERSIONS:
        cpu, wall = (costs[api_version]["ratios"][k] for k in ("cpu_us", "wall_us"))
        first = {
            name: statistics.median(v["first_ms"] for v in costs[api_version]["measured"][name])
            for name in ("cache", "no cache")
        }
        notes.append(
            f"v{api_version}: token requests of {host.processes} processes: "
            f"{tokens[api_version, True]['tokens']} with the cache, "
            f"{tokens[api_version, False]['tokens']} without; after the revocation "
            f"{revoked[api_version, True]['tokens_after']} more with the cache, "
            f"{revoked[api_version, False]['tokens_after']} without. After the first call the "
            f"cache's processes spend {ratio_text(cpu)} the CPU and {ratio_text(wall)} the wall "
            f"time per call of those without; their first call takes {first['cache']:.1f} ms "
            f"(median) against {first['no cache']:.1f} ms."
        )
    return notes


# --- standalone ----------------------------------------------------------------------------


def _table_lines(table: Table) -> list[str]:
    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    return lines + ["| " + " | ".join(row) + " |" for row in table.rows]


def render(section: Section, *, command: str, described: dict[str, str], load: str) -> str:
    """The section as ``BENCHMARKS.md`` shows one, with its command and machine."""
    machine_line = (
        f"{described['CPUs (nproc)']} CPUs ({described['CPU model']}), {described['OS']}, "
        f"Python {described['Python']}, Airflow {described['Airflow']}; load average "
        f"{described['load average at start']} at start, {load} at end"
    )
    targets = Table(["target", "goal", "measured", "met"])
    for target in section.targets:
        mark = "yes" if target.met else "**NO**"
        targets.rows.append([target.what, target.goal, target.measured, mark])
    lines = [
        f"## {section.title}",
        "",
        f"- command: `{command}`",
        f"- machine: {machine_line}",
        "",
        section.method,
        "",
    ]
    for table in (targets, *section.tables):
        lines += [*_table_lines(table), ""]
    lines += [f"- {note}" for note in section.notes]
    lines += ["", f"_Section time: {section.seconds:.0f} s._", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.airflow_env import quiet_task_logs
    from benchmarks.sizes import FULL

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.host_tokens", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--output", type=Path, help="write the Markdown here (default: stdout)")
    args = parser.parse_args(argv)
    quiet_task_logs()
    described = machine.describe()
    started = time.perf_counter()
    with EmulatorProcess() as emulator:
        section = run(emulator, QUICK if args.quick else FULL)
    section.seconds = time.perf_counter() - started
    command = shlex.join(["python", "-m", "benchmarks.host_tokens", *argv])
    text = render(section, command=command, described=described, load=machine.load_average())
    if args.output is None:
        print(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"[bench] wrote {args.output}", file=sys.stderr)
    # A smoke run's sizes are too small for its targets to mean anything.
    return 0 if args.quick or all(target.met for target in section.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
