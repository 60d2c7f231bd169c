"""What the topology run must show; each check says plainly what was wrong when it fails."""

from __future__ import annotations

import json
import math
import stat
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_stack import TOKEN_HOSTS, WORKERS
from metadata import Metadata
from runs import EXTRACT, REGISTER, RUNS_EACH, SENSOR, Runs
from servers import Emulator, MotoS3

from airflow_provider_meti.auth import MAX_MARGIN_FRACTION
from airflow_provider_meti.settings import ClientSettings

# Tasks whose process talks to METI (a deferred sensor's resumption does not: the event holds
# the answer). Each try, and each reschedule of a reschedule-mode sensor, is one process.
METI_TASKS = ("register_fields", "report_conflicts", SENSOR, "wait_for_sources", "extract_sources")
TRIGGERERS = 1


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Findings:
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]


def check_runs(db: Metadata, runs: Runs, found: Findings) -> None:
    states = db.run_states((REGISTER, EXTRACT))
    per_dag = Counter(dag_id for dag_id, _ in states)
    bad = {f"{dag}/{run}": s for (dag, run), s in states.items() if s != "success"}
    expected = set(runs.register) | set(runs.extract)
    unexpected = sorted(run for _, run in states if run not in expected)
    ok = not bad and not unexpected and per_dag == {REGISTER: RUNS_EACH, EXTRACT: RUNS_EACH}
    found.add(
        "every run succeeded",
        ok,
        f"{per_dag[REGISTER]} register + {per_dag[EXTRACT]} extract runs"
        + (f"; not successful: {bad}" if bad else "")
        + (f"; runs the script did not trigger: {unexpected}" if unexpected else ""),
    )
    durations = db.rows(
        "SELECT dag_id, extract(epoch FROM max(end_date) - min(start_date)), "
        "avg(extract(epoch FROM end_date - start_date)) FROM dag_run "
        "WHERE dag_id = ANY(%s) GROUP BY dag_id",
        [REGISTER, EXTRACT],
    )
    found.figures["runs"] = {
        dag: {"count": per_dag[dag], "span_s": round(float(span), 1), "mean_s": round(float(m), 1)}
        for dag, span, m in durations
    }


def check_sources(emulator: Emulator, runs: Runs, found: Findings) -> None:
    assert emulator.server is not None
    stored = emulator.server.ledger.all()
    alt_ids = Counter(source["alt_id"] for source in stored)
    duplicates = sorted(alt_id for alt_id, n in alt_ids.items() if n > 1)
    missing = sorted(runs.expected_alt_ids - set(alt_ids))
    extra = sorted(set(alt_ids) - runs.expected_alt_ids)
    conflicts = sorted(s["alt_id"] for s in stored if s.get("conflict"))
    found.add(
        "METI holds exactly the expected sources",
        not (duplicates or missing or extra or conflicts),
        f"{len(stored)} stored, {len(runs.expected_alt_ids)} expected"
        + (f"; duplicated: {duplicates}" if duplicates else "")
        + (f"; missing: {missing}" if missing else "")
        + (f"; unexpected: {extra}" if extra else "")
        + (f"; still in conflict: {conflicts}" if conflicts else ""),
    )
    stats = emulator.server.stats()
    found.figures["meti"] = {
        "sources_stored": len(stored),
        "sources_withdrawn": len(emulator.withdrawn),
        "requests": sum(stats["requests"].values()),
        "faults_injected": sum(stats["faults"].values()),
        "faults_by_kind": stats["faults"],
        "token_requests": stats["token_requests"],
        "tokens_issued": stats["tokens_issued"],
    }


