"""HostTokenCache: one METI token per host, shared by every process of one OS user.

Every Airflow task runs in a process of its own; without this, each asks for a token of its
own (on v2, each an Auth0 machine-to-machine token counted against a monthly quota). The
cache keeps the connection's token in one file of a private folder on local disk:

- The folder is 0700 and the files 0600. A folder or file that is a symlink, belongs to
  another user or is group- or world-writable is refused (said once in the log), and the
  process keeps its token to itself, as without a cache.
- The file's name is an HMAC of the connection's identity (API, token URL, login, audience,
  scope) keyed by the secret: it reveals nothing, and another secret for the same login
  finds another file.
- Its content, the token and when it was issued, is sealed with AES-GCM under a key derived
  from the secret (HKDF-SHA256): only a holder of the secret can read it or forge one.
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
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_meti.auth import MAX_MARGIN_FRACTION, IssuedToken

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_MAGIC = b"METI-TOKEN-CACHE"
_HEADER = _MAGIC + bytes([FORMAT_VERSION])
_NONCE_BYTES = 12
_KEY_INFO = b"airflow-provider-meti token cache key v1"
_NAME_INFO = b"airflow-provider-meti token cache name v1"
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SUFFIX = ".token"
_LOCK_SUFFIX = ".lock"
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


class CacheUnusable(Exception):
    """The folder or a file of the cache fails a safety check, or cannot be written."""


@dataclass(frozen=True)
class StoredToken:
    """A token as the file holds it: its value, when it was issued and for how long (wall
    clock: the only clock that processes share)."""

    value: str
    issued_at: float
    expires_in: float

    def remaining(self, now: float) -> float:
        """Seconds of validity left at ``now``; 0 when the clock reads earlier than the issue
        time (a clock set back cannot stretch a token beyond its ``expires_in``)."""
        if now < self.issued_at:
            return 0.0
        return max(0.0, self.issued_at + self.expires_in - now)


@dataclass
class HostTokenCache:
    """The token file of one connection in ``directory``.

    :param directory: the cache folder (created 0700 when missing)
    :param identity: what tells this connection's tokens apart (API, token URL, login,
        audience, scope); only its HMAC reaches the file system
    :param secret: the connection's password or client secret (keys the name and the
        encryption; never stored)
    :param margin: a token with less than this left is not taken from the file (capped at a
        fifth of its lifetime, as the in-process rule)
    :param wall_clock: the wall clock; replaceable in tests
    """

    directory: Path
    identity: tuple[str, ...]
    secret: str = field(repr=False)
    margin: float = 60.0
    wall_clock: Callable[[], float] = time.time
    _refused: list[str] = field(default_factory=list, repr=False)
    _disabled: str | None = field(default=None, repr=False)
    _key: bytes = field(init=False, repr=False)
    _name: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        secret = self.secret.encode("utf-8", "surrogatepass")
        identity = json.dumps(list(self.identity), ensure_ascii=True).encode()
        self._name = hmac.new(secret, _NAME_INFO + identity, hashlib.sha256).hexdigest()[:40]
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO + identity
        ).derive(secret)

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
            as it takes); past it, this process fetches a token of its own
        :param pause: waits between attempts at the lock
        """
        lock = self._stored_or_lock()
        if isinstance(lock, IssuedToken):
            return lock
        if lock is None:
            return fetch()
        try:
            held = _acquire(lock, wait, pause)
            found = self._stored_once_locked(held)
            if found is not None:
                return found
            requested_at = self.wall_clock()
            issued = fetch()
            if held:
                self._store(issued, requested_at)
            return issued
        finally:
            os.close(lock)  # closing the descriptor releases the lock

    async def aobtain(
        self, fetch: Callable[[], Awaitable[IssuedToken]], *, wait: float | None
    ) -> IssuedToken:
        """``obtain`` for a coroutine: the lock is polled with ``asyncio.sleep``, never
        blocking the loop (the file itself is a few hundred bytes on local disk)."""
        lock = self._stored_or_lock()
        if isinstance(lock, IssuedToken):
            return lock
        if lock is None:
            return await fetch()
        try:
            held = await _acquire_async(lock, wait)
            found = self._stored_once_locked(held)
            if found is not None:
                return found
            requested_at = self.wall_clock()
            issued = await fetch()
            if held:
                self._store(issued, requested_at)
            return issued
        finally:
            os.close(lock)

    def _stored_or_lock(self) -> IssuedToken | int | None:
        """The stored token when it is usable, else the open lock file's descriptor (not yet
        locked); None when the cache cannot be used."""
        if not self.enabled:
            return None
        try:
            return self._usable_token() or self._open_lock()
        except (CacheUnusable, OSError) as problem:  # any other I/O failure is no reason to fail
            self._disable(str(problem))
            return None

    def _stored_once_locked(self, held: bool) -> IssuedToken | None:
        """The token another process stored while this one waited for the lock, if it got
        the lock. Without the lock (its wait ran out) the process fetches a token of its own
        and stores nothing."""
        if not held:
            return None
        try:
            return self._usable_token()
        except (CacheUnusable, OSError) as problem:  # any other I/O failure is no reason to fail
            self._disable(str(problem))
            return None

    # The file

    def _usable_token(self) -> IssuedToken | None:
        stored = self._read()
        if stored is None or _digest(stored.value) in self._refused:
            return None
        remaining = stored.remaining(self.wall_clock())
        if remaining <= min(self.margin, stored.expires_in * MAX_MARGIN_FRACTION):
            return None
        return IssuedToken(stored.value, expires_in=remaining, lifetime=stored.expires_in)

    def _read(self) -> StoredToken | None:
        self._check_directory(create=False)
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise CacheUnusable(f"{self.path.name} is a symlink") from None
            raise CacheUnusable(f"cannot read {self.path.name}: {error.strerror}") from None
        try:
            _check_owned_and_private(os.fstat(fd), self.path.name)
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
            stored = StoredToken(
                value=str(fields["token"]),
                issued_at=float(fields["issued_at"]),
                expires_in=float(fields["expires_in"]),
            )
        except (InvalidTag, ValueError, TypeError, KeyError):
            log.debug("METI token cache: ignoring an entry that does not open with this key")
            return None
        return stored if stored.value and stored.expires_in > 0 else None

    def _store(self, issued: IssuedToken, requested_at: float) -> None:
        if not self.enabled:
            return
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        plain = json.dumps(
            {
                "token": issued.value,
                "issued_at": requested_at,
                "expires_in": issued.expires_in,
            }
        ).encode()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = (
            _HEADER + nonce + AESGCM(self._key).encrypt(nonce, plain, _HEADER + self._name.encode())
        )
        # Written aside and renamed over the entry: a reader sees the old file or the new
        # one, never half of one. A failed write (full disk, read-only folder) only turns the
        # cache off for this process.
        temporary = self.directory / f".{self._name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(temporary, _NEW_FILE_FLAGS, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(sealed)
            os.replace(temporary, self.path)
        except OSError as error:
            with suppress(OSError):
                os.unlink(temporary)
            self._disable(f"cannot write in the folder: {error.strerror}")

    # The folder and the lock

    def _check_directory(self, *, create: bool) -> None:
        try:
            status = os.lstat(self.directory)
        except FileNotFoundError:
            if not create:
                return
            try:
                self.directory.parent.mkdir(parents=True, exist_ok=True)
                os.mkdir(self.directory, 0o700)
            except FileExistsError:
                pass
            except OSError as error:
                raise CacheUnusable(f"cannot create the folder: {error.strerror}") from None
            status = os.lstat(self.directory)
        if stat.S_ISLNK(status.st_mode):
            raise CacheUnusable("the folder is a symlink")
        if not stat.S_ISDIR(status.st_mode):
            raise CacheUnusable("the folder is not a directory")
        _check_owned_and_private(status, "the folder")

    def _open_lock(self) -> int:
        self._check_directory(create=True)
        lock_path = self.directory / (self._name + _LOCK_SUFFIX)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise CacheUnusable(f"{lock_path.name} is a symlink") from None
            raise CacheUnusable(f"cannot open the lock file: {error.strerror}") from None
        try:
            _check_owned_and_private(os.fstat(fd), lock_path.name)
        except CacheUnusable:
            os.close(fd)
            raise
        return fd

    def _disable(self, reason: str) -> None:
        if self._disabled is None:
            self._disabled = reason
            log.warning(
                "METI token cache in %s is not used (%s): this process asks for tokens of its "
                "own. Fix the folder, or set the connection extra token_cache_dir or "
                "token_cache=false.",
                self.directory,
                reason,
            )


def _check_owned_and_private(status: os.stat_result, what: str) -> None:
    if status.st_uid != os.geteuid():
        raise CacheUnusable(f"{what} belongs to another user (uid {status.st_uid})")
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheUnusable(f"{what} is writable by group or others")


def _try_lock(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


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
