"""The same topology on Airflow's EdgeExecutor: two ``airflow edge worker`` processes.

``scripts/topology.sh --executor edge`` swaps the Celery workers (and Redis) for the edge3
provider's workers. They reach the API server over HTTP only, as remote workers do: their
configuration names a metadata database that is a tripwire (a port on this machine that counts
every connection made to it), never PostgreSQL, and a guard samples every process of theirs
for the real database's password in its environment and for sockets to PostgreSQL's port.
The run's folder is ``.airflow/topology-edge``, so it never meets a Celery run's files.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
import requests
from airflow_stack import WORKER_SLOTS, WORKERS, AirflowStack
from checks import Findings

EXECUTORS = ("celery", "edge")
EDGE_EXECUTOR = "airflow.providers.edge3.executors.EdgeExecutor"
POLL_S = 1  # how often an idle worker asks for a job (default 5 s)
HEARTBEAT_S = 3  # a worker silent for 5 heartbeats is marked lifeless (default 30 s)
SAMPLE_S = 0.3
JWT_LEEWAY_S = 60
# A socket in these states belongs to a process; one closing (TIME_WAIT and the like) is the
# kernel's alone, so its owner cannot be known: the tripwire, not the sampler, covers those.
OWNED_STATES = (psutil.CONN_ESTABLISHED, psutil.CONN_SYN_SENT)
WORKER_SETTINGS = Path(__file__).parent / "edge_worker"  # the workers' airflow_local_settings
# What only the central components hold: a remote worker has none of it.
CENTRAL_ONLY = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API__SECRET_KEY",
)


def executor_from_args(argv: list[str]) -> str:
    parser = argparse.ArgumentParser(prog="scripts/topology.sh")
    parser.add_argument("--executor", choices=EXECUTORS, default="celery")
    return str(parser.parse_args(argv).executor)


def topology_folder(executor: str) -> str:
    """The run's folder under ``.airflow``: each executor its own, so both can run at once."""
    return "topology" if executor == "celery" else f"topology-{executor}"


def describe(executor: str) -> str:
    if executor == "celery":
        return f"Redis, CeleryExecutor with {len(WORKERS)} workers x {WORKER_SLOTS} slots"
    return (
        f"EdgeExecutor (edge3 {version('apache-airflow-providers-edge3')}) with {len(WORKERS)} "
        f"HTTP-only workers x {WORKER_SLOTS} slots"
    )


