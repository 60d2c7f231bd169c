"""Deployment faults: the metadata database and the broker, each restarted once mid-run.

Each restart is placed by what the run has reached, not by the clock:
- Redis (Celery only), once METI holds ``REDIS_AFTER_SOURCES`` sources: registrations are
  under way and tasks sit in the broker's queue;
- PostgreSQL, once the killed worker's retry has succeeded (so its bounded recovery is
  measured apart from this fault) and the triggerer kill has landed: extracts and sensors
  are still running.

A restart is what a service manager does: PostgreSQL's fast shutdown (every session ended,
open transactions rolled back), Redis' SIGTERM (its append-only file written), then the same
server on the same port and data. The runs see connections refused and broken for as long as
the server is away, and must finish all the same, retries allowed. An Airflow component
that exits because its server went away (the scheduler does, when its database does) is
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
UNFINISHED = ("queued", "running")


@dataclass
class RestartLanding:
    server: str
    at: float  # epoch seconds, when it was stopped
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
    began: float | None = None  # monotonic, when it was stopped
    _counts: tuple[int, int] = field(default=(0, 0))

    def poll(self, db: Metadata) -> None:
        if self.landed is not None or self.error is not None:
            return
        if not self.due():
            return
        try:
            self._counts = _unfinished(db)  # before: the database may be the one to go
            self.landed = self._restart()
        except Exception as failure:  # reported by the checks; the run goes on
            self.error = f"{type(failure).__name__}: {failure}"

    def _restart(self) -> RestartLanding:
        held = self.sources_held()
        stopped_at, mark = time.time(), time.monotonic()
        self.began = mark
        self.groups.stop([self.server])
        self.groups.restart(self.server)
        self.wait_until_up()
        runs_unfinished, tasks_running = self._counts
        return RestartLanding(
            self.server,
            stopped_at,
            time.monotonic() - mark,
            held,
            runs_unfinished,
            tasks_running,
        )


@dataclass
class ServiceManager:
    """Starts an Airflow component again when it exits after a server restart began.

    Before any restart an exit stays an error (``check_running`` reports it); components
    killed on purpose are marked so and are not this manager's to start.
    """

    groups: ProcessGroups
    restarts: list[ServerRestart]
    components: tuple[str, ...]

    def poll(self) -> None:
        begun = [r for r in self.restarts if r.began is not None]
        if not begun:
            return
        latest = max(begun, key=lambda r: r.began or 0.0)
        for name in self.groups.exited():
            if name not in self.components:
                continue
            code = self.groups.running(name).process.returncode
            self.groups.killed(name)
            self.groups.restart(name)
            assert latest.began is not None
            respawned = Respawned(name, code, time.monotonic() - latest.began)
            if latest.landed is not None:  # else its error is what the checks report
                latest.landed.respawned.append(respawned)


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
