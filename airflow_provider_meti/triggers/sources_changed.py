"""MetiSourcesChangedTrigger: an ``AssetWatcher`` trigger that fires once per change in METI.

Schedule a DAG on what happens in METI (sources added or withdrawn, conflicts raised or
settled) instead of re-reading everything daily::

    from airflow.sdk import Asset, AssetWatcher

    trigger = MetiSourcesChangedTrigger(filters={"project_id": "p1"}, changes=["conflict_raised"])
    asset = Asset("meti://sources/p1", watchers=[AssetWatcher(name="p1", trigger=trigger)])

Each poll lists the matching sources and compares them with the last snapshot. A poll that
found a change fires one event; one that found none fires nothing. The first poll of a new
watcher records the baseline and fires nothing. From Airflow 3.3 the snapshot lives in the
watcher's ``asset_state_store``, so a triggerer restart neither repeats an event nor loses a
change made while it was down, and watchers of one connection, filters and interval share one
listing per interval. Before 3.3 the snapshot is kept in memory: after a restart the
baseline is taken again. Airflow 2.11 has no watchers; the class still imports there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_meti._compat import (
    BaseTrigger,
    TriggerEvent,
    aconnection_extras,
    aget_connection,
    import_first,
)
from airflow_provider_meti.triggers import snapshots
from airflow_provider_meti.triggers.listing import check_filters, list_sources
from airflow_provider_meti.triggers.snapshots import Listing, check_changes

if TYPE_CHECKING:
    from airflow_provider_meti.connection import ConnectionSettings

try:
    BaseEventTrigger: Any = import_first("BaseEventTrigger", "airflow.triggers.base")
    WATCHERS_AVAILABLE = True
except ImportError:  # Airflow 2.11: no event-driven scheduling
    BaseEventTrigger = BaseTrigger
    WATCHERS_AVAILABLE = False

__all__ = ["WATCHERS_AVAILABLE", "MetiSourcesChangedTrigger"]

DEFAULT_POLL_INTERVAL = 300.0
MIN_POLL_INTERVAL = 1.0
ADVISED_POLL_INTERVAL = 30.0
STORE_KEY_PREFIX = "meti_sources_changed"


def check_poll_interval(poll_interval: float) -> float:
    """``poll_interval`` in seconds: at least 1, and a warning below 30."""
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)):
        raise ValueError(f"poll_interval must be a number of seconds, got {poll_interval!r}.")
    seconds = float(poll_interval)
    if not seconds >= MIN_POLL_INTERVAL:
        raise ValueError(f"poll_interval must be at least {MIN_POLL_INTERVAL:g} s, got {seconds}.")
    if seconds < ADVISED_POLL_INTERVAL:
        warnings.warn(
            f"poll_interval {seconds:g} s: every poll lists every matching source; below "
            f"{ADVISED_POLL_INTERVAL:g} s this is meant for tests.",
            UserWarning,
            stacklevel=3,
        )
    return seconds


class OutageLog:
    """Logs the first failed poll of an outage and its end, not every poll in between."""

    def __init__(self, log: logging.Logger | Any, what: str) -> None:
        self._log = log
        self._what = what
        self.failed_polls = 0

    def failed(self, error: BaseException) -> None:
        self.failed_polls += 1
        if self.failed_polls == 1:
            self._log.warning(
                "%s failed; the last snapshot is kept and polling goes on (logged once "
                "until it works again): %s: %s",
                self._what,
                type(error).__name__,
                error,
            )

    def succeeded(self) -> None:
        if self.failed_polls:
            self._log.warning(
                "%s works again after %d failed poll(s)", self._what, self.failed_polls
            )
        self.failed_polls = 0


class SnapshotWatch:
    """Compares each listing with the last snapshot; keeps the snapshot in ``store``.

    :param kinds: the kinds of change reported
    :param store: an ``asset_state_store`` (``aget``/``aset``), or None to keep the snapshot
        in memory only
    :param key: the store key
    :param log: where store failures go
    """

    def __init__(self, kinds: Iterable[str], store: Any, key: str, log: Any) -> None:
        self.kinds = tuple(kinds)
        self._store = store
        self._key = key
        self._log = log
        self._loaded = False
        self.snapshot: snapshots.Snapshot | None = None
        self._unsaved = False

    async def compare(self, listing: Listing) -> dict[str, Any] | None:
        """The event payload for ``listing``, or None when nothing the kinds cover changed
        (or it is the baseline). Raises when the stored snapshot cannot be read."""
        if not self._loaded:
            self.snapshot = await self._load()
            self._loaded = True
        if self.snapshot is None:
            return None
        changed = snapshots.changes_since(self.snapshot, listing, self.kinds)
        if not changed:
            return None
        payload: dict[str, Any] = {kind: changed.get(kind, []) for kind in self.kinds}
        payload["count"] = len(listing.flags)
        payload["polled_at"] = listing.polled_at
        return payload

    async def commit(self, listing: Listing) -> None:
        """Make ``listing`` the snapshot, and store it when it differs from the stored one."""
        new = snapshots.kept(listing, self.kinds)
        if snapshots.unchanged(new, self.snapshot, listing) and not self._unsaved:
            return
        self.snapshot = new
        self._unsaved = True
        if self._store is None:
            self._unsaved = False
            return
        try:
            await self._store.aset(self._key, snapshots.encoded(new, listing))
        except Exception as error:  # kept in memory, stored again after the next poll
            self._log.warning("Storing the sources snapshot failed: %s", error)
            return
        self._unsaved = False

    async def _load(self) -> snapshots.Snapshot | None:
        if self._store is None:
            return None
        try:
            text = await self._store.aget(self._key, None)
        except ValueError as error:  # one trigger watching several assets has no one store
            self._log.warning(
                "The sources snapshot is kept in memory only (a restarted triggerer takes a "
                "new baseline): %s. Give each watched asset a trigger of its own.",
                error,
            )
            self._store = None
            return None
        if text is None:
            return None
        try:
            return snapshots.decode(text)
        except ValueError as error:
            self._log.warning("Ignoring the stored sources snapshot, taking a baseline: %s", error)
            return None


class MetiSourcesChangedTrigger(BaseEventTrigger):
    """Fires one event per poll that found matching sources added, removed, newly in
    conflict or out of conflict; for an ``AssetWatcher`` (Airflow 3).

    The payload (the asset event's ``extra["payload"]``) names the ids of each kind asked
    for in ``changes`` (sorted; a list for every kind asked for, empty where nothing of that
    kind changed), the ``count`` of matching sources, and ``polled_at`` (ISO 8601, UTC)::

        {"added": ["src_..."], "removed": [], "conflict_raised": ["src_a", "src_b"],
         "conflict_cleared": [], "count": 15000, "polled_at": "2026-05-04T09:30:00+00:00"}

    A raised conflict lists both sources of the pair; a source withdrawn while in conflict
    counts as removed and as cleared.

    :param meti_conn_id: the Airflow connection id
    :param filters: METI's listing filters (``id``, ``alt_id``, ``methodology``,
        ``steward_id``, ``project_id``, ``outcome_reporting_year``); None watches every source
        the connection can list
    :param poll_interval: seconds between two listings; at least 1, warned below 30
    :param changes: any of ``"added"``, ``"removed"``, ``"conflict_raised"``,
        ``"conflict_cleared"``; None: all four
    """

    def __init__(
        self,
        meti_conn_id: str = "meti_default",
        filters: Mapping[str, Any] | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        changes: str | Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        self.meti_conn_id = meti_conn_id
        self.filters = check_filters(filters)
        self.poll_interval = check_poll_interval(poll_interval)
        self.changes = list(check_changes(changes))

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and plain, deterministic keyword arguments (the watcher's identity)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "meti_conn_id": self.meti_conn_id,
                "filters": dict(self.filters),
                "poll_interval": self.poll_interval,
                "changes": list(self.changes),
            },
        )

    # Airflow 3.3: one listing per interval for every watcher of the same query

    def shared_stream_key(self) -> Hashable | None:
        """Watchers with the same connection, filters and interval share one listing."""
        filters = json.dumps(self.filters, sort_keys=True)
        return ("meti-sources", self.meti_conn_id, filters, self.poll_interval)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Listing]:
        """Complete listings, one per interval, for every watcher of the group."""
        async for listing in cls(**kwargs).listings():
            yield listing

    async def filter_shared_stream(
        self, shared_stream: AsyncIterator[Listing]
    ) -> AsyncIterator[TriggerEvent]:
        """This watcher's events from the group's listings, against its own snapshot."""
        async for event in self.watch(shared_stream):
            yield event

    # Airflow 3.0-3.2 (and a watcher whose sharing is off): its own listings

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll every ``poll_interval`` seconds; fire one event per poll that found a change."""
        async for event in self.watch(self.listings()):
            yield event

    async def watch(self, listings: AsyncIterator[Listing]) -> AsyncIterator[TriggerEvent]:
        """One event per listing that differs from the snapshot in the kinds asked for.

        The event is fired before the new snapshot is stored: a triggerer stopped between
        the two reports the change again rather than never.
        """
        store = getattr(self, "asset_state_store", None)
        watch = SnapshotWatch(self.changes, store, self.store_key(), self.log)
        if store is None:
            self.log.info(
                "No asset state store (Airflow before 3.3): the sources snapshot is kept in "
                "memory, and a restarted triggerer takes a new baseline."
            )
        outage = OutageLog(self.log, "Reading the stored sources snapshot")
        async for listing in listings:
            try:
                payload = await watch.compare(listing)
            except Exception as error:  # the stored snapshot is unreadable now: wait
                outage.failed(error)
                continue
            outage.succeeded()
            if payload is None and watch.snapshot is None:
                self.log.info(
                    "Baseline of %d METI sources recorded; changes from now on fire events",
                    len(listing.flags),
                )
            if payload is not None:
                yield TriggerEvent(payload)
            await watch.commit(listing)

    def store_key(self) -> str:
        """The ``asset_state_store`` key of this watcher's snapshot (no secret in it)."""
        identity = json.dumps(
            [self.meti_conn_id, self.filters, self.changes], sort_keys=True, default=str
        )
        return f"{STORE_KEY_PREFIX}:{hashlib.sha256(identity.encode()).hexdigest()[:16]}"

    async def listings(
        self,
        list_once: Callable[[], Awaitable[Listing]] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> AsyncIterator[Listing]:
        """A complete listing every ``poll_interval`` seconds, the first at once; a failed
        or incomplete one is logged (once per outage) and left out.

        :param list_once: lists the sources once (default: through the connection)
        :param sleep: awaits the interval (tests inject one)
        """
        poll = list_once or self._list_once
        outage = OutageLog(self.log, f"Listing METI sources ({self.meti_conn_id!r})")
        while True:
            try:
                listing = await poll()
            except Exception as error:  # an outage, a 401 storm, a cut-short listing
                outage.failed(error)
            else:
                outage.succeeded()
                yield listing
                del listing  # not held through the sleep: the subscribers have it
            await sleep(self.poll_interval)

    async def _list_once(self) -> Listing:
        from airflow_provider_meti.aio.shared import shared_client

        parts = await self._connection_settings()
        async with shared_client(self.meti_conn_id, parts) as client:
            return await list_sources(client, self.filters)

    async def _connection_settings(self) -> ConnectionSettings:
        from airflow_provider_meti.connection import settings_from_connection

        connection = await aget_connection(self.meti_conn_id)
        extras = await aconnection_extras(connection)
        return settings_from_connection(connection, extras=extras)
