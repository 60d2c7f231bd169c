"""What the worker kill must show: where it landed, the retry, and a bounded recovery."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from airflow_stack import WORKERS
from checks import Findings
from metadata import Metadata
from runs import EXTRACT, REGISTER, SENSOR, Runs
from server_restarts import ServerRestart
from triggerer_kill import TriggererKill
from worker_kill import REGISTER_TASK, WorkerKill

from airflow_provider_meti.settings import ClientSettings

# v1 takes one feature per POST, and a create has at most max_workers POSTs under way.
MOST_IN_FLIGHT = ClientSettings.max_workers
RESUMED = re.compile(
    r"Resuming from the task state store: (\d+) features recorded as stored, (\d+) in\s+flight"
)
TOKEN_PATHS = ("/token", "/oauth/token")
SERVER_NAMES = {"postgres": "PostgreSQL", "redis": "Redis"}
TRIGGER_LOG = re.compile(r"attempt=\d+\.log\.trigger\.(\d+)\.log$")


def check_worker_kill(
    db: Metadata, kill: WorkerKill, runs: Runs, task_logs: Path, found: Findings
) -> None:
    tries = _tries(db, kill.dag_run_id)
    _check_landing(kill, tries, found)
    _check_retry(kill, tries, found)
    _check_recovery(kill, tries, runs, task_logs, found)
    _check_state_store_cleared(db, found)
    _count_retries(db, kill, found)


def _tries(db: Metadata, run_id: str) -> dict[int, tuple[str, str, int | None]]:
    """try_number -> (state, hostname, pid) of the register task of ``run_id``, every try."""
    sql = (
        "SELECT try_number, state, hostname, pid FROM {} "
        "WHERE dag_id = %s AND run_id = %s AND task_id = %s"
    )
    tries: dict[int, tuple[str, str, int | None]] = {}
    for table in ("task_instance_history", "task_instance"):
        for number, state, host, pid in db.rows(sql.format(table), REGISTER, run_id, REGISTER_TASK):
            tries[number] = (state, host, pid)
    return tries


def _check_landing(
    kill: WorkerKill, tries: dict[int, tuple[str, str, int | None]], found: Findings
) -> None:
    landed = kill.landed
    if landed is None:
        found.add("a worker killed mid-task", False, kill.error or "the kill never fired")
        return
    _, first_host, first_pid = tries.get(1, ("", "", None))
    restarted = kill.restarted_at is not None
    ok = (
        kill.error is None
        and landed.post == kill.after_posts
        and landed.posting_pid in landed.killed_pids
        and first_host == landed.worker
        and first_pid == landed.posting_pid
        and restarted
    )
    found.figures["worker_kill"] = {
        "run": kill.dag_run_id,
        "after_stored_posts": landed.post,
        "worker": landed.worker,
        "processes_killed": len(landed.killed_pids),
        "restarted_after_s": round(kill.restarted_at - landed.at, 1) if restarted else None,
    }
    found.add(
        "a worker killed mid-task",
        ok,
        f"{landed.worker} got SIGKILL ({len(landed.killed_pids)} processes) when METI had "
        f"stored create POST {landed.post} of {kill.dag_run_id} and not yet answered it; the "
        f"POST came from process {landed.posting_pid}, Airflow's try 1 ran on {first_host} "
        f"as process {first_pid}"
        + (f"; restarted {kill.restarted_at - landed.at:.0f} s later" if restarted else "")
        + ("" if restarted else "; NEVER RESTARTED")
        + (f"; error: {kill.error}" if kill.error else ""),
    )


def _check_retry(
    kill: WorkerKill, tries: dict[int, tuple[str, str, int | None]], found: Findings
) -> None:
    killed = kill.landed.worker if kill.landed else None
    last = max(tries, default=0)
    state, host, _ = tries.get(last, ("", "", None))
    first_state = tries.get(1, ("",))[0]
    ok = (
        last == 2
        and state == "success"
        and host in WORKERS
        and host != killed
        and first_state in ("failed", "up_for_retry")
    )
    found.add(
        "the killed task retried on the other worker",
        ok,
        f"{REGISTER_TASK} of {kill.dag_run_id}: try 1 {first_state or 'missing'}, "
        f"{len(tries)} tries, the last (try {last}) {state or 'missing'} on {host}",
    )


def _check_recovery(
    kill: WorkerKill,
    tries: dict[int, tuple[str, str, int | None]],
    runs: Runs,
    task_logs: Path,
    found: Findings,
) -> None:
    retry_pid = tries.get(2, ("", "", None))[2]
    resumed = _resumed(task_logs, kill.dag_run_id)
    requests = kill.requests_of(retry_pid) if retry_pid else []
    lookups = [r for r in requests if r.method == "GET" and r.path == "/sources"]
    scans = sum(1 for r in lookups if r.offset == "0" and r.status == 200)
    tokens = [r for r in requests if r.path in TOKEN_PATHS]
    posts = [r for r in requests if r.method == "POST" and r.path == "/sources"]
    after = kill.stored_after_kill()
    by_retry = [alt_id for pid, alt_id in after if pid == retry_pid]
    by_killed_try = kill.stored_before + [alt_id for pid, alt_id in after if pid != retry_pid]
    stored = Counter(by_killed_try + by_retry)
    expected = set(runs.register[kill.dag_run_id].alt_ids)
    duplicates = sorted(a for a, n in stored.items() if n > 1)
    lost = sorted(expected - set(stored))
    recorded, in_flight = resumed or (0, 0)
    found.figures["recovery"] = {
        "recorded": recorded,
        "in_flight": in_flight,
        "lookup_requests": len(lookups),
        "listing_scans": scans,
        "token_requests": len(tokens),
        "extra_requests": len(lookups) + len(tokens),
        "retry_posts": len(posts),
        "stored_by_killed_try": len(by_killed_try),
        "stored_by_retry": len(by_retry),
        "duplicates": len(duplicates),
        "lost": len(lost),
    }
    ok = (
        resumed is not None
        and 1 <= in_flight <= MOST_IN_FLIGHT
        # In flight means recorded before its POST started: a POST the kill stopped before
        # it reached METI is in flight too, so the killed try's creates lie in between.
        and recorded <= len(by_killed_try) <= recorded + in_flight
        and scans == 1
        and not duplicates
        and not lost
        and set(stored) == expected
    )
    found.add(
        "the retry resumed, with a bounded recovery",
        ok,
        (
            f"try 2 resumed from the task state store: {recorded} features recorded, "
            f"{in_flight} in flight (at most {MOST_IN_FLIGHT})"
            if resumed
            else "try 2's log shows no resumption from the task state store"
        )
        + f"; it looked them up with {len(lookups)} GET /sources ({scans} listing scan), "
        f"{len(tokens)} token requests, then {len(posts)} POSTs; METI stored "
        f"{len(by_killed_try)} creates of the killed try and {len(by_retry)} of the retry: "
        f"{len(duplicates)} duplicated, {len(lost)} lost"
        + (f" ({duplicates} duplicated)" if duplicates else "")
        + (f" ({lost} lost)" if lost else ""),
    )


def _resumed(task_logs: Path, run_id: str) -> tuple[int, int] | None:
    """(recorded, in flight) as try 2 of the run's register task logged them, if it did."""
    log = task_logs / f"dag_id={REGISTER}/run_id={run_id}/task_id={REGISTER_TASK}/attempt=2.log"
    match = RESUMED.search(log.read_text(errors="replace")) if log.exists() else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def _check_state_store_cleared(db: Metadata, found: Findings) -> None:
    left = db.count(
        "SELECT count(*) FROM task_state_store WHERE dag_id = %s AND task_id = %s",
        REGISTER,
        REGISTER_TASK,
    )
    found.add(
        "durable records cleared on success",
        left == 0,
        f"{left} task state store rows left for {REGISTER_TASK}",
    )


