"""How much work each section does: the full run, and a smoke run for tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """Call counts, source counts and repetitions of every section."""

    per_call_calls: int = 5_000
    per_call_rounds: int = 5
    token_calls: int = 10_000
    token_threads: int = 8
    token_snippet_calls: int = 800
    extract_runs: tuple[tuple[int, int], ...] = ((1_000, 7), (10_000, 5), (100_000, 5))
    """(sources, fresh-process runs per variant): small extracts are short, hence noisier."""
    create_count: int = 2_000
    create_workers: tuple[int, ...] = (1, 2, 4, 8)
    create_rounds: int = 3
    create_latency_count: int = 200
    create_latency_s: float = 0.02
    import_runs: int = 10
    dag_parse_runs: int = 5
    retry_sources: int = 10_000
    retry_page_size: int = 100
    retry_fault_rate: float = 0.1
    retry_rounds: int = 9
    triggers: int = 1_000
    triggers_large: int = 5_000
    trigger_poll_interval_s: float = 5.0
    trigger_seconds: float = 60.0
    trigger_latency_s: float = 0.3
    trigger_repeats: int = 3
    """Fresh-process runs of each section-7 variant at ``triggers``, interleaved."""


FULL = Sizes()
QUICK = Sizes(
    per_call_calls=50,
    per_call_rounds=2,
    token_calls=400,
    token_snippet_calls=80,
    extract_runs=((100, 1), (500, 1)),
    create_count=40,
    create_workers=(1, 4),
    create_rounds=1,
    create_latency_count=16,
    create_latency_s=0.005,
    import_runs=2,
    dag_parse_runs=1,
    retry_sources=500,
    retry_page_size=20,
    retry_rounds=1,
    triggers=20,
    triggers_large=40,
    trigger_poll_interval_s=1.0,
    trigger_seconds=2.0,
    trigger_latency_s=0.05,
    trigger_repeats=1,
)
