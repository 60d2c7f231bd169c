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