def check_workers(db: Metadata, runs: Runs, task_logs: Path, found: Findings) -> None:
    per_host = dict(
        db.rows(
            "SELECT hostname, count(*) FROM task_instance WHERE dag_id = ANY(%s) "
            "AND state = 'success' GROUP BY hostname",
            [REGISTER, EXTRACT],
        )
    )
    found.figures["task_instances_by_worker"] = per_host
    found.add(
        "tasks ran on both workers",
        set(per_host) == set(WORKERS),
        f"task instances per hostname: {per_host}",
    )
    sensors = db.rows(
        "SELECT run_id, map_index, state, hostname, next_method FROM task_instance "
        "WHERE dag_id = %s AND task_id = %s",
        REGISTER,
        SENSOR,
    )
    never_deferred = [
        f"{run.run_id}[{m}]" for run in runs.register.values() for m in (0, 1)
        if m not in run.deferred_triggers
    ]  # fmt: skip
    not_resumed = [
        f"{run_id}[{m}]: {state} on {host}" for run_id, m, state, host, next_method in sensors
        if state != "success" or host not in WORKERS or next_method is not None
    ]  # fmt: skip
    not_fired = [
        f"{run_id}[{m}]" for run_id, m, *_ in sensors if not _trigger_fired(task_logs, run_id, m)
    ]
    left_triggers = db.count("SELECT count(*) FROM trigger")
    found.figures["sensors"] = {
        "deferred": sum(len(run.deferred_triggers) for run in runs.register.values()),
        "most_deferred_at_once": runs.most_deferred_at_once,
        "resumed_on": dict(Counter(host for _, _, _, host, _ in sensors)),
    }
    found.add(
        "deferred sensors resumed on a worker",
        len(sensors) == 2 * RUNS_EACH and not never_deferred and not not_resumed
        and not not_fired and left_triggers == 0,
        f"{len(sensors)} sensors, each seen deferred, its trigger fired in the triggerer, then "
        f"finished on {found.figures['sensors']['resumed_on']}"
        + (f"; never seen deferred: {never_deferred}" if never_deferred else "")
        + (f"; no 'Trigger fired event' in the trigger log: {not_fired}" if not_fired else "")
        + (f"; not resumed on a worker: {not_resumed}" if not_resumed else "")
        + (f"; {left_triggers} triggers left" if left_triggers else ""),
    )  # fmt: skip


def _trigger_fired(task_logs: Path, run_id: str, map_index: int) -> bool:
    """Whether the triggerer logged, for this sensor, that its trigger fired an event."""
    folder = task_logs / f"dag_id={REGISTER}/run_id={run_id}/task_id={SENSOR}/map_index={map_index}"
    return any(
        "Trigger fired event" in path.read_text(errors="replace")
        for path in folder.glob("attempt=*.log.trigger.*.log")
    )


def check_tokens(db: Metadata, emulator: Emulator, window_s: float, found: Findings) -> None:
    """At most one token per host (each worker, the triggerer) per token lifetime.

    :param window_s: how long the Airflow components ran (every token request falls inside)
    """
    tries = db.count(
        "SELECT coalesce(sum(try_number), 0) FROM task_instance "
        "WHERE dag_id = ANY(%s) AND task_id = ANY(%s)",
        [REGISTER, EXTRACT],
        list(METI_TASKS),
    )
    reschedules = db.count(
        "SELECT count(*) FROM task_reschedule r JOIN task_instance t ON r.ti_id = t.id "
        "WHERE t.dag_id = ANY(%s) AND t.task_id = ANY(%s)",
        [REGISTER, EXTRACT],
        list(METI_TASKS),
    )
    processes = tries + reschedules
    assert emulator.server is not None
    requested = emulator.server.stats()["token_requests"]
    ttl = float(emulator.server.state.tokens.ttl)
    # A host renews its token this long before the TTL is up (the connection keeps the
    # default margin), so each token serves it for ttl - margin seconds at least.
    margin = min(ClientSettings.token_refresh_margin, ttl * MAX_MARGIN_FRACTION)
    lifetimes = max(1, math.ceil(window_s / (ttl - margin)))
    allowed = len(TOKEN_HOSTS) * lifetimes
    found.figures["tokens"] = {
        "requested": requested,
        "worker_hosts": len(WORKERS),
        "triggerers": TRIGGERERS,
        "task_processes_calling_meti": processes,
        "token_ttl_s": ttl,
        "renewal_margin_s": margin,
        "window_s": round(window_s, 1),
        "token_lifetimes": lifetimes,
        "allowed": allowed,
    }
    found.add(
        "at most one token per host per token lifetime",
        0 < requested <= allowed,
        f"{requested} token requests; at most ({len(WORKERS)} worker hosts + {TRIGGERERS} "
        f"triggerer) x {lifetimes} token lifetime = {allowed}",
    )


