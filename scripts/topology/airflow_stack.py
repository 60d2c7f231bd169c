"""The Airflow components on PostgreSQL and Celery, and the REST API the run talks to.

API server, scheduler, DAG processor, triggerer and two Celery workers (4 slots each), all
sharing one ``AIRFLOW_HOME`` (as machines would share a configuration) and one environment:
the metadata database and result backend on PostgreSQL, the broker on Redis, connections as
``AIRFLOW_CONN_*`` variables. Only the cache folder differs: each component gets an
``XDG_CACHE_HOME`` of its own under the run's folder, so each Celery worker and the triggerer
is a host with its own METI token cache (and the user's ~/.cache is never touched).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from processes import ComponentExited, ProcessGroups
from servers import free_port, wait_for

WORKERS = ("worker-1", "worker-2")
WORKER_SLOTS = 4
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
HEALTHY_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
TRIGGERER = "triggerer"
TOKEN_HOSTS = (*WORKERS, TRIGGERER)
"""The hosts whose processes call METI, each with a token cache of its own."""
CACHE_FOLDER = "airflow-provider-meti"  # the token cache's folder under XDG_CACHE_HOME


@dataclass
class AirflowStack:
    home: Path
    bin_dir: Path
    env: dict[str, str]
    api_url: str
    port: int
    groups: ProcessGroups
    cache_root: Path

    def airflow(self) -> str:
        return str(self.bin_dir / "airflow")

    def migrate(self) -> None:
        log = self.groups.log_dir / "db-migrate.log"
        self.groups.log_dir.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            result = subprocess.run(
                [self.airflow(), "db", "migrate"], env=self.env, stdout=out, stderr=out
            )
        if result.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed; see {log}")

    def cache_home(self, name: str) -> Path:
        """The ``XDG_CACHE_HOME`` of component ``name``."""
        return self.cache_root / name

    def token_cache(self, host: str) -> Path:
        """The METI token cache folder of ``host`` (a worker or the triggerer)."""
        return self.cache_home(host) / CACHE_FOLDER

    def _env(self, name: str) -> dict[str, str]:
        return {**self.env, "XDG_CACHE_HOME": str(self.cache_home(name))}

    def start(self) -> None:
        for name, args in COMPONENTS.items():
            argv = [self.airflow(), *(arg.format(port=self.port) for arg in args)]
            self.groups.start(name, argv, self._env(name))
        self.start_workers()

    def start_workers(self) -> None:
        for index, worker in enumerate(WORKERS, start=1):
            argv = [self.airflow(), "celery", "worker", "--celery-hostname", f"w{index}@%h",
                    "--concurrency", str(WORKER_SLOTS), "--skip-serve-logs",
                    "--pid", str(self.home / f"{worker}.pid")]  # fmt: skip
            self.groups.start(worker, argv, {**self._env(worker), "METI_TOPOLOGY_HOST": worker})

    def wait_until_ready(self, timeout: float = 180.0) -> None:
        def healthy() -> bool:
            self.check_running()
            health = requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
            return all(health[c]["status"] == "healthy" for c in HEALTHY_COMPONENTS)

        wait_for(healthy, "the API server, scheduler, triggerer and DAG processor", timeout)
        wait_for(lambda: len(self.ready_workers()) == len(WORKERS), "both workers", 120)

    def ready_workers(self) -> list[str]:
        """The workers ready to take tasks."""
        return self.celery_workers()

    def check_running(self, excuse: Callable[[list[str]], list[str]] | None = None) -> None:
        """Raise ``ComponentExited`` for a component that has exited.

        :param excuse: given the exited components first, returns those it did not handle
            (a service manager starting some again); one look, so none exits in between
        """
        gone = self.groups.exited()
        if gone and excuse is not None:
            gone = excuse(gone)
        if gone:
            tails = "\n".join(self.groups.tail(name) for name in gone)
            raise ComponentExited(f"{', '.join(gone)} exited early\n{tails}")

    def celery_workers(self) -> list[str]:
        """Celery node names answering a ping through the broker."""
        from celery import Celery

        app = Celery(broker=self.env["AIRFLOW__CELERY__BROKER_URL"])
        try:
            replies = app.control.ping(timeout=2.0) or []
        finally:
            app.close()
        return sorted(name for reply in replies for name in reply)

    # --- REST API --------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        response = requests.get(f"{self.api_url}/auth/token", timeout=10)
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = requests.request(
            method, f"{self.api_url}/api/v2{path}", json=body, headers=self._headers(), timeout=30
        )
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            try:
                return dict(self.api("GET", f"/dags/{dag_id}/details"))
            except RuntimeError:
                time.sleep(1)
        raise RuntimeError(f"{dag_id} was not parsed within {timeout:.0f} s")


def build_stack(
    root: Path,
    home: Path,
    bin_dir: Path,
    groups: ProcessGroups,
    *,
    database_url: str,
    result_backend: str,
    broker_url: str,
    connections: dict[str, dict[str, Any]],
    cache_root: Path,
) -> AirflowStack:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    from cryptography.fernet import Fernet

    env = {
        **inherited,
        "AIRFLOW_HOME": str(home),
        "PYTHONPATH": str(root / "scripts" / "topology" / "pythonpath"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "topology_hostname.hostname",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_SLOTS),
        # The run kills a worker: its tasks are found dead in seconds, not the default 300 s.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        # A task the killed worker had taken from Redis but not started would otherwise wait
        # for the broker's visibility timeout (6 h) before anyone ran it.
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
        # ... and kills the triggerer: a new one takes its triggers over 15 s on, not 30 s.
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": api_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "XDG_CACHE_HOME": str(cache_root / "airflow-cli"),  # `airflow db migrate` and the like
        **{f"AIRFLOW_CONN_{name.upper()}": json.dumps(conn) for name, conn in connections.items()},
    }
    home.mkdir(parents=True, exist_ok=True)
    cache_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return AirflowStack(home, bin_dir, env, api_url, port, groups, cache_root)
