"""A deployment fault: the worker running one register task dies mid-task, as under an OOM kill.

The emulator tells ``WorkerKill`` of each request it serves, before it answers. When METI has
stored the ``after_posts``-th create POST of the chosen run, and before that POST is answered,
every process of the worker that sent it (the worker, its pool, each task's supervisor and task
process) gets SIGKILL. The killed try's record in Airflow's task state store therefore shows
that POST, and any others under way, as in flight: the retry must look them up.

From then until the retry has succeeded, every request is logged with the worker process that
sent it, so the checks can tell the retry's requests (its lookups, its POSTs) from everyone
else's. The worker is started again once the retry runs on the other worker, so both serve the
rest of the run.

Processes are told apart by ancestry, not by environment: Celery's pool and Airflow's task
processes set their titles, which overwrites what ``/proc/<pid>/environ`` shows.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
from metadata import Metadata
from processes import ProcessGroups
from runs import REGISTER

from airflow_provider_meti.emulator.routes import Request

REGISTER_TASK = "register_fields"
FREEZE_PASSES = 5


@dataclass(frozen=True)
class Served:
    """One request the emulator served after the kill."""

    pid: int | None  # the worker process that sent it (None: no worker's, or already gone)
    method: str
    path: str
    offset: str | None
    status: int | None  # None: a fault answered instead of METI
    fault: str | None
    alt_ids: tuple[str, ...]


@dataclass
class Landing:
    """Where the kill landed."""

    post: int  # the run's create POSTs METI had stored, the held one included
    worker: str
    posting_pid: int
    killed_pids: list[int]
    at: float  # epoch seconds


@dataclass
class WorkerKill:
    groups: ProcessGroups
    workers: tuple[str, ...]  # the process group names of the workers
    dag_run_id: str
    alt_id_prefix: str
    after_posts: int
    stored_before: list[str] = field(default_factory=list)  # the run's alt_ids, until the kill
    landed: Landing | None = None
    error: str | None = None
    served: list[Served] = field(default_factory=list)
    restarted_at: float | None = None
    retry_done: bool = False  # logging stops then
    # Whether the killed worker may start again (an edge worker's name is refused until the
    # executor has found its old record lifeless).
    restart_allowed: Callable[[str], bool] = lambda _worker: True
    _fired: bool = False
    _pids: dict[int, int | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- the emulator's observer -----------------------------------------------------------

    def served_request(
        self, client_port: int, request: Request, status: int | None, fault: str | None
    ) -> None:
        if self._fired:
            if not self.retry_done:
                self._log(client_port, request, status, fault)
            return
        alt_ids = self._run_alt_ids(request) if status == 201 else []
        if not alt_ids:
            return
        with self._lock:
            self.stored_before.extend(alt_ids)
            due = not self._fired and len(self.stored_before) >= self.after_posts
            self._fired = self._fired or due
        if due:
            try:
                self._kill(client_port, len(self.stored_before))
            except Exception as failure:  # reported by the checks; the run goes on
                self.error = f"{type(failure).__name__}: {failure}"

    def _run_alt_ids(self, request: Request) -> list[str]:
        if request.method != "POST" or request.path != "/sources":
            return []
        try:
            features = json.loads(request.body).get("features") or []
        except (ValueError, AttributeError):
            return []
        alt_ids = [str(f.get("id")) for f in features if isinstance(f, dict)]
        return [a for a in alt_ids if a.startswith(self.alt_id_prefix)]

    def _log(
        self, client_port: int, request: Request, status: int | None, fault: str | None
    ) -> None:
        entry = Served(
            pid=self._pid_of(client_port),
            method=request.method,
            path=request.path,
            offset=request.param("offset"),
            status=status,
            fault=fault,
            alt_ids=tuple(self._run_alt_ids(request)),
        )
        with self._lock:
            self.served.append(entry)

    def _pid_of(self, client_port: int) -> int | None:
        if client_port not in self._pids:  # a connection keeps its process: look up once
            self._pids[client_port] = client_pid(client_port, self._worker_processes())
        return self._pids[client_port]

    def _worker_mains(self) -> dict[int, str]:
        """pid -> name of each worker's main process now running."""
        mains = {}
        for name in self.workers:
            with contextlib.suppress(StopIteration):
                mains[self.groups.running(name).process.pid] = name
        return mains

    def _worker_processes(self) -> list[psutil.Process]:
        found = []
        for pid in self._worker_mains():
            with contextlib.suppress(psutil.NoSuchProcess):
                main = psutil.Process(pid)
                found += [main, *main.children(recursive=True)]
        return found

    # --- the kill and the restart ----------------------------------------------------------

    def _kill(self, client_port: int, post: int) -> None:
        pid = client_pid(client_port, self._worker_processes())
        if pid is None:
            raise RuntimeError(f"no worker process holds the connection from port {client_port}")
        mains = self._worker_mains()
        main_pid = next(p.pid for p in psutil.Process(pid).parents() if p.pid in mains)
        worker = mains[main_pid]
        managed = self.groups.running(worker)
        self.groups.killed(worker)  # first: the run's watch must not take it for a crash
        killed = kill_tree(psutil.Process(main_pid))
        managed.process.wait(timeout=10)  # reaped: its pidfile is stale for the restart
        self.landed = Landing(post, worker, pid, killed, time.time())

    def restart_when_retried(self, db: Metadata) -> None:
        """Start the killed worker again once the retry runs on another worker."""
        if self.landed is None or (self.retry_done and self.restarted_at is not None):
            return
        rows = db.rows(
            "SELECT try_number, hostname, state FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s AND task_id = %s",
            REGISTER,
            self.dag_run_id,
            REGISTER_TASK,
        )
        if not rows:
            return
        try_number, hostname, state = rows[0]
        moved = try_number >= 2 and hostname not in ("", None, self.landed.worker)
        due = moved and state in ("running", "success") and self.restarted_at is None
        if due and self.restart_allowed(self.landed.worker):
            self.groups.restart(self.landed.worker)
            self.restarted_at = time.time()
        self.retry_done = moved and state == "success"

    # --- what the checks read --------------------------------------------------------------

    def requests_of(self, pid: int) -> list[Served]:
        with self._lock:
            return [entry for entry in self.served if entry.pid == pid]

    def stored_after_kill(self) -> list[tuple[int | None, str]]:
        """``(pid, alt_id)`` of each of the run's creates METI stored after the kill."""
        with self._lock:
            return [(e.pid, a) for e in self.served if e.status == 201 for a in e.alt_ids]


def client_pid(port: int, candidates: list[psutil.Process]) -> int | None:
    """Which of ``candidates`` holds the TCP connection whose local port is ``port``."""
    for process in candidates:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if any(c.laddr and c.laddr.port == port for c in process.net_connections("tcp")):
                return process.pid
    return None


def kill_tree(main: psutil.Process) -> list[int]:
    """SIGKILL ``main`` and every process under it at once, as the kernel's OOM killer or a
    lost node would: stopped first, tree and all, so that nothing forks away meanwhile."""
    tree: dict[int, psutil.Process] = {}
    for _ in range(FREEZE_PASSES):
        found = {p.pid: p for p in [main, *main.children(recursive=True)]}
        if found.keys() <= tree.keys():
            break
        for pid in found.keys() - tree.keys():
            with contextlib.suppress(psutil.NoSuchProcess):
                found[pid].send_signal(signal.SIGSTOP)
        tree.update(found)
    for process in tree.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(list(tree.values()), timeout=1)  # orphans' zombies may linger
    return sorted(tree)
