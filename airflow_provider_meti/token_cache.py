"""HostTokenCache: one METI token per host, shared by every process of one OS user.

Every Airflow task runs in a process of its own; without this, each asks for a token of its
own (on v2, each an Auth0 machine-to-machine token counted against a monthly quota). The
cache keeps the connection's token in one file of a private folder on local disk:

- The folder is 0700 and the files 0600. A folder or file that is a symlink, belongs to
  another user or is group- or world-writable is refused (said once in the log), and the
  process keeps its token to itself, as without a cache.
- A master key is stretched from the secret with scrypt (once per cache object), so a copy
  of the folder is no fast test of password guesses. The file's name is an HMAC of the
  connection's identity (API, token URL, login, audience, scope) under it: it reveals
  nothing, and another secret for the same login finds another file. The name never
  reaches a log or an error.
- Its content, the token and when it was issued, is sealed with AES-GCM under a key derived
  from the master key (HKDF-SHA256): only a holder of the secret can read it or forge one.
- Every file is opened relative to the folder's own descriptor (``dir_fd``), checked once,
  so the folder cannot be swapped for a symlink between the check and the use.
- A renewal happens under an advisory lock (``fcntl.flock``) on a lock file beside it, so
  the processes of a host renew once; the lock is polled without blocking, within the
  caller's deadline, and the kernel releases it when its holder dies.

Anything unreadable (truncated, corrupt, foreign, from another format version) counts as
no token and is replaced atomically (temporary file + rename). The cache stores tokens
only, never a password or client secret.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_meti.auth import MAX_MARGIN_FRACTION, IssuedToken

log = logging.getLogger(__name__)

# What this process already warned about, so that each reason is said once per process, not
# once per hook or client.
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()

FORMAT_VERSION = 1
_MAGIC = b"METI-TOKEN-CACHE"
_HEADER = _MAGIC + bytes([FORMAT_VERSION])
_NONCE_BYTES = 12
_KEY_INFO = b"airflow-provider-meti token cache key v1"
_NAME_INFO = b"airflow-provider-meti token cache name v1"
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SUFFIX = ".token"
_LOCK_SUFFIX = ".lock"
_SCRYPT: dict[str, int] = {"n": 2**13, "r": 8, "p": 1, "dklen": 32}  # ~25 ms, 8 MiB
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_FIRST_POLL = 0.005
_MAX_POLL = 0.1
# Tokens refused by METI (401) that this process remembers, so it never takes them from the
# file again; a renewal replaces the file's token, so a handful is plenty.
_MAX_REFUSED = 8


def default_directory() -> Path:
    """``$XDG_CACHE_HOME/airflow-provider-meti``, or ``~/.cache/airflow-provider-meti``
    (also when ``XDG_CACHE_HOME`` is relative, which the XDG spec says to ignore)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "airflow-provider-meti"


def lock_wait(remaining: float, timeout: float) -> float:
    """How long a call waits for another process's renewal: one request's ``timeout`` at
    most, and never more than half of what is left of its budget, so that a stuck holder
    leaves it time to fetch a token of its own."""
    return max(0.0, min(timeout, remaining / 2))


def boot_clock() -> tuple[str, float] | None:
    """``(boot id, seconds since boot)``: a clock every process of the host shares and that
    cannot be set back; None where the system has none (then the wall clock is used)."""
    try:
        return _BOOT_ID.read_text().strip(), time.clock_gettime(time.CLOCK_BOOTTIME)
    except (OSError, AttributeError):
        return None


class CacheUnusable(Exception):
    """The folder or a file of the cache fails a safety check, or cannot be used."""


@dataclass(frozen=True)
class StoredToken:
    """A token as the file holds it: its value, when it was issued and for how long.

    The issue time is kept on the boot clock (with the boot's id) and on the wall clock: the
    boot clock decides within one boot, the wall clock only after a reboot.
    """

    value: str
    issued_at: float
    expires_in: float
    boot_id: str | None = None
    booted_for: float | None = None

    def remaining(self, now: float, boot: tuple[str, float] | None) -> float:
        """Seconds of validity left; never more than ``expires_in`` since the issue, and 0
        when the clock in use reads earlier than the issue time (a wall clock set back)."""
        if boot is not None and self.booted_for is not None and boot[0] == self.boot_id:
            issued, now = self.booted_for, boot[1]
        else:
            issued = self.issued_at
        if now < issued:
            return 0.0
        return max(0.0, issued + self.expires_in - now)


