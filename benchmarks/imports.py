"""Section 5: what importing the provider costs a DAG file, each time in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.airflow_env import ROOT, child_environment
from benchmarks.measure import Spread
from benchmarks.results import Section, Table, Target
from benchmarks.sizes import Sizes

IMPORT_TARGET_MS = 50.0
EXAMPLE_DAGS = ROOT / "example_dags"

# Times the provider's modules on top of an already imported ``airflow.sdk``.
PROVIDER_IMPORT = """
import json, time
import airflow.sdk
started = time.perf_counter()
import airflow_provider_meti.operators.meti
operators = time.perf_counter()
import airflow_provider_meti.sensors.meti
sensors = time.perf_counter()
import airflow_provider_meti.client
client = time.perf_counter()
print(json.dumps({"operators": operators - started, "sensors": sensors - operators,
                  "both": sensors - started, "client": client - sensors}))
"""

# Times one DAG file's module import on top of an already imported ``airflow.sdk``.
DAG_IMPORT = """
import importlib.util, json, sys, time
import airflow.sdk
path = sys.argv[1]
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("example_dag_under_test", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def _fresh_process(code: str, *args: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        check=True,
        capture_output=True,
        text=True,
        env=child_environment(),
        cwd=ROOT,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def run(emulator: object, sizes: Sizes) -> Section:
    provider = [_fresh_process(PROVIDER_IMPORT) for _ in range(sizes.import_runs)]
    table = Table(["import (after `import airflow.sdk`)", "ms"])
    spreads = {key: Spread.of([r[key] * 1000 for r in provider]) for key in provider[0]}
    table.rows.append(["airflow_provider_meti.operators.meti", spreads["operators"].text(1)])
    table.rows.append(["+ airflow_provider_meti.sensors.meti", spreads["sensors"].text(1)])
    table.rows.append(["both", spreads["both"].text(1)])
    table.rows.append(
        [
            "later, on first use in a task: `airflow_provider_meti.client` (with `requests`)",
            spreads["client"].text(1),
        ]
    )

    dag_table = Table(["example DAG file (module import after `import airflow.sdk`)", "ms"])
    dag_ms: dict[str, float] = {}
    for path in sorted(Path(EXAMPLE_DAGS).glob("*.py")):
        runs = [_fresh_process(DAG_IMPORT, str(path)) for _ in range(sizes.dag_parse_runs)]
        spread = Spread.of([r["seconds"] * 1000 for r in runs])
        dag_ms[path.name] = spread.median
        dag_table.rows.append([f"`example_dags/{path.name}`", spread.text(1)])
    both = spreads["both"]
    return Section(
        key="imports",
        title="5. Import cost",
        method=(
            "Each measurement is a fresh interpreter that first runs `import airflow.sdk`, then "
            "times the import of the provider's operators and then its sensors with "
            f"`time.perf_counter()`; median and range of {sizes.import_runs} processes. The "
            "client (and `requests`) is not imported at DAG parse time; the last row is what "
            "the first task that talks to METI pays for it instead. Each "
            "example DAG file is imported as a module the same way (what the DAG processor "
            f"does for the file), {sizes.dag_parse_runs} processes each."
        ),
        tables=[table, dag_table],
        targets=[
            Target(
                "5. import operators + sensors after airflow.sdk",
                f"≤ {IMPORT_TARGET_MS:.0f} ms",
                both.text(1, " ms"),
                both.median <= IMPORT_TARGET_MS,
            )
        ],
        data={
            "provider_ms": {key: spread.as_dict() for key, spread in spreads.items()},
            "example_dags_ms": dag_ms,
        },
    )
