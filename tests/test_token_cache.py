"""The host's token cache on its own: one token for every process of a user, kept safe.

Each ``HostTokenCache`` object here stands for one process (the state a process keeps is
in the object; what processes share is the folder). The cases with real processes and the
emulator are in ``test_token_cache_processes.py``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airflow_provider_meti import token_cache
from airflow_provider_meti.auth import CachedToken, IssuedToken
from airflow_provider_meti.token_cache import FORMAT_VERSION, HostTokenCache

IDENTITY = ("v1", "https://meti.example/token", "ops@example.com", "", "")
SECRET = "s3cret-password-for-the-cache"


class Endpoint:
    """A token endpoint that counts its requests and hands out numbered tokens."""

    def __init__(self, prefix: str = "token", expires_in: float = 3600.0) -> None:
        self.prefix = prefix
        self.expires_in = expires_in
        self.requests = 0

    def fetch(self) -> IssuedToken:
        self.requests += 1
        return IssuedToken(f"{self.prefix}-{self.requests}", self.expires_in)

    async def afetch(self) -> IssuedToken:
        return self.fetch()


class Clock:
    """A wall clock the test sets."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "airflow-provider-meti"


def process_cache(
    folder: Path,
    *,
    secret: str = SECRET,
    clock: Callable[[], float] | None = None,
    boot: Callable[[], tuple[str, float] | None] | None = None,
) -> HostTokenCache:
    """The cache as one more process of the host would open it; with a test's ``clock``
    and no ``boot`` clock, on the wall clock alone (as where there is no boot clock)."""
    if clock is None:
        return HostTokenCache(folder, IDENTITY, secret)
    return HostTokenCache(
        folder, IDENTITY, secret, wall_clock=clock, boot_clock=boot or (lambda: None)
    )


def token_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.token"))


def test_a_second_process_takes_the_token_the_first_one_stored(folder):
    endpoint = Endpoint()
    first = process_cache(folder).obtain(endpoint.fetch, wait=5)
    second = process_cache(folder).obtain(endpoint.fetch, wait=5)

    assert endpoint.requests == 1
    assert second.value == first.value == "token-1"
    assert second.lifetime == 3600.0  # the margin keeps being capped by the whole lifetime


def test_the_folder_is_0700_and_the_files_0600(folder):
    process_cache(folder).obtain(Endpoint().fetch, wait=5)

    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    files = list(folder.iterdir())
    assert files, "the cache wrote nothing"
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path.name


def test_the_file_name_and_content_reveal_neither_identity_nor_token(folder):
    endpoint = Endpoint(prefix="bearer-value-7f3a")
    process_cache(folder).obtain(endpoint.fetch, wait=5)

    [path] = token_files(folder)
    raw = path.read_bytes()
    for visible in (*IDENTITY[1:3], SECRET, "bearer-value-7f3a-1", "meti.example", "ops"):
        assert visible not in path.name
        assert visible.encode() not in raw


def test_another_secret_for_the_same_login_gets_a_token_of_its_own(folder):
    endpoint, other = Endpoint("right"), Endpoint("wrong")
    process_cache(folder, secret=SECRET).obtain(endpoint.fetch, wait=5)
    taken = process_cache(folder, secret="another-password").obtain(other.fetch, wait=5)

    assert taken.value == "wrong-1"
    assert len(token_files(folder)) == 2  # its own file, not the first one's
    # And neither reads the other's entry: the right secret still finds its own token.
    assert process_cache(folder).obtain(endpoint.fetch, wait=5).value == "right-1"
    assert endpoint.requests == 1


def test_an_entry_sealed_with_another_secret_does_not_open(folder):
    """A file planted under this connection's name by a holder of another secret (or
    copied from another connection) is ignored and replaced, never used."""
    process_cache(folder, secret="another-password").obtain(Endpoint("foreign").fetch, wait=5)
    [foreign] = token_files(folder)
    mine = process_cache(folder)
    foreign.rename(mine.path)

    endpoint = Endpoint("mine")
    assert mine.obtain(endpoint.fetch, wait=5).value == "mine-1"
    assert process_cache(folder).obtain(Endpoint("never").fetch, wait=5).value == "mine-1"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda raw: raw[: len(raw) // 2], id="truncated"),
        pytest.param(lambda raw: b"", id="empty"),
        pytest.param(lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), id="one-bit-flipped"),
        pytest.param(lambda raw: b"not a token cache at all\n", id="foreign"),
    ],
)
def test_a_damaged_entry_is_ignored_and_replaced(folder, damage):
    process_cache(folder).obtain(Endpoint("old").fetch, wait=5)
    [path] = token_files(folder)
    path.write_bytes(damage(path.read_bytes()))

    endpoint = Endpoint("new")
    assert process_cache(folder).obtain(endpoint.fetch, wait=5).value == "new-1"
    assert process_cache(folder).obtain(endpoint.fetch, wait=5).value == "new-1"
    assert endpoint.requests == 1, "the damaged entry was not replaced"


