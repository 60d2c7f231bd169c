"""The benchmark harness runs end to end (``--quick``, tiny sizes); timings are not checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_meti._compat import AIRFLOW_VERSION, AIRFLOW_VERSION_TUPLE

ROOT = Path(__file__).resolve().parents[1]
SECTION_TITLES = (
    "## Machine",
    "## Summary",
    "## 1. Per-call cost of get_source",
    "## 2. Token requests under threads",
    "## 3. Extract to NDJSON",
    "## 4. Create",
    "## 5. Import cost",
    "## 6. Retry overhead",
    "## 7. 20 deferred sensors on one triggerer",
    "## 8. ",
    "## 9. Token requests of one host's task processes (host token cache)",
)


# Its own timeout: the smoke run spawns some twenty interpreters (the host-token section),
# which on a loaded machine takes longer than the suite's default of 300 s.
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(
    AIRFLOW_VERSION_TUPLE < (3, 3),
    reason=f"the benchmarks measure Airflow 3.3, the newest line (this is {AIRFLOW_VERSION})",
)
def test_quick_run_produces_every_section(tmp_path):
    report, raw = tmp_path / "bench.md", tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", report, "--json", raw],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=840,
    )
    text = report.read_text() if report.exists() else ""
    assert result.returncode == 0, result.stderr[-3000:] + text[-3000:]
    for title in SECTION_TITLES:
        assert title in text, title
    assert "FAILED" not in text
    sections = json.loads(raw.read_text())["sections"]
    assert set(sections) == {
        "per_call",
        "tokens",
        "extract",
        "create",
        "imports",
        "retries",
        "triggers",
        "watchers",
        "host_tokens",
    }
    assert sections["tokens"]["data"]["provider_token_requests"] == 1
    assert sections["triggers"]["data"]["variants"]["provider"]["token_requests"] == 1
    host_tokens = sections["host_tokens"]["data"]["tokens"]
    assert host_tokens["v1 host token cache (default)"]["tokens"] == 1


def test_a_merged_section_replaces_its_text_and_summary_rows_only():
    from benchmarks.report import merge, render
    from benchmarks.results import Section, Table, Target

    def section(number: int, figure: str) -> Section:
        return Section(
            key=f"s{number}",
            title=f"{number}. Section {number}",
            method=f"method {number}",
            tables=[Table(["a"], [[figure]])],
            targets=[Target(f"{number}. goal", "≤ 1", figure, figure == "new")],
        )

    full = render(
        [section(1, "old"), section(2, "old")],
        machine={"CPUs": "2"},
        command="full",
        started="then",
        seconds=60,
        load_at_end="0",
        quick=False,
    )
    merged = merge(full, [section(1, "new")], command="again --only s1", started="now")

    assert "| 1. goal | ≤ 1 | new | yes |" in merged
    assert "| 2. goal | ≤ 1 | old | **NO** |" in merged
    first, second = merged.split("## 2. Section 2")
    assert "| new |" in first and "| old |" not in first.split("## 1. Section 1")[1]
    assert "run again at now (`again --only s1`)" in first
    assert "| old |" in second and "run again" not in second
    assert merged.count("## 1. Section 1") == 1
    with pytest.raises(ValueError, match=r"3\. is not a section"):
        merge(full, [section(3, "new")], command="x", started="now")


@pytest.mark.skipif(
    AIRFLOW_VERSION_TUPLE < (3, 3),
    reason=f"the benchmarks measure Airflow 3.3, the newest line (this is {AIRFLOW_VERSION})",
)
def test_merge_refuses_before_running_when_the_report_lacks_the_section(tmp_path):
    report = tmp_path / "bench.md"
    report.write_text("# Benchmarks\n\n## Summary\n\n## 2. Token requests\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "per_call", "--merge", "--output", report],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "has no section for per_call" in result.stderr
    assert "[bench] per_call" not in result.stderr  # nothing ran
