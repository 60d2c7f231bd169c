"""Section 6: what retrying costs when 10% of the listing requests fail with 503.

The waits between attempts are set to zero (``RetryPolicy(initial_wait=0)`` on the
client), so the difference to a clean run is the retry machinery plus the repeated
requests, not sleeping.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.airflow_env import define_meti_connection, quiet_task_logs, task_context
from benchmarks.emulator_process import EmulatorProcess
from benchmarks.measure import Spread, ratio_text, rotated, timed
from benchmarks.results import Section, Table
from benchmarks.sizes import Sizes

CLEAN, FAULTED = "no faults", "10% of GET /sources answered 503"
FAULT_SEED = 7


def _extract(conn_id: str, page_size: int, output: Path) -> int:
    from airflow_provider_meti.operators.meti import MetiListSourcesOperator

    operator = MetiListSourcesOperator(
        task_id="extract", meti_conn_id=conn_id, page_size=page_size, output_path=str(output)
    )
    return int(operator.execute(task_context())["count"])


def _without_waits(conn_id: str) -> None:
    """Zero backoff on the client the operator will share (same connection, same client)."""
    from airflow_provider_meti.hooks.meti import MetiHook
    from airflow_provider_meti.retries import RetryPolicy

    client = MetiHook(conn_id).get_conn()
    client.settings = replace(client.settings, retry=RetryPolicy(initial_wait=0.0, max_wait=0.0))


def _counted(stats: dict[str, Any]) -> tuple[int, int]:
    requests = sum(v for k, v in stats["requests"].items() if k.startswith("GET /sources"))
    return requests, sum(stats["faults"].values())


def run(emulator: EmulatorProcess, sizes: Sizes) -> Section:
    quiet_task_logs()
    emulator.fresh(sources=sizes.retry_sources)
    conn_id = define_meti_connection(emulator.url)
    _without_waits(conn_id)
    plan = {
        "rate": sizes.retry_fault_rate,
        "kinds": ["503"],
        "methods": ["GET"],
        "paths": ["/sources"],
        "seed": FAULT_SEED,
    }
    wall: dict[str, list[float]] = {CLEAN: [], FAULTED: []}
    cpu: dict[str, list[float]] = {CLEAN: [], FAULTED: []}
    counts: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="meti-bench-") as tmp:
        output = Path(tmp) / "extract.ndjson"
        _extract(conn_id, sizes.retry_page_size, output)  # warm: token, connection, cache
        for round_number in range(sizes.retry_rounds):
            for name in rotated([CLEAN, FAULTED], round_number):
                if name == FAULTED:
                    emulator.set_faults(**plan)  # same seed: the same requests fail each run
                else:
                    emulator.clear_faults()
                before = _counted(emulator.stats())
                with timed() as timing:
                    count = _extract(conn_id, sizes.retry_page_size, output)
                after = _counted(emulator.stats())
                if count != sizes.retry_sources:
                    raise RuntimeError(f"extracted {count} of {sizes.retry_sources} sources")
                wall[name].append(timing.wall)
                cpu[name].append(timing.cpu)
                counts[name] = (after[0] - before[0], after[1] - before[1])
    emulator.clear_faults()
    return _section(sizes, wall, cpu, counts)


def _per_round(values: dict[str, list[float]], name: str) -> Spread:
    return Spread.of([m / base for m, base in zip(values[name], values[CLEAN], strict=True)])


def _section(
    sizes: Sizes,
    wall: dict[str, list[float]],
    cpu: dict[str, list[float]],
    counts: dict[str, tuple[int, int]],
) -> Section:
    table = Table(
        [
            "run",
            "GET requests",
            "503s",
            "wall s",
            "vs no faults (wall)",
            "client CPU s",
            "vs no faults (CPU)",
        ]
    )
    for name in (CLEAN, FAULTED):
        table.rows.append(
            [
                name,
                str(counts[name][0]),
                str(counts[name][1]),
                Spread.of(wall[name]).text(3),
                ratio_text(_per_round(wall, name)),
                Spread.of(cpu[name]).text(3),
                ratio_text(_per_round(cpu, name)),
            ]
        )
    faults, requests = counts[FAULTED][1], max(counts[CLEAN][0], 1)
    notes = []
    if faults:
        extra = {
            kind: Spread.of(
                [(f - c) / faults for f, c in zip(values[FAULTED], values[CLEAN], strict=True)]
            )
            for kind, values in (("wall", wall), ("CPU", cpu))
        }
        per_request = {
            kind: Spread.of([c / requests for c in values[CLEAN]])
            for kind, values in (("wall", wall), ("CPU", cpu))
        }
        notes.append(
            f"Each 503 and its retry added {extra['CPU'].median * 1000:.2f} ms of client CPU "
            f"and {extra['wall'].median * 1000:.2f} ms of wall time (per-round difference / "
            f"{faults} faults, median); an average page request without faults took "
            f"{per_request['CPU'].median * 1000:.2f} ms of CPU and "
            f"{per_request['wall'].median * 1000:.2f} ms of wall time."
        )
    return Section(
        key="retries",
        title="6. Retry overhead",
        method=(
            f"`MetiListSourcesOperator` extracts {sizes.retry_sources:,} sources to NDJSON "
            f"with `page_size={sizes.retry_page_size}` (so that there are enough requests to "
            f"fault), once with no faults and once with {sizes.retry_fault_rate:.0%} of "
            "`GET /sources` answered 503 by the emulator's seeded fault plan (the same requests "
            "fail every run). Backoff: the client's `RetryPolicy(initial_wait=0, max_wait=0)`, "
            "set on the shared client of the connection (the connection extras expose "
            "`max_retries` and `max_retry_time`, not the wait), so no time is spent sleeping. "
            f"{sizes.retry_rounds} rounds, interleaved; one connection and token throughout."
        ),
        tables=[table],
        notes=notes,
        data={
            "wall_s": {name: Spread.of(values).as_dict() for name, values in wall.items()},
            "cpu_s": {name: Spread.of(values).as_dict() for name, values in cpu.items()},
            "requests_and_faults": counts,
        },
    )