def test_an_entry_of_a_newer_format_is_ignored_and_replaced(folder):
    process_cache(folder).obtain(Endpoint("old").fetch, wait=5)
    [path] = token_files(folder)
    raw = bytearray(path.read_bytes())
    version_at = len(b"METI-TOKEN-CACHE")  # the format's version follows its magic bytes
    assert raw[version_at] == FORMAT_VERSION
    raw[version_at] = FORMAT_VERSION + 1
    path.write_bytes(bytes(raw))

    endpoint = Endpoint("new")
    assert process_cache(folder).obtain(endpoint.fetch, wait=5).value == "new-1"
    assert process_cache(folder).obtain(endpoint.fetch, wait=5).value == "new-1"
    assert endpoint.requests == 1


def refused_every_time(cache: HostTokenCache, caplog) -> tuple[Endpoint, list[str]]:
    endpoint = Endpoint()
    with caplog.at_level(logging.WARNING, logger=token_cache.__name__):
        for _ in range(3):
            cache.obtain(endpoint.fetch, wait=5)
    warnings = [r.getMessage() for r in caplog.records if r.name == token_cache.__name__]
    return endpoint, warnings


def test_a_symlinked_folder_is_refused_once_in_the_log(tmp_path, caplog):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    link = tmp_path / "airflow-provider-meti"
    link.symlink_to(real)

    cache = process_cache(link)
    endpoint, warnings = refused_every_time(cache, caplog)

    assert endpoint.requests == 3, "tokens came from a symlinked folder"
    assert list(real.iterdir()) == []
    assert len(warnings) == 1 and "symlink" in warnings[0]


def test_a_group_writable_folder_is_refused(folder, caplog):
    folder.mkdir(parents=True, mode=0o700)
    folder.chmod(0o770)

    endpoint, warnings = refused_every_time(process_cache(folder), caplog)

    assert endpoint.requests == 3
    assert len(warnings) == 1 and "writable by group or others" in warnings[0]


def test_a_symlinked_entry_is_refused(folder, tmp_path, caplog):
    target = tmp_path / "planted"
    target.write_bytes(b"")
    folder.mkdir(parents=True, mode=0o700)
    cache = process_cache(folder)
    cache.path.symlink_to(target)

    endpoint, warnings = refused_every_time(cache, caplog)

    assert endpoint.requests == 3
    assert target.read_bytes() == b"", "the cache wrote through a symlink"
    assert len(warnings) == 1 and "the token file is a symlink" in warnings[0]
    assert cache.path.stem not in warnings[0], "the name, keyed by the secret, was logged"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
@pytest.mark.parametrize("owned_by_other", ["folder", "entry"])
def test_a_folder_or_entry_of_another_user_is_refused(folder, caplog, owned_by_other):
    process_cache(folder).obtain(Endpoint("theirs").fetch, wait=5)
    os.chown(folder if owned_by_other == "folder" else process_cache(folder).path, 4242, 4242)

    endpoint, warnings = refused_every_time(process_cache(folder), caplog)

    assert endpoint.requests == 3, "a token was taken from another user's cache"
    assert len(warnings) == 1 and "belongs to another user (uid 4242)" in warnings[0]


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of the test's own (needs the right to mount), unmounted afterwards."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(mount_point: Path) -> None:
    try:
        with open(mount_point / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
    except OSError as error:
        assert error.errno == errno.ENOSPC


def test_a_full_disk_means_tokens_of_its_own_with_one_warning(tiny_filesystem, caplog):
    folder = tiny_filesystem / "airflow-provider-meti"
    folder.mkdir(mode=0o700)
    fill(tiny_filesystem)

    endpoint, warnings = refused_every_time(process_cache(folder), caplog)

    # One token request per renewal, as without a cache: a failed write costs no second one.
    assert endpoint.requests == 3
    assert len(warnings) == 1 and "No space left on device" in warnings[0]
    assert token_files(folder) == []
    assert not [p for p in folder.iterdir() if p.suffix == ".tmp"], "a temporary file was left"


def test_a_read_only_folder_means_tokens_of_its_own_with_one_warning(tiny_filesystem, caplog):
    folder = tiny_filesystem / "airflow-provider-meti"
    folder.mkdir(mode=0o700)
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_filesystem)], check=True)

    endpoint, warnings = refused_every_time(process_cache(folder), caplog)

    assert endpoint.requests == 3
    assert len(warnings) == 1 and "Read-only file system" in warnings[0]


