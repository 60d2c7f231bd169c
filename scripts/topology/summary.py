"""The run's one-screen summary, and the same figures as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checks import Findings


def write_json(path: Path, found: Findings, error: str | None) -> None:
    payload = {
        "passed": error is None and not found.failed and bool(found.checks),
        "error": error,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in found.checks],
        **found.figures,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def print_summary(found: Findings, error: str | None, json_path: Path) -> None:
    f = found.figures
    print()
    print(f"METI topology run: {f.get('topology', '')}")
    for dag_id, run in sorted(f.get("runs", {}).items()):
        print(
            f"  {dag_id:<24} {run['count']} runs, all done in {run['span_s']:.0f} s "
            f"(each {run['mean_s']:.0f} s on average)"
        )
    _line("tasks per worker", _pairs(f.get("task_instances_by_worker")))
    if "sensors" in f:
        s = f["sensors"]
        _line(
            "sensors deferred",
            f"{s['deferred']} ({s['most_deferred_at_once']} at once), resumed on "
            + _pairs(s["resumed_on"]),
        )
    if "meti" in f:
        m = f["meti"]
        _line(
            "METI emulator",
            f"{m['sources_stored']} sources left, {m['sources_withdrawn']} withdrawn, "
            f"{m['requests']} requests, {m['faults_injected']} faults injected",
        )
    if "tokens" in f:
        t = f["tokens"]
        _line(
            "token requests",
            f"{t['requested']} for {t['worker_hosts']} worker hosts + {t['triggerers']} "
            f"triggerer ({t['task_processes_calling_meti']} task processes called METI); at "
            f"most ({t['worker_hosts']} + {t['triggerers']}) x {t['token_lifetimes']} token "
            f"lifetime = {t['allowed']} (ran {t['window_s']:.0f} s; a token serves "
            f"{t['token_ttl_s']:.0f} s TTL - {t['renewal_margin_s']:.0f} s margin)",
        )
    if "worker_kill" in f:
        k = f["worker_kill"]
        restarted = k["restarted_after_s"]
        _line(
            "worker killed",
            f"{k['worker']} (SIGKILL, {k['processes_killed']} processes) when METI had stored "
            f"create POST {k['after_stored_posts']} of {k['run']}; "
            + (f"restarted {restarted:.0f} s later" if restarted is not None else "not restarted"),
        )
    if "triggerer_kill" in f:
        t = f["triggerer_kill"]
        _line(
            "triggerer killed",
            f"SIGKILL ({t['processes_killed']} processes) while {t['sensors_deferred_in_it']} "
            f"sensors' triggers ran in it; restarted at once; the new one ran "
            f"{t['fired_in_new_triggerer']} ({t['fired_twice']} fired twice, each sensor "
            "resumed once)",
        )
    for server, r in sorted(f.get("server_restarts", {}).items()):
        _line(
            f"{server} restarted",
            f"{r['where']} ({r['sources_held']} sources held, {r['runs_unfinished']} runs "
            f"unfinished, {r['tasks_running']} tasks running); away {r['down_s']:.1f} s"
            + "".join(
                f"; {x['component']} exited (code {x['exit_code']}) and was started again"
                for x in r.get("respawned", [])
            ),
        )
    if "recovery" in f:
        r = f["recovery"]
        _line(
            "recovery",
            f"try 2: {r['recorded']} recorded, {r['in_flight']} in flight; extra requests "
            f"{r['extra_requests']} ({r['lookup_requests']} lookup GETs, "
            f"{r['token_requests']} token); {r['retry_posts']} POSTs; duplicates "
            f"{r['duplicates']}, lost {r['lost']}",
        )
    if "retries" in f:
        r = f["retries"]
        _line(
            "retries used",
            f"{r['task_instances']} task instances ({_pairs(r['by_task'])}); "
            f"{r['tries_ended_by_the_kill']} tries ended by the kill",
        )
    if "extracts" in f:
        rows = sorted(f["extracts"].values())
        _line("extracts in S3", f"{len(f['extracts'])} objects, rows {rows}")
    if "secrets_scan" in f:
        s = f["secrets_scan"]
        _line(
            "secrets found",
            f"{s['hits']} (password + {s['tokens_issued']} tokens in {s['bytes'] // 1024} KiB: "
            f"pg_dump, {s['log_files']} log files, {s['xcom_rows']} XCom rows, "
            f"{s.get('token_cache_files', 0)} token-cache files: names and raw bytes)",
        )
    _line("processes left", str(f.get("processes_left", "?")))
    _line("phases", ", ".join(f"{k} {v:.0f} s" for k, v in f.get("phases_s", {}).items()))
    _line("elapsed", f"{f.get('elapsed_s', 0):.0f} s (plus {f.get('setup_s', 0):.0f} s setup)")
    for check in found.checks:
        print(f"  {'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    if error:
        print(f"  ERROR  {error}")
    print(f"  figures: {json_path}")


def _line(label: str, text: str) -> None:
    print(f"  {label:<24} {text}")


def _pairs(mapping: dict[str, Any] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((mapping or {}).items(), key=str))
