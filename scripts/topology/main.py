"""Airflow as teams deploy it, on one machine's loopback, with the provider's example DAGs.

Usage: ``scripts/topology.sh [--executor edge]`` (installs what is needed, then runs this
file); ``--executor edge`` runs the same on the EdgeExecutor (see ``edge.py``).

PostgreSQL (metadata database and Celery result backend), Redis (Celery broker), moto's S3
server, the METI emulator with a seeded 5 % fault rate, and Airflow's API server, scheduler,
DAG processor, triggerer and two Celery workers. Six ``meti_register_sources`` runs and six
``meti_daily_extract`` runs (to ``s3://``) go at once, and the worker running one
registration is killed mid-create (``worker_kill.py``), the triggerer while sensors wait in
it (``triggerer_kill.py``), and Redis and PostgreSQL are each restarted once
(``server_restarts.py``); then the checks in ``checks.py`` and ``fault_checks.py``.
Everything is stopped at the end, on success, failure or Ctrl-C. Figures go to
``.airflow/topology/summary.json``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import time
import traceback
import uuid
from pathlib import Path
from types import FrameType

import checks
import edge
import fault_checks
from airflow_stack import COMPONENTS, TOKEN_HOSTS, WORKERS, build_stack
from metadata import Metadata
from processes import ProcessGroups, left_behind
from runs import alt_id_prefix, register_run_id, run_all
from server_restarts import REDIS_AFTER_SOURCES, ServerRestart, ServiceManager
from servers import Emulator, MotoS3, Postgres, Redis, postgres_bin
from summary import print_summary, write_json
from triggerer_kill import TriggererKill
from worker_kill import WorkerKill

ROOT = Path(__file__).resolve().parents[2]
EXECUTOR = edge.executor_from_args(sys.argv[1:])
TOPOLOGY = ROOT / ".airflow" / edge.topology_folder(EXECUTOR)
TOKEN_CACHES = TOPOLOGY / "token-caches"  # one XDG_CACHE_HOME per component; removed at the end
BIN = Path(sys.executable).parent
METI_EMAIL = "topology@meti.local"
FAULT_RATE = 0.05
SEED = 15
BUCKET = "meti-extracts"
RUNS_TIMEOUT = 420.0
KILLED_RUN = 1  # the registration whose worker is killed ...
KILL_AFTER_POSTS = 6  # ... when METI has stored this many of its 12 creates
TRIGGERER_KILL_AFTER = 2  # deferred sensors whose triggers run in the triggerer


class Interrupted(Exception):
    """SIGTERM or SIGINT: stop what runs and clean up."""


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main() -> int:
    started = time.monotonic()
    shutil.rmtree(TOPOLOGY, ignore_errors=True)
    TOPOLOGY.mkdir(parents=True)
    run_id = uuid.uuid4().hex
    groups = ProcessGroups(TOPOLOGY / "component-logs", TOPOLOGY / "process-groups", run_id)
    found = checks.Findings()
    phases: dict[str, float] = {}
    error: str | None = None
    guard: edge.DatabaseGuard | None = None
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    postgres = Postgres(TOPOLOGY / "temp-dirs")
    kill = WorkerKill(
        groups, WORKERS, register_run_id(KILLED_RUN), alt_id_prefix(KILLED_RUN), KILL_AFTER_POSTS
    )
    triggerer_kill = TriggererKill(groups, TRIGGERER_KILL_AFTER)
    password = "topology-" + secrets.token_urlsafe(18)
    emulator = Emulator(METI_EMAIL, password, FAULT_RATE, SEED, observer=kill)
    try:
        mark = time.monotonic()
        redis, s3 = Redis(TOPOLOGY / "redis"), MotoS3(BUCKET)
        postgres.start(groups)
        if EXECUTOR == "celery":
            redis.start(groups)
        s3.start(groups, str(BIN / "moto_server"), _plain_env())
        emulator.start()
        restarts = _server_restarts(groups, postgres, redis, emulator, kill, triggerer_kill)
        service = ServiceManager(groups, restarts, tuple(COMPONENTS))
        phases["servers"] = time.monotonic() - mark

        mark = time.monotonic()
        stack = build_stack(
            ROOT,
            TOPOLOGY / "airflow-home",
            BIN,
            groups,
            database_url=postgres.sqlalchemy_url,
            result_backend=postgres.celery_result_backend,
            broker_url=redis.url,
            connections={
                "meti_default": _meti_connection(emulator),
                "aws_default": s3.airflow_connection(),
            },
            cache_root=TOKEN_CACHES,
        )
        if EXECUTOR == "edge":
            guard = edge.DatabaseGuard(postgres.port, lambda: edge.worker_pids(stack))
            stack = edge.on_edge(stack, guard)
            kill.restart_allowed = stack.replaceable
            guard.start()
        stack.migrate()
        components_started = time.monotonic()
        stack.start()
        stack.wait_until_ready()
        phases["airflow up"] = time.monotonic() - mark
        print(f"Up: Airflow at {stack.api_url}, workers {', '.join(stack.ready_workers())}")

        mark = time.monotonic()
        db = Metadata(postgres.dsn())
        runs = run_all(
            stack,
            db,
            emulator,
            sample=ROOT / "example_dags" / "data" / "fields.geojson",
            fields_dir=TOPOLOGY / "fields",
            output_dir=f"s3://aws_default@{BUCKET}/daily",
            timeout=RUNS_TIMEOUT,
            on_poll=lambda db: _inject(db, kill, triggerer_kill, restarts),
            # A component that exits soon after a server's restart is started again by its
            # service manager, in the same look that would otherwise fail the run.
            excuse=service.respawn,
        )
        phases["runs"] = time.monotonic() - mark
        print("Every run has finished; stopping Airflow, then checking")

        mark = time.monotonic()
        groups.stop([*COMPONENTS, *WORKERS])  # logs complete, database final
        components_ran = time.monotonic() - components_started
        dump = postgres.dump(TOPOLOGY / "metadata.sql")
        checks.check_runs(db, runs, found)
        checks.check_sources(emulator, runs, found)
        checks.check_workers(db, runs, stack.home / "logs", found)
        fault_checks.check_worker_kill(db, kill, runs, stack.home / "logs", found)
        fault_checks.check_triggerer_kill(db, triggerer_kill, stack.home / "logs", found)
        fault_checks.check_server_restarts(restarts, found)
        checks.check_tokens(db, emulator, components_ran, found)
        checks.check_token_caches({h: stack.token_cache(h) for h in TOKEN_HOSTS}, found)
        checks.check_extracts(db, emulator, s3, runs, found)
        log_dirs = [stack.home / "logs", groups.log_dir]
        checks.check_secrets(db, emulator, dump, log_dirs, TOKEN_CACHES, found)
        if guard is not None:
            edge.check_no_database(guard, stack, postgres.password, found)
        phases["checks"] = time.monotonic() - mark
    except Interrupted as interrupt:
        error = f"interrupted ({interrupt})"
    except Exception as failure:  # reported, then everything is torn down
        error = f"{type(failure).__name__}: {failure}"
        traceback.print_exc()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        mark = time.monotonic()
        groups.stop([*COMPONENTS, *WORKERS])  # Airflow first, then the servers under it
        groups.stop()
        emulator.stop()
        if guard is not None:
            guard.stop()
        strays = groups.sweep()
        left = left_behind(run_id)
        postgres.remove_data()
        shutil.rmtree(TOKEN_CACHES, ignore_errors=True)
        groups.forget_groups_file()
        phases["teardown"] = time.monotonic() - mark
    found.add(
        "nothing left running",
        not left,
        f"{len(groups.started)} process groups stopped"
        + (f"; killed strays {strays}" if strays else "")
        + (f"; STILL RUNNING: {left}" if left else ""),
    )
    found.add(
        "token caches removed",
        not TOKEN_CACHES.exists(),
        f"{TOKEN_CACHES.relative_to(ROOT)} "
        + ("still there" if TOKEN_CACHES.exists() else "removed after the checks"),
    )
    found.figures.update(
        topology=(
            f"PostgreSQL {Path(postgres_bin('postgres')).parts[4]}, {edge.describe(EXECUTOR)}, "
            f"moto S3, METI emulator with {FAULT_RATE:.0%} faults (seed {SEED})"
        ),
        processes_left=len(left),
        phases_s={name: round(seconds, 1) for name, seconds in phases.items()},
        elapsed_s=round(time.monotonic() - started, 1),
        setup_s=float(os.environ.get("METI_TOPOLOGY_SETUP_S", "0")),
    )
    write_json(TOPOLOGY / "summary.json", found, error)
    print_summary(found, error, TOPOLOGY / "summary.json")
    if error and error.startswith("interrupted"):
        return 130
    return 1 if error or found.failed else 0


def _inject(
    db: Metadata,
    kill: WorkerKill,
    triggerer_kill: TriggererKill,
    restarts: list[ServerRestart],
) -> None:
    """The faults' steps placed by what the run has reached: the killed worker's restart,
    the triggerer's kill, and the servers' restarts."""
    kill.restart_when_retried(db)
    triggerer_kill.poll(db)
    for restart in restarts:
        restart.poll(db)


def _server_restarts(
    groups: ProcessGroups,
    postgres: Postgres,
    redis: Redis,
    emulator: Emulator,
    kill: WorkerKill,
    triggerer_kill: TriggererKill,
) -> list[ServerRestart]:
    assert emulator.server is not None
    ledger = emulator.server.ledger
    restarts = []
    if EXECUTOR == "celery":
        restarts.append(
            ServerRestart(
                "redis",
                groups,
                due=lambda: ledger.count() >= REDIS_AFTER_SOURCES,
                wait_until_up=lambda: redis.wait_until_up(groups),
                sources_held=ledger.count,
                where=f"at the first look after METI held {REDIS_AFTER_SOURCES} sources",
            )
        )
    restarts.append(
        ServerRestart(
            "postgres",
            groups,
            due=lambda: kill.retry_done and triggerer_kill.landed is not None,
            wait_until_up=lambda: postgres.wait_until_up(groups),
            sources_held=ledger.count,
            where="once the killed worker's retry had succeeded and the triggerer kill landed",
        )
    )
    return restarts


def _meti_connection(emulator: Emulator) -> dict[str, object]:
    assert emulator.server is not None
    return {
        "conn_type": "meti",
        "host": emulator.server.url,
        "login": emulator.email,
        "password": emulator.password,
    }


def _plain_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}


if __name__ == "__main__":
    sys.exit(main())
