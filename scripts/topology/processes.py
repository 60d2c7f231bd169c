"""Processes of the topology run: each in its own process group, all stopped at the end.

Every child gets ``METI_TOPOLOGY_RUN=<run id>`` in its environment, so a final sweep finds
anything that left its group (Celery's pool children, a task's supervisor) and ends it too.
The process groups are also listed in a file that ``scripts/topology.sh`` reads on exit, in
case this Python process itself is killed before it can clean up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

RUN_MARKER = "METI_TOPOLOGY_RUN"
STOP_GRACE = 15.0


class ComponentExited(RuntimeError):
    """A server or Airflow component stopped before the run was over."""


@dataclass
class Managed:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int
    stopped: bool = False
    restart: dict[str, Any] = field(default_factory=dict)
    """How it was started (``ProcessGroups.start``'s arguments), to start it again."""


@dataclass
class ProcessGroups:
    """Starts processes in new sessions, remembers them, and stops them in reverse order."""

    log_dir: Path
    groups_file: Path
    run_id: str
    started: list[Managed] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        cwd: Path | None = None,
    ) -> Managed:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:  # a restarted component adds to its log
            process = subprocess.Popen(
                argv,
                env={**env, RUN_MARKER: self.run_id},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                user=user,
                cwd=cwd,
            )
        options = {"env": env, "user": user, "stop_signal": stop_signal, "cwd": cwd}
        managed = Managed(name, process, log_path, stop_signal, restart={"argv": argv, **options})
        self.started.append(managed)
        with self.groups_file.open("a") as groups:
            groups.write(f"{process.pid} {name}\n")
        return managed

    def exited(self) -> list[str]:
        """Names of processes that ended unasked (none should, before the end)."""
        return [m.name for m in self.started if not m.stopped and m.process.poll() is not None]

    def running(self, name: str) -> Managed:
        """The live entry of ``name`` (the newest, should it have been restarted)."""
        return next(m for m in reversed(self.started) if m.name == name and not m.stopped)

    def killed(self, name: str) -> None:
        """Record that ``name`` was killed on purpose: it no longer counts as exited early."""
        self.running(name).stopped = True

    def restart(self, name: str) -> Managed:
        """Start ``name`` again as it was started before."""
        previous = next(m for m in reversed(self.started) if m.name == name)
        return self.start(name, **previous.restart)

    def tail(self, name: str, lines: int = 25) -> str:
        managed = next(m for m in reversed(self.started) if m.name == name)
        text = managed.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {managed.log_path} (last {len(text)} lines) ---\n" + "\n".join(text)

    def stop(self, names: list[str] | None = None) -> None:
        """Signal each group (newest first), wait up to a grace period, then SIGKILL."""
        chosen = [
            m
            for m in reversed(self.started)
            if not m.stopped and (names is None or m.name in names)
        ]
        for managed in chosen:
            _signal_group(managed.process.pid, managed.stop_signal)
        deadline = time.monotonic() + STOP_GRACE
        for managed in chosen:
            with contextlib.suppress(subprocess.TimeoutExpired):
                managed.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(managed.process.pid, signal.SIGKILL)  # whatever is left in the group
            with contextlib.suppress(subprocess.TimeoutExpired):
                managed.process.wait(timeout=10)
            managed.stopped = True

    def sweep(self) -> list[str]:
        """Kill any process still carrying this run's marker; return what was found."""
        found = []
        for process in psutil.process_iter(["pid", "name"]):
            if process.pid == os.getpid():
                continue
            try:
                if process.environ().get(RUN_MARKER) != self.run_id:
                    continue
                found.append(f"{process.pid} {process.info['name']}")
                process.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def forget_groups_file(self) -> None:
        self.groups_file.unlink(missing_ok=True)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def left_behind(run_id: str) -> list[str]:
    """Processes still carrying the marker of ``run_id`` (after the sweep: none)."""
    found = []
    for process in psutil.process_iter(["pid", "name"]):
        try:
            if process.environ().get(RUN_MARKER) == run_id and process.pid != os.getpid():
                found.append(f"{process.pid} {process.info['name']}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
