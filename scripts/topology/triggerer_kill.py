"""A deployment fault: the triggerer killed while sensors wait in it, and started again.

Once the triggerer has claimed the triggers of ``after_claimed`` deferred sensors (as the
metadata database shows: each trigger row names the triggerer job running it), it and every
process under it get SIGKILL, and it is started again at once, as a service manager would.
The new triggerer takes the dead one's triggers over once that one's heartbeat is stale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psutil
from metadata import Metadata
from processes import ProcessGroups
from runs import REGISTER, SENSOR
from worker_kill import kill_tree

TRIGGERER = "triggerer"


@dataclass(frozen=True, order=True)
class Claimed:
    """A deferred sensor whose trigger a triggerer job runs."""

    run_id: str
    map_index: int
    trigger_id: int
    triggerer_job: int


@dataclass
class TriggererLanding:
    claimed: list[Claimed]  # what the killed triggerer ran
    processes_killed: int
    at: float  # epoch seconds


@dataclass
class TriggererKill:
    groups: ProcessGroups
    after_claimed: int
    landed: TriggererLanding | None = None
    error: str | None = None
    seen_deferred: set[tuple[str, int]] = field(default_factory=set)

    def poll(self, db: Metadata) -> None:
        """Kill and restart the triggerer, the first time enough triggers run in it."""
        if self.landed is not None or self.error is not None:
            return
        claimed = self._claimed_sensor_triggers(db)
        if len(claimed) < self.after_claimed:
            return
        try:
            self.landed = self._kill_and_restart(claimed)
        except Exception as failure:  # reported by the checks; the run goes on
            self.error = f"{type(failure).__name__}: {failure}"

    def _claimed_sensor_triggers(self, db: Metadata) -> list[Claimed]:
        rows = db.rows(
            "SELECT ti.run_id, ti.map_index, t.id, t.triggerer_id FROM trigger t "
            "JOIN task_instance ti ON ti.trigger_id = t.id "
            "WHERE ti.dag_id = %s AND ti.task_id = %s AND ti.state = 'deferred' "
            "AND t.triggerer_id IS NOT NULL",
            REGISTER,
            SENSOR,
        )
        return sorted(Claimed(*row) for row in rows)

    def _kill_and_restart(self, claimed: list[Claimed]) -> TriggererLanding:
        managed = self.groups.running(TRIGGERER)
        self.groups.killed(TRIGGERER)  # first: the run's watch must not take it for a crash
        killed = kill_tree(psutil.Process(managed.process.pid))
        managed.process.wait(timeout=10)
        self.groups.restart(TRIGGERER)
        return TriggererLanding(claimed, len(killed), time.time())