def test_a_folder_that_cannot_be_created_means_tokens_of_its_own(tiny_filesystem, caplog):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_filesystem)], check=True)

    cache = process_cache(tiny_filesystem / "airflow-provider-meti")
    endpoint, warnings = refused_every_time(cache, caplog)

    assert endpoint.requests == 3
    assert len(warnings) == 1 and "cannot create the folder" in warnings[0]


def test_after_a_401_the_process_renews_only_if_the_file_still_holds_the_refused_token(folder):
    endpoint = Endpoint()
    first, second = process_cache(folder), process_cache(folder)
    refused = first.obtain(endpoint.fetch, wait=5).value
    assert second.obtain(endpoint.fetch, wait=5).value == refused

    first.refuse(refused)  # METI answered 401 to the first process
    renewed = first.obtain(endpoint.fetch, wait=5).value
    second.refuse(refused)  # and then to the second, which finds the newer token
    taken = second.obtain(endpoint.fetch, wait=5).value

    assert renewed == taken == "token-2"
    assert endpoint.requests == 2


def test_a_clock_set_back_cannot_stretch_a_token_beyond_its_expires_in(folder):
    clock = Clock()
    process_cache(folder, clock=clock).obtain(Endpoint("early", expires_in=600).fetch, wait=5)

    clock.now -= 3600  # the host's clock jumps back an hour
    endpoint = Endpoint("late")
    taken = process_cache(folder, clock=clock).obtain(endpoint.fetch, wait=5)

    assert endpoint.requests == 1 and taken.value == "late-1"
    assert taken.lifetime is None  # fetched, not the old one read with 4,200 s "left"


def test_a_token_is_taken_with_what_is_left_of_it_and_renewed_within_the_margin(folder):
    clock = Clock()
    process_cache(folder, clock=clock).obtain(Endpoint("kept", expires_in=3600).fetch, wait=5)

    clock.now += 3000
    taken = process_cache(folder, clock=clock).obtain(Endpoint("unused").fetch, wait=5)
    assert (taken.value, taken.expires_in, taken.lifetime) == ("kept-1", 600, 3600)
    # The in-process rule renews it a margin (60 s) before it expires, as a fetched one.
    assert CachedToken.of(taken, requested_at=0.0, margin=60).renew_at == 540

    clock.now += 550  # 50 s left: within the renewal margin, so not taken
    endpoint = Endpoint("renewed")
    assert process_cache(folder, clock=clock).obtain(endpoint.fetch, wait=5).value == "renewed-1"


def test_a_process_waiting_for_the_lock_reads_the_token_the_holder_fetched(folder):
    holder_fetching, release = threading.Event(), threading.Event()
    endpoint = Endpoint()

    def slow_fetch() -> IssuedToken:
        holder_fetching.set()
        release.wait(30)
        return endpoint.fetch()

    waiting = threading.Event()

    def pause(seconds: float) -> None:
        waiting.set()  # the lock was busy: this process waits for it
        release.wait(seconds)

    results: dict[str, str] = {}
    holder = threading.Thread(
        target=lambda: results.update(holder=process_cache(folder).obtain(slow_fetch, wait=5).value)
    )
    holder.start()
    try:
        assert holder_fetching.wait(30)
        waiter = threading.Thread(
            target=lambda: results.update(
                waiter=process_cache(folder).obtain(endpoint.fetch, wait=30, pause=pause).value
            )
        )
        waiter.start()
        assert waiting.wait(30), "the second process did not wait for the lock"
        release.set()
        waiter.join(30)
    finally:
        release.set()
        holder.join(30)

    assert results == {"holder": "token-1", "waiter": "token-1"}
    assert endpoint.requests == 1


def test_a_process_whose_wait_runs_out_fetches_its_own_and_leaves_the_file_alone(folder):
    holder_fetching, release = threading.Event(), threading.Event()
    endpoint = Endpoint()

    def slow_fetch() -> IssuedToken:
        holder_fetching.set()
        release.wait(30)
        return IssuedToken("holder-token", 3600)

    holder = threading.Thread(target=lambda: process_cache(folder).obtain(slow_fetch, wait=5))
    holder.start()
    try:
        assert holder_fetching.wait(30)
        impatient = process_cache(folder).obtain(endpoint.fetch, wait=0)
    finally:
        release.set()
        holder.join(30)

    assert impatient.value == "token-1"
    assert process_cache(folder).obtain(Endpoint("never").fetch, wait=5).value == "holder-token"


LOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def start_lock_holder(lock_path: Path) -> subprocess.Popen[str]:
    """Another process of the host that holds the lock at ``lock_path`` until it is killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(lock_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    except BaseException:
        holder.kill()
        holder.wait(30)
        raise
    return holder


def test_a_process_killed_while_holding_the_lock_releases_it(folder):
    cache = process_cache(folder)
    folder.mkdir(parents=True, mode=0o700)
    lock_path = cache.path.with_suffix(".lock")
    holder = start_lock_holder(lock_path)
    try:
        # While it holds the lock, a process that cannot wait keeps its token to itself...
        cache.obtain(Endpoint("while-held").fetch, wait=0)
        assert token_files(folder) == []
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait(30)
        # ...and once the kernel released the lock with the dead process, the next one
        # takes the lock and stores its token for the others.
        stored = process_cache(folder).obtain(Endpoint("after").fetch, wait=30)
    finally:
        holder.kill()
        holder.wait(30)

    assert stored.value == "after-1"
    assert process_cache(folder).obtain(Endpoint("never").fetch, wait=5).value == "after-1"


def test_the_asyncio_path_shares_the_sync_path_s_token(folder):
    endpoint = Endpoint()
    process_cache(folder).obtain(endpoint.fetch, wait=5)

    taken = asyncio.run(process_cache(folder).aobtain(endpoint.afetch, wait=5))

    assert taken.value == "token-1" and endpoint.requests == 1


def test_waiting_for_the_lock_does_not_block_the_event_loop(folder):
    """While another process holds the lock, the loop keeps running other coroutines."""
    cache = process_cache(folder)
    folder.mkdir(parents=True, mode=0o700)
    lock_path = cache.path.with_suffix(".lock")
    holder = start_lock_holder(lock_path)

    async def main() -> tuple[int, str]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        waiting = asyncio.create_task(cache.aobtain(Endpoint("after").afetch, wait=60))
        while ticks < 50:  # the loop runs while the cache waits for the lock
            await asyncio.sleep(0)
        assert not waiting.done()
        holder.kill()
        taken = await waiting
        ticking.cancel()
        return ticks, taken.value

    try:
        ticks, value = asyncio.run(main())
    finally:
        holder.kill()
        holder.wait(30)

    assert ticks >= 50 and value == "after-1"
    assert process_cache(folder).obtain(Endpoint("never").fetch, wait=5).value == "after-1"


def test_the_cache_holds_no_password_or_client_secret(folder):
    process_cache(folder).obtain(Endpoint().fetch, wait=5)
    for path in folder.iterdir():
        assert SECRET.encode() not in path.read_bytes()
        assert SECRET not in path.name


def test_a_folder_path_through_a_file_means_tokens_of_its_own(tmp_path, caplog):
    """Any failure of the file system (here ENOTDIR on the first lookup) is no reason for a
    task to fail: the process asks for tokens of its own."""
    (tmp_path / "a-file").write_text("")

    cache = process_cache(tmp_path / "a-file" / "airflow-provider-meti")
    endpoint, warnings = refused_every_time(cache, caplog)

    assert endpoint.requests == 3
    assert len(warnings) == 1 and "Not a directory" in warnings[0]


@pytest.mark.parametrize(
    ("xdg_cache_home", "expected"),
    [
        ("/srv/cache", "/srv/cache/airflow-provider-meti"),
        ("relative/dir", "~/.cache/airflow-provider-meti"),  # the XDG spec: ignore it
        ("", "~/.cache/airflow-provider-meti"),
    ],
)
def test_the_default_folder_follows_xdg_cache_home(monkeypatch, xdg_cache_home, expected):
    monkeypatch.setenv("XDG_CACHE_HOME", xdg_cache_home)
    assert token_cache.default_directory() == Path(os.path.expanduser(expected))


def test_the_connection_extras_choose_the_folder_or_turn_the_cache_off(tmp_path):
    from types import SimpleNamespace

    from airflow_provider_meti.connection import settings_from_connection
    from airflow_provider_meti.exceptions import MetiConfigError

    def parts(**extras):
        connection = SimpleNamespace(
            host="http://127.0.0.1:1", port=None, schema=None, login="a", password="b"
        )
        return settings_from_connection(connection, extras=extras)

    assert parts(token_cache_dir=str(tmp_path)).host_token_cache().directory == tmp_path
    assert parts(token_cache="false").host_token_cache() is None
    with pytest.raises(MetiConfigError, match="'token_cache_dir' must be an absolute path"):
        parts(token_cache_dir="tokens")
    with pytest.raises(MetiConfigError, match="'token_cache' must be true or false"):
        parts(token_cache="sometimes")
    with pytest.raises(MetiConfigError, match="'token_cache_dir' holds a NUL byte"):
        parts(token_cache_dir="/tmp/x\0y")


class BootClock:
    """The host's boot clock, as the test sets it."""

    def __init__(self, boot_id: str = "boot-1", seconds: float = 100.0) -> None:
        self.boot_id, self.seconds = boot_id, seconds

    def __call__(self) -> tuple[str, float]:
        return self.boot_id, self.seconds


