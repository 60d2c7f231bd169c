"""Deployment faults: the metadata database and the broker, each restarted once mid-run.

Each restart is placed by what the run has reached, not by the clock:
- Redis (Celery only), at the first look after METI holds ``REDIS_AFTER_SOURCES`` of the
  registrations' sources;
- PostgreSQL, once the killed worker's retry has succeeded (so its bounded recovery is
  measured apart from this fault) and the triggerer kill has landed.

The check requires runs still unfinished when each lands; the summary counts them, the
running tasks and the sources METI held.

A restart is what a service manager does: PostgreSQL's fast shutdown (every session ended,
open transactions rolled back), Redis' SIGTERM (its append-only file written), then the same
server on the same port and data. The runs see connections refused and broken for as long as
the server is away, and must finish all the same, retries allowed. An Airflow component
that exits soon after its server went away (the triggerer does, when its database does) is
started again, as its service manager would, and the summary names it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from metadata import Metadata
from processes import ProcessGroups
from runs import EXTRACT, REGISTER

REDIS_AFTER_SOURCES = 24
RESPAWN_WINDOW_S = 60.0  # after the server answers again; Airflow's retries end well before
UNFINISHED = ("queued", "running")


@dataclass
class RestartLanding:
    server: str
    stopped: float  # monotonic, when it was stopped
    down_s: float  # stopped until it answered again
    sources_held: int  # what METI held then
    runs_unfinished: int
    tasks_running: int
    respawned: list[Respawned] = field(default_factory=list)


@dataclass
class Respawned:
    component: str
    exit_code: int | None
    after_s: float  # after the server was stopped


@dataclass
class ServerRestart:
    """Stop and start ``server`` once, the first time ``due()`` holds on a poll."""

    server: str  # its process group's name
    groups: ProcessGroups
    due: Callable[[], bool]
    wait_until_up: Callable[[], None]
    sources_held: Callable[[], int]
    where: str  # the point it is placed at, for the summary
    landed: RestartLanding | None = None
    error: str | None = None

    def poll(self, db: Metadata) -> None:
        if self.landed is not None or self.error is not None:
            return
        if not self.due():
            return
        gone = self.groups.exited()
        if gone:  # a crash of its own, not this fault's: check_running reports it
            self.error = f"not restarted: {', '.join(gone)} had exited before"
            return
        try:
            counts = _unfinished(db)  # before: the database may be the one to go
            self.landed = self._restart(*counts)
        except Exception as failure:  # reported by the checks; the run goes on
            self.error = f"{type(failure).__name__}: {failure}"

    def _restart(self, runs_unfinished: int, tasks_running: int) -> RestartLanding:
        held = self.sources_held()
        stopped = time.monotonic()
        self.groups.stop([self.server])
        self.groups.restart(self.server)
        self.wait_until_up()
        return RestartLanding(
            self.server,
            stopped,
            time.monotonic() - stopped,
            held,
            runs_unfinished,
            tasks_running,
        )


@dataclass
class ServiceManager:
    """Starts an Airflow component (not a worker) again when it exits within
    ``RESPAWN_WINDOW_S`` of a server's restart, once per component and restart.

    Any other exit stays an error that ``check_running`` reports: one before a restart, a
    second one, a late one, a worker's. Components killed on purpose are marked so and are
    not this manager's to start.
    """

    groups: ProcessGroups
    restarts: list[ServerRestart]
    components: tuple[str, ...]

    def respawn(self, gone: list[str]) -> list[str]:
        """Start again each of the exited components ``gone`` that this manager may;
        return the others (``AirflowStack.check_running``'s ``excuse``)."""
        landed = [r.landed for r in self.restarts if r.landed is not None]
        if not landed:
            return gone
        latest = max(landed, key=lambda landing: landing.stopped)
        since_stop = time.monotonic() - latest.stopped
        if since_stop > latest.down_s + RESPAWN_WINDOW_S:
            return gone
        already = {r.component for r in latest.respawned}
        left = []
        for name in gone:
            if name not in self.components or name in already:
                left.append(name)
                continue
            code = self.groups.running(name).process.returncode
            self.groups.killed(name)
            self.groups.restart(name)
            latest.respawned.append(Respawned(name, code, since_stop))
        return left


def _unfinished(db: Metadata) -> tuple[int, int]:
    """Runs not yet finished, and task instances running now."""
    runs = db.count(
        "SELECT count(*) FROM dag_run WHERE dag_id = ANY(%s) AND state = ANY(%s)",
        [REGISTER, EXTRACT],
        list(UNFINISHED),
    )
    tasks = db.count(
        "SELECT count(*) FROM task_instance WHERE dag_id = ANY(%s) AND state = 'running'",
        [REGISTER, EXTRACT],
    )
    return runs, tasks
