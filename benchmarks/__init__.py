"""Side-by-side benchmarks of the METI provider against what a user would otherwise write.

Run ``scripts/bench.sh`` (or ``python -m benchmarks``); ``--quick`` is a smoke run. Every
comparison talks to the same emulator, started as a separate process so that its CPU time
never counts as the client's. Results go to ``BENCHMARKS.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports Airflow: a private home, so ~/airflow is never read or written, and
# operators' progress lines (a handful per run) kept off the benchmark's output.
os.environ.setdefault(
    "AIRFLOW_HOME", str(Path(__file__).resolve().parent.parent / ".airflow" / "bench-home")
)
os.environ.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", "airflow.task=WARNING")