@dataclass
class _Opened:
    """The folder and the lock file, open; ``close`` releases the lock first (a forked
    child sharing the descriptor would otherwise keep it)."""

    folder: int
    lock: int | None = None

    def close(self) -> None:
        if self.lock is not None:
            import fcntl

            with suppress(OSError):
                fcntl.flock(self.lock, fcntl.LOCK_UN)
            os.close(self.lock)
        os.close(self.folder)


@dataclass
class HostTokenCache:
    """The token file of one connection in ``directory``.

    :param directory: the cache folder (created 0700 when missing, like missing parents)
    :param identity: what tells this connection's tokens apart (API, token URL, login,
        audience, scope); only its HMAC reaches the file system
    :param secret: the connection's password or client secret (keys the name and the
        encryption; never stored)
    :param margin: a token with less than this left is not taken from the file (capped at a
        fifth of its lifetime, as the in-process rule)
    :param wall_clock: the wall clock; replaceable in tests
    :param boot_clock: the host's boot clock (see :func:`boot_clock`); replaceable in tests
    """

    directory: Path
    identity: tuple[str, ...]
    secret: str = field(repr=False)
    margin: float = 60.0
    wall_clock: Callable[[], float] = time.time
    boot_clock: Callable[[], tuple[str, float] | None] = boot_clock
    _refused: list[str] = field(default_factory=list, repr=False)
    _disabled: str | None = field(default=None, repr=False)
    _key: bytes = field(init=False, repr=False)
    _name: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        identity = json.dumps(list(self.identity), ensure_ascii=True).encode()
        master = hashlib.scrypt(
            self.secret.encode("utf-8", "surrogatepass"), salt=_NAME_INFO + identity, **_SCRYPT
        )
        self._name = hmac.new(master, _NAME_INFO + identity, hashlib.sha256).hexdigest()[:40]
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO + identity
        ).derive(master)

    @property
    def path(self) -> Path:
        """The token file."""
        return self.directory / (self._name + _SUFFIX)

    @property
    def enabled(self) -> bool:
        """False once a safety check or a write failed: the process then keeps its tokens
        to itself."""
        return self._disabled is None

    def refuse(self, token: str) -> None:
        """Never take ``token`` (refused by METI) from the file again."""
        digest = _digest(token)
        if digest not in self._refused:
            self._refused = [*self._refused[-(_MAX_REFUSED - 1) :], digest]

    def obtain(
        self,
        fetch: Callable[[], IssuedToken],
        *,
        wait: float | None,
        pause: Callable[[float], object] = time.sleep,
    ) -> IssuedToken:
        """The host's token, or a new one from ``fetch`` stored for the other processes.

        :param fetch: asks the token endpoint (called at most once, under the host lock)
        :param wait: most seconds to wait for the lock another process holds (None: as long
            as it takes; see :func:`lock_wait`); past it, this process fetches a token of its
            own and stores nothing
        :param pause: waits between attempts at the lock
        """
        opened = self._stored_or_opened()
        if isinstance(opened, IssuedToken):
            return opened
        if opened is None:
            return fetch()
        try:
            held = self._guarded(lambda: _acquire(_lock_of(opened), wait, pause), False)
            found = self._stored_once_locked(opened, held)
            if found is not None:
                return found
            requested = self._now()
            issued = fetch()
            if held:
                self._store(opened, issued, requested)
            return issued
        finally:
            opened.close()

    async def aobtain(
        self, fetch: Callable[[], Awaitable[IssuedToken]], *, wait: float | None
    ) -> IssuedToken:
        """``obtain`` for a coroutine: the lock is polled with ``asyncio.sleep``, never
        blocking the loop (the file itself is a few hundred bytes on local disk)."""
        opened = self._stored_or_opened()
        if isinstance(opened, IssuedToken):
            return opened
        if opened is None:
            return await fetch()
        try:
            try:
                held = await _acquire_async(_lock_of(opened), wait)
            except CacheUnusable as problem:
                self._disable(str(problem))
                held = False
            found = self._stored_once_locked(opened, held)
            if found is not None:
                return found
            requested = self._now()
            issued = await fetch()
            if held:
                self._store(opened, issued, requested)
            return issued
        finally:
            opened.close()

    # The steps

    def _stored_or_opened(self) -> IssuedToken | _Opened | None:
        """The stored token when it is usable, else the folder and lock file opened (not yet
        locked); None when the cache cannot be used."""
        if not self.enabled:
            return None
        opened: _Opened | None = None
        try:
            opened = _Opened(self._open_folder())
            found = self._usable_token(opened.folder)
            if found is not None:
                opened.close()
                return found
            opened.lock = self._open_private(opened.folder, self._name + _LOCK_SUFFIX, create=True)
            return opened
        except Exception as problem:  # no failure of the cache may fail a call
            if opened is not None:
                opened.close()
            self._disable(_reason(problem))
            return None

    def _stored_once_locked(self, opened: _Opened, held: bool) -> IssuedToken | None:
        """The token another process stored while this one waited for the lock, if it got
        the lock; without it (its wait ran out) the process fetches a token of its own."""
        if not held:
            return None
        found: IssuedToken | None = self._guarded(lambda: self._usable_token(opened.folder), None)
        return found

    def _guarded(self, step: Callable[[], Any], fallback: Any) -> Any:
        try:
            return step()
        except Exception as problem:  # no failure of the cache may fail a call
            self._disable(_reason(problem))
            return fallback

    def _now(self) -> tuple[float, tuple[str, float] | None]:
        return self.wall_clock(), self.boot_clock()

    # The file

    def _usable_token(self, folder: int) -> IssuedToken | None:
        stored = self._read(folder)
        if stored is None or _digest(stored.value) in self._refused:
            return None
        wall, boot = self._now()
        remaining = stored.remaining(wall, boot)
        if remaining <= min(self.margin, stored.expires_in * MAX_MARGIN_FRACTION):
            return None
        return IssuedToken(stored.value, expires_in=remaining, lifetime=stored.expires_in)

    def _read(self, folder: int) -> StoredToken | None:
        try:
            fd = self._open_private(folder, self._name + _SUFFIX, create=False)
        except FileNotFoundError:
            return None
        try:
            with os.fdopen(fd, "rb", closefd=False) as file:
                sealed = file.read(4096)
        finally:
            os.close(fd)
        return self._unseal(sealed)

    def _unseal(self, sealed: bytes) -> StoredToken | None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        header, rest = sealed[: len(_HEADER)], sealed[len(_HEADER) :]
        if header != _HEADER or len(rest) <= _NONCE_BYTES:
            log.debug("METI token cache: ignoring an entry of another format or a cut one")
            return None
        nonce, ciphertext = rest[:_NONCE_BYTES], rest[_NONCE_BYTES:]
        try:
            plain = AESGCM(self._key).decrypt(nonce, ciphertext, _HEADER + self._name.encode())
            fields: Any = json.loads(plain)
            booted_for = fields.get("booted_for")
            stored = StoredToken(
                value=str(fields["token"]),
                issued_at=float(fields["issued_at"]),
                expires_in=float(fields["expires_in"]),
                boot_id=fields.get("boot_id"),
                booted_for=None if booted_for is None else float(booted_for),
            )
        except (InvalidTag, ValueError, TypeError, KeyError, AttributeError):
            log.debug("METI token cache: ignoring an entry that does not open with this key")
            return None
        return stored if stored.value and stored.expires_in > 0 else None

    def _store(
        self,
        opened: _Opened,
        issued: IssuedToken,
        requested: tuple[float, tuple[str, float] | None],
    ) -> None:
        if not self.enabled:
            return
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        wall, boot = requested
        plain = json.dumps(
            {
                "token": issued.value,
                "issued_at": wall,
                "expires_in": issued.expires_in,
                "boot_id": None if boot is None else boot[0],
                "booted_for": None if boot is None else boot[1],
            }
        ).encode()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = (
            _HEADER + nonce + AESGCM(self._key).encrypt(nonce, plain, _HEADER + self._name.encode())
        )
        # Written aside and renamed over the entry: a reader sees the old file or the new
        # one, never half of one. A failed write (full disk, read-only folder) only turns the
        # cache off for this process.
        temporary = f".{self._name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        folder = opened.folder
        try:
            fd = os.open(temporary, _NEW_FILE_FLAGS, 0o600, dir_fd=folder)
            with os.fdopen(fd, "wb") as file:
                file.write(sealed)
            os.replace(temporary, self._name + _SUFFIX, src_dir_fd=folder, dst_dir_fd=folder)
        except OSError as error:
            with suppress(OSError):
                os.unlink(temporary, dir_fd=folder)
            self._disable(f"cannot write in the folder: {error.strerror}")

    # The folder and its files

    def _open_folder(self) -> int:
        """The folder's descriptor, the folder checked (created 0700 with its missing
        parents when absent)."""
        try:
            fd = os.open(self.directory, _FOLDER_FLAGS)
        except FileNotFoundError:
            _make_private_folders(self.directory)
            fd = os.open(self.directory, _FOLDER_FLAGS)
        except OSError as error:
            if os.path.islink(self.directory):
                raise CacheUnusable("the folder is a symlink") from None
            raise CacheUnusable(f"cannot open the folder: {error.strerror}") from None
        try:
            _check_owned(os.fstat(fd), "the folder", private=False)
        except CacheUnusable:
            os.close(fd)
            raise
        return fd

    def _open_private(self, folder: int, name: str, *, create: bool) -> int:
        """A file of the folder, never through a symlink, checked to be this user's alone."""
        what = "the lock file" if name.endswith(_LOCK_SUFFIX) else "the token file"
        flags = (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o600, dir_fd=folder)
        except FileNotFoundError:
            raise
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise CacheUnusable(f"{what} is a symlink") from None
            raise CacheUnusable(f"cannot open {what}: {error.strerror}") from None
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise CacheUnusable(f"{what} is not a regular file")
            _check_owned(status, what, private=True)
        except CacheUnusable:
            os.close(fd)
            raise
        return fd

    def _disable(self, reason: str) -> None:
        if self._disabled is not None:
            return
        self._disabled = reason
        key = (str(self.directory), reason)
        with _warned_lock:
            first = key not in _warned
            _warned.add(key)
        if first:
            log.warning(
                "METI token cache in %s is not used (%s): this process asks for tokens of its "
                "own. Fix the folder, or set the connection extra token_cache_dir or "
                "token_cache=false.",
                self.directory,
                reason,
            )