def test_on_the_boot_clock_a_wall_clock_set_back_cannot_serve_an_expired_token(folder):
    wall, boot = Clock(), BootClock()
    process_cache(folder, clock=wall, boot=boot).obtain(Endpoint("old", 600).fetch, wait=5)

    boot.seconds += 700  # expired 100 s ago...
    wall.now -= 1000  # ...and the wall clock was set back past its issue time + expires_in
    endpoint = Endpoint("new")
    assert process_cache(folder, clock=wall, boot=boot).obtain(endpoint.fetch, wait=5).value == (
        "new-1"
    )


def test_on_the_boot_clock_a_wall_clock_jump_does_not_cost_a_valid_token(folder):
    wall, boot = Clock(), BootClock()
    process_cache(folder, clock=wall, boot=boot).obtain(Endpoint("kept", 600).fetch, wait=5)

    boot.seconds += 100
    wall.now -= 3600  # the wall clock jumps back an hour; the token is still 100 s old
    taken = process_cache(folder, clock=wall, boot=boot).obtain(Endpoint("never").fetch, wait=5)
    assert (taken.value, taken.expires_in) == ("kept-1", 500)


def test_after_a_reboot_the_wall_clock_decides(folder):
    wall, boot = Clock(), BootClock()
    process_cache(folder, clock=wall, boot=boot).obtain(Endpoint("kept", 600).fetch, wait=5)

    rebooted = BootClock("boot-2", seconds=5.0)
    wall.now += 100
    taken = process_cache(folder, clock=wall, boot=rebooted).obtain(Endpoint("x").fetch, wait=5)
    assert (taken.value, taken.expires_in) == ("kept-1", 500)
    wall.now += 500
    assert (
        process_cache(folder, clock=wall, boot=rebooted)
        .obtain(Endpoint("renewed").fetch, wait=5)
        .value
        == "renewed-1"
    )


def test_missing_parent_folders_are_created_0700(tmp_path):
    folder = tmp_path / "home" / ".cache" / "airflow-provider-meti"
    process_cache(folder).obtain(Endpoint().fetch, wait=5)

    for path in (tmp_path / "home", tmp_path / "home" / ".cache", folder):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path


def test_a_token_file_readable_by_others_is_refused(folder, caplog):
    process_cache(folder).obtain(Endpoint().fetch, wait=5)
    process_cache(folder).path.chmod(0o644)

    endpoint, warnings = refused_every_time(process_cache(folder), caplog)

    assert endpoint.requests == 3
    assert len(warnings) == 1 and "the token file is readable by group or others" in warnings[0]


def test_a_failing_lock_means_tokens_of_its_own(folder, caplog, monkeypatch):
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)  # as on a network file system without locks
    endpoint, warnings = refused_every_time(process_cache(folder), caplog)

    assert endpoint.requests == 3
    assert len(warnings) == 1 and "cannot lock: No locks available" in warnings[0]


def test_each_reason_is_warned_once_per_process_not_once_per_client(tmp_path, caplog):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    link = tmp_path / "airflow-provider-meti"
    link.symlink_to(real)

    with caplog.at_level(logging.WARNING, logger=token_cache.__name__):
        for _ in range(3):  # three hooks' clients of one process
            process_cache(link).obtain(Endpoint().fetch, wait=5)

    assert len([r for r in caplog.records if r.name == token_cache.__name__]) == 1


def test_a_child_forked_while_the_lock_was_held_does_not_keep_it(folder):
    children: list[int] = []

    def fetch_and_fork() -> IssuedToken:
        pid = os.fork()
        if pid == 0:  # the child: lives on with a copy of the lock's descriptor
            time.sleep(60)
            os._exit(0)
        children.append(pid)
        return IssuedToken("parent-token", 3600)

    try:
        process_cache(folder).obtain(fetch_and_fork, wait=5)
        lock = os.open(process_cache(folder).path.with_suffix(".lock"), os.O_RDWR)
        try:
            assert token_cache._try_lock(lock), "the forked child still holds the host lock"
        finally:
            os.close(lock)
    finally:
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