class DatabaseGuard:
    """Proof that the edge workers never reach the metadata database.

    ``url`` is what their ``sql_alchemy_conn`` says: a port that accepts, counts and closes
    every connection. A sampler thread follows each worker's process tree (the worker, each
    task's supervisor and task process, found by parent pid: the processes retitle themselves,
    which overwrites what /proc shows of their environment), and records any open TCP
    connection to PostgreSQL's port that belongs to one of them or to no known process.
    """

    def __init__(self, db_port: int, roots: Callable[[], dict[int, str]]) -> None:
        """:param roots: the workers' own processes, pid -> worker"""
        self.db_port = db_port
        self._roots = roots
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stopped = threading.Event()
        self.connections = 0
        self.processes: dict[int, str] = {}  # pid -> worker, every process of a worker's tree
        self.database_sockets: set[str] = set()
        self._unowned: set[int] = set()  # local ports of sockets without an owner, last sample
        self.samples = 0
        self._threads = [
            threading.Thread(target=self._accept, daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]

    @property
    def url(self) -> str:
        port = self._listener.getsockname()[1]
        return f"postgresql+psycopg2://edge-worker@127.0.0.1:{port}/no-database-here"

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def _sample(self) -> None:
        while not self._stopped.wait(SAMPLE_S):
            tree: dict[int, str] = {}
            for pid, worker in self._roots().items():
                with contextlib.suppress(psutil.Error):
                    root = psutil.Process(pid)
                    tree.update({p.pid: worker for p in [root, *root.children(recursive=True)]})
            self.processes.update(tree)
            self._sample_sockets(tree)
            self.samples += 1

    def _sample_sockets(self, tree: dict[int, str]) -> None:
        """Record worker-owned sockets to PostgreSQL, and any whose owner stays unknown.

        A socket opened while psutil scans has no owner in that scan; only one still unowned
        at the next sample counts.
        """
        owners = {
            c.laddr.port: c.pid
            for c in psutil.net_connections("tcp")
            if c.raddr and c.raddr.port == self.db_port and c.status in OWNED_STATES
        }
        for port, pid in owners.items():
            if pid in tree:
                self.database_sockets.add(f"pid {pid} ({tree[pid]})")
            elif pid is None and port in self._unowned:
                self.database_sockets.add(f"no known owner (local port {port})")
        self._unowned = {port for port, pid in owners.items() if pid is None}


def check_no_database(guard: DatabaseGuard, stack: EdgeStack, secret: str, found: Findings) -> None:
    """:param secret: the database's password, which no worker's environment may hold"""
    per_worker = {w: sum(1 for v in guard.processes.values() if v == w) for w in WORKERS}
    tasks = set(guard.processes) - set(worker_pids(stack))
    leaking = sorted(
        w for w, env in stack.worker_envs.items() if any(secret in v for v in env.values())
    )
    found.figures["edge_workers"] = {
        "processes_sampled": per_worker,
        "task_processes_sampled": len(tasks),
        "samples": guard.samples,
        "tripwire_connections": guard.connections,
        "workers_with_database_password": len(leaking),
        "sockets_to_postgres": sorted(guard.database_sockets),
    }
    found.add(
        "edge workers never reached the database",
        guard.connections == 0
        and not leaking
        and not guard.database_sockets
        and all(per_worker.values())
        and len(tasks) > 0
        and len(stack.worker_envs) == len(WORKERS),
        f"{len(guard.processes)} worker processes sampled {guard.samples} times "
        f"({_pairs(per_worker)}; {len(tasks)} of them ran tasks): {guard.connections} "
        "connections to the tripwire their sql_alchemy_conn names, "
        f"sockets to PostgreSQL: {sorted(guard.database_sockets) or 'none'}, database "
        f"password in the environment of {leaking or 'no worker'}",
    )


def _pairs(mapping: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(mapping.items()))


@dataclass
class EdgeStack(AirflowStack):
    """The Airflow components with edge workers instead of Celery workers."""

    guard: DatabaseGuard | None = field(default=None)
    worker_envs: dict[str, dict[str, str]] = field(default_factory=dict)

    def start_workers(self) -> None:
        for worker in WORKERS:
            pid_file = str(self.home / f"{worker}.pid")
            argv = [self.airflow(), "edge", "worker", "--edge-hostname", worker,
                    "--concurrency", str(WORKER_SLOTS), "--pid", pid_file]  # fmt: skip
            self.worker_envs[worker] = self.worker_env(worker)
            self.groups.start(worker, argv, self.worker_envs[worker])

    def worker_env(self, worker: str) -> dict[str, str]:
        assert self.guard is not None
        env = {k: v for k, v in self._env(worker).items() if k not in CENTRAL_ONLY}
        return {
            **env,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.guard.url,
            "METI_TOPOLOGY_HOST": worker,
            "PYTHONPATH": f"{WORKER_SETTINGS}{os.pathsep}{env['PYTHONPATH']}",
            # Task logs go to the home's folder, as with a shared log volume, not through the
            # API: edge3 5.1.0 pushes a resumed deferred task's log again from its start (each
            # resumption is a new job), so the central copy would repeat earlier executions.
            "AIRFLOW__EDGE__PUSH_LOGS": "False",
        }

    def ready_workers(self) -> list[str]:
        """Edge workers registered with the API server and idle, from the edge3 REST API."""
        return sorted(w["worker_name"] for w in self._workers() if w["state"] == "idle")

    def replaceable(self, worker: str) -> bool:
        """Whether a new ``worker`` may register: the API server refuses (409) a name whose
        record is still active, until the executor finds it silent for 5 heartbeats."""
        states = {w["worker_name"]: w["state"] for w in self._workers()}
        return states.get(worker) in ("unknown", "offline")

    def _workers(self) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.api_url}/edge_worker/ui/worker", headers=self._headers(), timeout=10
        )
        response.raise_for_status()
        return list(response.json()["workers"])


def central_env(api_url: str) -> dict[str, str]:
    """What the scheduler and API server need to run the EdgeExecutor and serve its API."""
    return {
        "AIRFLOW__CORE__EXECUTOR": EDGE_EXECUTOR,
        "AIRFLOW__EDGE__API_ENABLED": "True",
        "AIRFLOW__EDGE__API_URL": f"{api_url}/edge_worker/v1/rpcapi",
        "AIRFLOW__EDGE__JOB_POLL_INTERVAL": str(POLL_S),
        "AIRFLOW__EDGE__HEARTBEAT_INTERVAL": str(HEARTBEAT_S),
        # A worker signs each request with a token valid for jwt_leeway seconds, checked with
        # the same leeway; the default 10 s was outlived by a request queued at a busy API
        # server (2 cores, two topologies at once), and a worker exits on the 403.
        "AIRFLOW__API_AUTH__JWT_LEEWAY": str(JWT_LEEWAY_S),
    }


def on_edge(stack: AirflowStack, guard: DatabaseGuard) -> EdgeStack:
    """``stack``'s components, configured for the EdgeExecutor, with edge workers."""
    env = {k: v for k, v in stack.env.items() if not k.startswith("AIRFLOW__CELERY__")}
    env.update(central_env(stack.api_url))
    fields: dict[str, Any] = {**vars(stack), "env": env}
    return EdgeStack(**fields, guard=guard)


def worker_pids(stack: AirflowStack) -> dict[int, str]:
    """Every edge worker process started (a restarted worker has two), pid -> worker."""
    return {m.process.pid: m.name for m in stack.groups.started if m.name in WORKERS}
