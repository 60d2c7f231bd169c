"""The servers under Airflow: PostgreSQL, Redis, moto's S3 server and the METI emulator.

Each listens on 127.0.0.1 only, on a free port, with its files under the run's directory.
PostgreSQL runs as the ``postgres`` OS user (``initdb`` refuses root) in a throwaway data
directory; its unix socket lives in that directory, so only that user and root can reach it.
"""

from __future__ import annotations

import glob
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processes import ComponentExited, ProcessGroups

from airflow_provider_meti.emulator import MetiEmulator

PG_USER = "postgres"
SOCKET_PATH_LIMIT = 100  # a unix socket path must fit in 108 bytes
# Server errors, throttling, and connections dropped before and after a create was stored.
FAULTS = ("500", "503", "429", "drop", "stored_then_drop")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except ComponentExited:
            raise
        except Exception:  # not up yet, whatever the error
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


def postgres_bin(name: str) -> str:
    """The newest installed PostgreSQL's ``name`` (initdb, postgres, pg_dump)."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[4]),
    )
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found under /usr/lib/postgresql")
    return found[-1]


@dataclass
class Postgres:
    """A PostgreSQL cluster of its own: database ``airflow`` owned by role ``airflow``."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def socket_dir(self) -> Path:
        if len(str(self.data_dir)) < SOCKET_PATH_LIMIT - 20:
            return self.data_dir
        return Path("/tmp") / f"meti-topology-pg-{self.port}"

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://airflow:{self.password}@127.0.0.1:{self.port}/airflow"

    @property
    def celery_result_backend(self) -> str:
        return f"db+postgresql+psycopg2://airflow:{self.password}@127.0.0.1:{self.port}/airflow"

    def dsn(self) -> str:
        return (
            f"host=127.0.0.1 port={self.port} dbname=airflow user=airflow password={self.password}"
        )

    def start(self, groups: ProcessGroups) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data_dir, PG_USER, PG_USER)
        shutil.chown(self.socket_dir, PG_USER, PG_USER)
        subprocess.run(
            [postgres_bin("initdb"), "-D", str(self.data_dir), "-U", PG_USER,
             "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8"],
            user=PG_USER, check=True, capture_output=True,
        )  # fmt: skip
        groups.start(
            "postgres",
            [postgres_bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.socket_dir}",
             "-c", "max_connections=200", "-c", "fsync=off", "-c", "full_page_writes=off"],
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            user=PG_USER,
            stop_signal=signal.SIGINT,  # PostgreSQL's "fast" shutdown
        )  # fmt: skip
        wait_for(lambda: self.psql("SELECT 1").strip() == "1", "PostgreSQL")
        self.psql(f"CREATE ROLE airflow LOGIN PASSWORD '{self.password}'")
        self.psql("CREATE DATABASE airflow OWNER airflow")

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            ["psql", "-h", str(self.socket_dir), "-p", str(self.port), "-U", PG_USER,
             "-d", database, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return result.stdout

    def dump(self, target: Path) -> Path:
        """``pg_dump`` of the whole Airflow database, as plain SQL."""
        with target.open("wb") as out:
            subprocess.run(
                [postgres_bin("pg_dump"), "-h", str(self.socket_dir), "-p", str(self.port),
                 "-U", PG_USER, "--no-owner", "airflow"],
                stdout=out, check=True,
            )  # fmt: skip
        return target

    def remove_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.socket_dir != self.data_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


@dataclass
class Redis:
    work_dir: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, groups: ProcessGroups) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        groups.start(
            "redis",
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.work_dir), "--daemonize", "no"],
            env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        wait_for(lambda: _redis_ping(self.port), "Redis")


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(16).startswith(b"+PONG")


@dataclass
class MotoS3:
    """moto's server standing in for S3, with one bucket for the extracts."""

    bucket: str
    port: int = field(default_factory=free_port)
    access_key: str = "topology-access-key"
    secret_key: str = field(default_factory=lambda: "topology-" + secrets.token_hex(8))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, groups: ProcessGroups, moto_server: str, env: dict[str, str]) -> None:
        groups.start("moto-s3", [moto_server, "-H", "127.0.0.1", "-p", str(self.port)], env=env)
        wait_for(lambda: self.client().list_buckets() is not None, "moto's S3 server")
        self.client().create_bucket(Bucket=self.bucket)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def airflow_connection(self) -> dict[str, Any]:
        """``aws_default`` for Airflow: moto's URL as the endpoint, dummy keys."""
        return {
            "conn_type": "aws",
            "login": self.access_key,
            "password": self.secret_key,
            "extra": {"endpoint_url": self.url, "region_name": "us-east-1"},
        }

    def objects(self) -> dict[str, bytes]:
        s3 = self.client()
        listing = s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {
            item["Key"]: s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            for item in listing
        }


@dataclass
class Emulator:
    """The METI emulator, in this process, recording every token it issues.

    It runs here rather than as a process of its own so the secret checks can read the issued
    tokens directly, never over HTTP (the emulator has no route that lists them).
    """

    email: str
    password: str
    fault_rate: float
    seed: int
    issued_tokens: list[str] = field(default_factory=list)
    # id -> (created_at as METI wrote it, epoch seconds when withdrawn)
    withdrawn: dict[str, tuple[str, float]] = field(default_factory=dict)
    server: MetiEmulator | None = None

    def start(self) -> MetiEmulator:
        server = MetiEmulator(
            port=free_port(),
            users={self.email: self.password},
            seed=self.seed,
            documented_only=True,
        )
        issue = server.state.tokens.issue

        def recording_issue(*args: Any, **kwargs: Any) -> str:
            token = issue(*args, **kwargs)
            self.issued_tokens.append(token)
            return token

        server.state.tokens.issue = recording_issue
        server.set_faults(self.fault_rate, list(FAULTS), seed=self.seed)
        self.server = server.start()
        return server

    def withdraw(self, source: dict[str, Any]) -> None:
        """Delete a source, as the other grower would through METI's request form."""
        assert self.server is not None
        self.server.ledger.delete(source["id"])
        self.withdrawn[source["id"]] = (source["created_at"], time.time())

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