def _make_private_folders(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each 0700."""
    missing = []
    for path in (directory, *directory.parents):
        if os.path.lexists(path):
            break
        missing.append(path)
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as error:
            raise CacheUnusable(f"cannot create the folder: {error.strerror}") from None


def _check_owned(status: os.stat_result, what: str, *, private: bool) -> None:
    """This user's, not writable by others; a file (``private``) not readable by them
    either."""
    if status.st_uid != os.geteuid():
        raise CacheUnusable(f"{what} belongs to another user (uid {status.st_uid})")
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheUnusable(f"{what} is writable by group or others")
    if private and status.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        raise CacheUnusable(f"{what} is readable by group or others")


def _lock_of(opened: _Opened) -> int:
    assert opened.lock is not None
    return opened.lock


def _reason(problem: BaseException) -> str:
    """What went wrong, without a path (a file's name is keyed by the secret)."""
    if isinstance(problem, CacheUnusable):
        return str(problem)
    if isinstance(problem, OSError):
        return f"{type(problem).__name__}: {problem.strerror or 'error'}"
    return f"{type(problem).__name__}: {problem}"


def _try_lock(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as error:  # e.g. ENOLCK on a network file system
        raise CacheUnusable(f"cannot lock: {error.strerror}") from None


class _LockPolls:
    """The pauses between attempts at a busy lock: short first (a renewal usually takes one
    round trip), then capped, so hundreds of waiters do not spin; None once ``wait`` is up."""

    def __init__(self, wait: float | None) -> None:
        self._deadline = None if wait is None else time.monotonic() + wait
        self._step = _FIRST_POLL

    def next_pause(self) -> float | None:
        step = self._step
        if self._deadline is not None and time.monotonic() + step > self._deadline:
            return None
        self._step = min(step * 2, _MAX_POLL)
        return step


def _acquire(fd: int, wait: float | None, pause: Callable[[float], object]) -> bool:
    polls = _LockPolls(wait)
    while not _try_lock(fd):
        step = polls.next_pause()
        if step is None:
            return False
        pause(step)
    return True


async def _acquire_async(fd: int, wait: float | None) -> bool:
    polls = _LockPolls(wait)
    while not _try_lock(fd):
        step = polls.next_pause()
        if step is None:
            return False
        await asyncio.sleep(step)
    return True


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