def _count_retries(db: Metadata, kill: WorkerKill, found: Findings) -> None:
    rows = db.rows(
        "SELECT task_id, count(*) FROM task_instance WHERE dag_id = ANY(%s) AND try_number > 1 "
        "GROUP BY task_id",
        [REGISTER, EXTRACT],
    )
    killed_with_worker = db.count(
        "SELECT count(*) FROM task_instance_history WHERE dag_id = ANY(%s) AND hostname = %s "
        "AND state <> 'success' AND end_date >= to_timestamp(%s)",
        [REGISTER, EXTRACT],
        kill.landed.worker if kill.landed else "",
        kill.landed.at if kill.landed else 0,
    )
    by_task: dict[str, Any] = dict(rows)
    found.figures["retries"] = {
        "task_instances": sum(by_task.values()),
        "by_task": by_task,
        "tries_ended_by_the_kill": killed_with_worker,
    }


def check_triggerer_kill(
    db: Metadata, kill: TriggererKill, task_logs: Path, found: Findings
) -> None:
    """Each sensor the killed triggerer ran finished once: deferred once, resumed once, on its
    first try, with its trigger run again by the new triggerer where its event was not saved.

    A trigger may fire twice (once in the killed triggerer, its event not yet saved, then in
    the new one): Airflow delivers trigger events at least once, and the sensor's poll is a
    read. What must hold is that the task resumed once.
    """
    landed = kill.landed
    if landed is None:
        found.add("the triggerer killed and restarted", False, kill.error or "it never fired")
        return
    problems = []
    in_new = fired_twice = 0
    for sensor in landed.claimed:
        name = f"{sensor.run_id}[{sensor.map_index}]"
        fired = _trigger_events(task_logs, sensor.run_id, sensor.map_index)
        in_new += any(job != sensor.triggerer_job for job in fired)
        fired_twice += sum(fired.values()) > 1
        deferred, executions = _executions(task_logs, sensor.run_id, sensor.map_index)
        tries = db.rows(
            "SELECT try_number, state FROM task_instance WHERE dag_id = %s AND run_id = %s "
            "AND task_id = %s AND map_index = %s",
            REGISTER,
            sensor.run_id,
            SENSOR,
            sensor.map_index,
        )
        if not fired:
            problems.append(f"{name}: its trigger never fired")
        if (deferred, executions) != (1, 2):
            problems.append(f"{name}: deferred {deferred} times, ran {executions} times")
        if tries != [(1, "success")]:
            problems.append(f"{name}: (try, state) {tries}")
    found.figures["triggerer_kill"] = {
        "sensors_deferred_in_it": len(landed.claimed),
        "processes_killed": landed.processes_killed,
        "fired_in_new_triggerer": in_new,
        "fired_twice": fired_twice,
    }
    found.add(
        "the triggerer killed and restarted",
        kill.error is None and in_new > 0 and not problems,
        f"killed (SIGKILL, {landed.processes_killed} processes) while it ran the triggers of "
        f"{len(landed.claimed)} deferred sensors, and started again at once; the new one ran "
        f"{in_new} of them ({fired_twice} had fired already, their event unsaved); each "
        "sensor deferred once, resumed once, and succeeded on its first try"
        + (f"; {'; '.join(problems)}" if problems else "")
        + (f"; error: {kill.error}" if kill.error else ""),
    )