def check_token_caches(caches: dict[str, Path], found: Findings) -> None:
    """Each host kept its token in a private cache folder of its own (0700, files 0600)."""
    problems: list[str] = []
    entries: dict[str, int] = {}
    for host, folder in caches.items():
        try:
            mode = stat.S_IMODE(folder.lstat().st_mode)
        except FileNotFoundError:
            problems.append(f"{host}: no token cache folder")
            continue
        if mode != 0o700 or folder.is_symlink():
            problems.append(f"{host}: folder mode {mode:o}")
        files = sorted(p for p in folder.iterdir() if p.is_file())
        loose = sum(1 for p in files if _not_private(p))  # counted: a name might hold a secret
        if loose:
            problems.append(f"{host}: {loose} files not 0600")
        entries[host] = sum(1 for p in files if p.suffix == ".token")
        if entries[host] != 1:
            problems.append(f"{host}: {entries[host]} token files, expected 1 (one connection)")
    found.figures["token_caches"] = entries
    found.add(
        "each host kept one token in a private cache",
        not problems,
        f"token files per host: {entries}, folders 0700, files 0600"
        + (f"; {'; '.join(problems)}" if problems else ""),
    )


def _not_private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) != 0o600


def check_extracts(
    db: Metadata, emulator: Emulator, s3: MotoS3, runs: Runs, found: Findings
) -> None:
    xcoms = {
        run_id: value if isinstance(value, dict) else json.loads(value)
        for run_id, value in db.rows(
            "SELECT run_id, value FROM xcom WHERE dag_id = %s AND task_id = 'extract_sources' "
            "AND key = 'return_value'",
            EXTRACT,
        )
    }
    windows = {
        run_id: (start, end)
        for run_id, start, end in db.rows(
            "SELECT run_id, start_date, end_date FROM task_instance "
            "WHERE dag_id = %s AND task_id = 'extract_sources'",
            EXTRACT,
        )
    }
    objects = s3.objects()
    problems: list[str] = []
    counts: dict[str, int] = {}
    history = _source_history(emulator)
    for run_id in sorted(runs.extract):
        result = xcoms.get(run_id)
        if not result:
            problems.append(f"{run_id}: no extract result in XCom")
            continue
        key = result["path"].split(f"{s3.bucket}/", 1)[-1]
        body = objects.get(key)
        if body is None:
            problems.append(f"{run_id}: {result['path']} not in the bucket")
            continue
        ids = _extract_ids(key, body)
        counts[key] = len(ids)
        start, end = windows[run_id]
        must = {i for i, (born, gone) in history.items() if born < start and gone > end}
        may = {i for i, (born, _) in history.items() if born < end}
        if len(ids) != result["count"]:
            problems.append(f"{key}: {len(ids)} rows, the task reported {result['count']}")
        if len(set(ids)) != len(ids):
            problems.append(f"{key}: a source appears twice")
        if not must <= set(ids):
            problems.append(f"{key}: misses {len(must - set(ids))} sources that existed throughout")
        if not set(ids) <= may:
            problems.append(f"{key}: holds {len(set(ids) - may)} sources that did not exist yet")
    strays = sorted(set(objects) - set(counts))
    if strays:
        problems.append(f"objects no run wrote (temporary or partial?): {strays}")
    found.figures["extracts"] = counts
    found.add(
        "extracts complete, nothing partial left",
        not problems and len(counts) == RUNS_EACH,
        f"{len(counts)} objects in s3://{s3.bucket}, rows {sorted(counts.values())}, each equal "
        "to the sources METI held while it ran" + (f"; {'; '.join(problems)}" if problems else ""),
    )


