"""The servers under Airflow: PostgreSQL, Redis, moto's S3 server and the METI emulator.

Each listens on 127.0.0.1 only, on a free port. PostgreSQL runs as the ``postgres`` OS user
when this is root (``initdb`` refuses root), else as the invoking user, in a throwaway folder
under the system's temporary directory that holds its data and its unix socket (0700: only
that user and root can reach it); the other servers keep their files under the run's folder.
When a server tool fails, the error quotes what the tool printed.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from processes import ComponentExited, Managed, ProcessGroups

from airflow_provider_meti.emulator import MetiEmulator
from airflow_provider_meti.emulator.faults import Fault
from airflow_provider_meti.emulator.routes import Request, Response
from airflow_provider_meti.emulator.server import MetiRequestHandler

PG_USER = "postgres"
# Server errors, throttling, and connections dropped before and after a create was stored.
FAULTS = ("500", "503", "429", "drop", "stored_then_drop")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except ComponentExited:
            raise
        except Exception as error:  # not up yet, whatever the error
            last_error = error
        time.sleep(0.3)
    said = f"; last error: {last_error}" if last_error else ""
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s{said}")


def wait_for_server(
    groups: ProcessGroups, server: Managed, condition: Any, what: str, timeout: float = 60.0
) -> None:
    """``wait_for``, failing at once with the server's own log when its process exits."""

    def up() -> bool:
        if server.process.poll() is not None:
            raise ComponentExited(
                f"{what} exited with code {server.process.returncode} before it was up\n"
                + groups.tail(server.name)
            )
        return bool(condition())

    wait_for(up, what, timeout)


def postgres_bin(name: str) -> str:
    """The newest installed PostgreSQL's ``name`` (initdb, postgres, pg_dump)."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[4]),
    )
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found under /usr/lib/postgresql")
    return found[-1]


class ServerToolError(RuntimeError):
    """A server tool (initdb, psql, pg_dump, a server) failed; the message holds its own words."""


def run_tool(argv: list[str], **options: Any) -> bytes:
    """Run a server tool and return its output; on failure raise with what it printed."""
    result = subprocess.run(argv, capture_output=True, **options)
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip()).decode(errors="replace")
        raise ServerToolError(
            f"{Path(argv[0]).name} failed (exit {result.returncode}): "
            + (said[-2000:] or "(it printed nothing)")
        )
    return result.stdout


def postgres_os_user() -> str | None:
    """The OS user to run PostgreSQL as: ``postgres`` when this is root (initdb refuses
    root); None otherwise, as the invoking user can own the cluster itself."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        raise ServerToolError(
            f"topology: running as root, but there is no '{PG_USER}' OS user to run PostgreSQL "
            "(initdb refuses root): install Debian's postgresql package, which creates it, "
            "or run scripts/topology.sh as an ordinary user"
        ) from None
    return PG_USER