def _executions(task_logs: Path, run_id: str, map_index: int) -> tuple[int, int]:
    """(deferrals, task process runs) in the sensor's first try's log."""
    log = (
        task_logs
        / f"dag_id={REGISTER}/run_id={run_id}/task_id={SENSOR}/map_index={map_index}"
        / "attempt=1.log"
    )
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("Pausing task as DEFERRED"), text.count("Worker startup parse complete")


def _trigger_events(task_logs: Path, run_id: str, map_index: int) -> dict[int, int]:
    """Triggerer job id -> how many times the sensor's trigger fired in it, from its logs."""
    folder = task_logs / f"dag_id={REGISTER}/run_id={run_id}/task_id={SENSOR}/map_index={map_index}"
    fired: dict[int, int] = {}
    for path in folder.glob("attempt=*.log.trigger.*.log"):
        match = TRIGGER_LOG.search(path.name)
        count = path.read_text(errors="replace").count("Trigger fired event")
        if match and count:
            job = int(match.group(1))
            fired[job] = fired.get(job, 0) + count
    return fired


def check_server_restarts(restarts: list[ServerRestart], found: Findings) -> None:
    """Each server restarted once, mid-run; that every run still succeeded is checked by
    ``check_runs``."""
    figures = found.figures.setdefault("server_restarts", {})
    for restart in restarts:
        name = f"{SERVER_NAMES[restart.server]} restarted mid-run"
        landed = restart.landed
        if landed is None:
            found.add(name, False, restart.error or f"never due ({restart.where})")
            continue
        figures[restart.server] = {
            "where": restart.where,
            "sources_held": landed.sources_held,
            "runs_unfinished": landed.runs_unfinished,
            "tasks_running": landed.tasks_running,
            "down_s": round(landed.down_s, 1),
            "respawned": [
                {"component": r.component, "exit_code": r.exit_code, "after_s": round(r.after_s)}
                for r in landed.respawned
            ],
        }
        respawned = "; ".join(
            f"{r.component} exited (code {r.exit_code}) {r.after_s:.0f} s after the stop and "
            "was started again"
            for r in landed.respawned
        )
        found.add(
            name,
            restart.error is None and landed.runs_unfinished > 0,
            f"stopped and started again {restart.where} ({landed.sources_held} sources held, "
            f"{landed.runs_unfinished} runs unfinished, {landed.tasks_running} tasks running); "
            f"away {landed.down_s:.1f} s" + (f"; {respawned}" if respawned else ""),
        )
