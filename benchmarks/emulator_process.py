"""The METI emulator in its own process, steered through its ``/_emulator/`` admin routes.

A separate process keeps the server's CPU time out of the client's ``process_time`` and lets
it run on the other core, as a real server would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from types import TracebackType
from typing import Any

import requests

EMAIL = "demo@meti.local"
PASSWORD = "demo-password"
STARTUP_LINE = re.compile(r"serving on (http://\S+)")
ADMIN_TIMEOUT_S = 300  # seeding 100,000 sources takes a few seconds on a busy machine


class EmulatorProcess:
    """``python -m airflow_provider_meti.emulator --port 0`` for the length of a ``with`` block."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._admin = requests.Session()
        self.url = ""

    def __enter__(self) -> EmulatorProcess:
        command = [sys.executable, "-m", "airflow_provider_meti.emulator", "--port", "0"]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        for line in self._process.stdout:
            found = STARTUP_LINE.search(line)
            if found:
                self.url = found.group(1)
                return self
        raise RuntimeError("the emulator exited before it was serving")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._admin.close()
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def cpu_seconds(self) -> float | None:
        """User plus system CPU the emulator has used so far (Linux; None elsewhere)."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        user, system = int(fields[11]), int(fields[12])
        return (user + system) / os.sysconf("SC_CLK_TCK")

    # Admin routes (not counted in the emulator's request statistics)

    def admin(self, method: str, name: str, body: Any = None) -> Any:
        response = self._admin.request(
            method, f"{self.url}/_emulator/{name}", json=body, timeout=ADMIN_TIMEOUT_S
        )
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """Drop every source, token and counter."""
        self.admin("POST", "reset")

    def seed(self, count: int) -> None:
        """Add ``count`` generated sources."""
        self.admin("POST", "seed", {"count": count})

    def stats(self) -> dict[str, Any]:
        return dict(self.admin("GET", "stats"))

    def set_faults(self, **plan: Any) -> None:
        self.admin("POST", "faults", plan)

    def clear_faults(self) -> None:
        self.admin("POST", "faults", {})

    def fresh(self, sources: int = 0) -> None:
        """Reset, clear faults and store ``sources`` generated sources."""
        self.clear_faults()
        self.reset()
        if sources:
            self.seed(sources)