@dataclass
class Postgres:
    """A PostgreSQL cluster of its own: database ``airflow`` owned by role ``airflow``.

    Its data directory and socket live in a private folder under the system's temporary
    directory, owned by the OS user that runs PostgreSQL: the checkout may sit in a folder
    that user cannot enter (a ``mktemp -d`` folder, root's home).
    """

    temp_dirs: Path
    """A file listing the run's temporary folders, for ``scripts/topology.sh`` to remove
    should this process die before it can."""
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    base_dir: Path | None = None

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir

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
        user = postgres_os_user()
        self._make_base_dir(user)
        run_tool(
            [postgres_bin("initdb"), "-D", str(self.data_dir), "-U", PG_USER,
             "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8"],
            user=user, cwd=self.socket_dir,
        )  # fmt: skip
        server = groups.start(
            "postgres",
            [postgres_bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.socket_dir}",
             "-c", "max_connections=200", "-c", "fsync=off", "-c", "full_page_writes=off"],
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            user=user,
            stop_signal=signal.SIGINT,  # PostgreSQL's "fast" shutdown
            cwd=self.socket_dir,
        )  # fmt: skip
        self.wait_until_up(groups, server)
        self.psql(f"CREATE ROLE airflow LOGIN PASSWORD '{self.password}'")
        self.psql("CREATE DATABASE airflow OWNER airflow")

    def wait_until_up(self, groups: ProcessGroups, server: Managed | None = None) -> None:
        """Wait until the server (by default the running one, as after a restart) answers."""
        server = server or groups.running("postgres")
        wait_for_server(groups, server, lambda: self.psql("SELECT 1").strip() == "1", "PostgreSQL")

    def _make_base_dir(self, user: str | None) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="meti-topology-pg-"))  # 0700
        with self.temp_dirs.open("a") as listing:
            listing.write(f"{self.base_dir}\n")
        if user is not None:
            shutil.chown(self.base_dir, user, user)

    def psql(self, sql: str, database: str = "postgres") -> str:
        return run_tool(
            ["psql", "-h", str(self.socket_dir), "-p", str(self.port), "-U", PG_USER,
             "-d", database, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
        ).decode()  # fmt: skip

    def dump(self, target: Path) -> Path:
        """``pg_dump`` of the whole Airflow database, as plain SQL."""
        target.write_bytes(
            run_tool(
                [postgres_bin("pg_dump"), "-h", str(self.socket_dir), "-p", str(self.port),
                 "-U", PG_USER, "--no-owner", "airflow"],
            )
        )  # fmt: skip
        return target

    def remove_data(self) -> None:
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)


@dataclass
class Redis:
    """Redis as Celery's broker, with its append-only file on, as a broker whose restart
    must not lose the queued tasks is run."""

    work_dir: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, groups: ProcessGroups) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        server = groups.start(
            "redis",
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes", "--dir", str(self.work_dir), "--daemonize", "no"],
            env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        self.wait_until_up(groups, server)

    def wait_until_up(self, groups: ProcessGroups, server: Managed | None = None) -> None:
        """Wait until the server (by default the running one, as after a restart) answers."""
        server = server or groups.running("redis")
        wait_for_server(groups, server, lambda: _redis_ping(self.port), "Redis")


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


class RequestObserver(Protocol):
    """Told of every request the emulator serves, on the thread serving it.

    A request METI handled is told before its answer leaves (``status``; ``fault`` too when
    a ``stored_then_drop`` or ``latency`` fault then hangs up or delays it); a request a fault
    answered instead of METI is told with ``status`` None.
    """

    def served_request(
        self, client_port: int, request: Request, status: int | None, fault: str | None
    ) -> None: ...


def observed_handler(observer: RequestObserver) -> type[MetiRequestHandler]:
    """The emulator's request handler, telling ``observer`` of each request it serves."""

    class ObservedHandler(MetiRequestHandler):
        fault_kind: str | None = None
        routed = False

        def _route(self, request: Request) -> Response:
            response = super()._route(request)
            self.routed = True
            port = self.client_address[1]
            observer.served_request(port, request, response.status, self.fault_kind)
            return response

        def _serve_with_fault(self, request: Request, fault: Fault) -> None:
            self.fault_kind, self.routed = fault.kind, False
            try:
                super()._serve_with_fault(request, fault)
            finally:
                if not self.routed:
                    observer.served_request(self.client_address[1], request, None, fault.kind)
                self.fault_kind = None

    return ObservedHandler


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
    observer: RequestObserver | None = None

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
        if self.observer is not None:
            # MetiEmulator has no public hook on its requests; its server builds a handler of
            # this class for each connection, and none has connected yet.
            server._server.RequestHandlerClass = observed_handler(self.observer)  # type: ignore[union-attr]
        return server

    def withdraw(self, source: dict[str, Any]) -> None:
        """Delete a source, as the other grower would through METI's request form."""
        assert self.server is not None
        self.server.ledger.delete(source["id"])
        self.withdrawn[source["id"]] = (source["created_at"], time.time())

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