def _source_history(emulator: Emulator) -> dict[str, tuple[datetime, datetime]]:
    """Source id -> (created, withdrawn or the far future)."""
    assert emulator.server is not None
    never = datetime.max.replace(tzinfo=timezone.utc)
    history = {s["id"]: (_parse(s["created_at"]), never) for s in emulator.server.ledger.all()}
    for source_id, (created, withdrawn) in emulator.withdrawn.items():
        history[source_id] = (_parse(created), datetime.fromtimestamp(withdrawn, timezone.utc))
    return history


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _extract_ids(key: str, body: bytes) -> list[str]:
    if key.endswith(".parquet"):
        import io

        import pyarrow.parquet as pq

        return [str(i) for i in pq.read_table(io.BytesIO(body), columns=["id"])["id"].to_pylist()]
    return [json.loads(line)["id"] for line in body.decode().splitlines() if line.strip()]


def check_secrets(
    db: Metadata,
    emulator: Emulator,
    dump: Path,
    log_dirs: list[Path],
    cache_root: Path,
    found: Findings,
) -> None:
    """The connection's password (its only secret: the run speaks v1) and every issued token
    are nowhere: not in the database, the logs, XCom, nor any name or byte of the token
    caches (whose files are encrypted, so their raw bytes are searched)."""
    secrets = [emulator.password, *emulator.issued_tokens]
    texts: dict[str, str] = {"pg_dump": dump.read_text(errors="replace")}
    log_files = [p for d in log_dirs for p in d.rglob("*") if p.is_file()]
    for path in log_files:
        texts[str(path)] = path.read_text(errors="replace")
    xcom_rows = db.rows("SELECT dag_id, run_id, task_id, value::text FROM xcom")
    for dag_id, run_id, task_id, value in xcom_rows:
        texts[f"xcom {dag_id}/{run_id}/{task_id}"] = value or ""
    hits = sorted({where for where, text in texts.items() for s in secrets if s in text})
    cache_bytes = _cache_contents(cache_root)
    raw = [s.encode() for s in secrets]
    hits += sorted({where for where, data in cache_bytes.items() for s in raw if s in data})
    cache_files = sum(1 for where in cache_bytes if where.endswith(": file"))
    scanned = sum(len(text) for text in texts.values()) + sum(map(len, cache_bytes.values()))
    found.figures["secrets_scan"] = {
        "secrets": len(secrets),
        "tokens_issued": len(emulator.issued_tokens),
        "bytes": scanned,
        "log_files": len(log_files),
        "xcom_rows": len(xcom_rows),
        "token_cache_files": cache_files,
        "hits": len(hits),
    }
    found.add(
        "no secret in the database, logs, XCom or token caches",
        not hits and len(emulator.issued_tokens) > 0 and cache_files > 0,
        f"password + {len(emulator.issued_tokens)} tokens searched in the pg_dump "
        f"({dump.stat().st_size // 1024} KiB), {len(log_files)} log files, "
        f"{len(xcom_rows)} XCom rows and the names and raw bytes of {cache_files} token-cache "
        "files" + (f"; FOUND in: {hits}" if hits else ": none found"),
    )


def _cache_contents(cache_root: Path) -> dict[str, bytes]:
    """Every name under the token caches and every file's raw bytes, labelled by component
    and position only: a label never repeats a name, which might hold a secret."""
    found: dict[str, bytes] = {}
    for index, path in enumerate(sorted(cache_root.rglob("*"))):
        relative = path.relative_to(cache_root)
        where = f"token cache of {relative.parts[0]}, entry {index}"
        found[f"{where}: name"] = str(relative).encode()
        if path.is_file() and not path.is_symlink():
            found[f"{where}: file"] = path.read_bytes()
    return found
