"""The emulator's source ledger: storage, conflicts and listing, shared safely between threads.

It follows METI's open-source ledger (millpont/open-meti): a collection is stored all or
nothing; a new source conflicts with a stored one when their ``[start_at, end_at)`` windows
overlap and the new polygon shrunk inward by 9 m still meets the stored one; both then list
each other in ``conflict_with``; deleting a source releases its neighbours.

Every source belongs to one account. Reads and deletes can be limited to an account (the API
always limits them to the caller's); conflicts are found across accounts, since overlapping
claims by different parties are what METI exists to flag.

Longer than most modules on purpose: one lock guards storage, conflict marking and
listing together, and splitting the class would split what that lock keeps consistent.
"""

from __future__ import annotations

import json
import random
import string
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, cast

from airflow_provider_meti.emulator.credentials import DEFAULT_ACCOUNT
from airflow_provider_meti.emulator.geometry import (
    BBox,
    LocalFrame,
    Point,
    bounding_box,
    covered_fraction,
    planar_centroid,
    rings_of,
    shrunk_intersects,
    spheroid_area_m2,
)
from airflow_provider_meti.emulator.grid_index import GridIndex
from airflow_provider_meti.geojson import validate_feature_collection
from airflow_provider_meti.timestamps import parse_timestamp

COUNTRY = "XX"
"""Every source gets this country: the emulator plays one country covering the world."""
CONFLICT_INSET_M = 9.0
COPIED_PROPERTIES = ("methodology", "steward_id", "project_id", "outcome_reporting_year", "tags")
FILTER_FIELDS = ("methodology", "steward_id", "project_id", "outcome_reporting_year")
_ID_ALPHABET = string.ascii_letters + string.digits

# Generated sources sit on a lattice of ~100 m squares in a reserved area (inland Australia),
# 200 m apart, so they never touch each other and rarely anything a test submits.
SEED_ORIGIN = (140.0, -20.0)
SEED_PITCH_DEG = 0.002
SEED_SIDE_DEG = 0.001
SEED_COLUMNS = 1000
SEED_CAPACITY = 1_000_000


def utc_now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(timezone.utc)


@lru_cache(maxsize=16)  # bulk inserts stamp thousands of sources with one moment
def format_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds and a ``Z``, as the ledger writes timestamps."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class SourceFilter:
    """Which sources a listing returns; ``None`` means "any"."""

    account_id: str | None = None
    methodology: str | None = None
    steward_id: str | None = None
    project_id: str | None = None
    outcome_reporting_year: str | None = None
    alt_id: str | None = None
    conflict: bool | None = None
    created_since: datetime | None = None
    updated_since: datetime | None = None

    def matches(self, entry: _Entry) -> bool:
        """Whether ``entry`` passes every filter that is set."""
        source = entry.source
        if self.account_id is not None and entry.account_id != self.account_id:
            return False
        for name in FILTER_FIELDS:
            wanted = getattr(self, name)
            if wanted is not None and (source.get(name) is None or str(source[name]) != wanted):
                return False
        if self.alt_id is not None and source["alt_id"] != self.alt_id:
            return False
        if self.conflict is not None and source["conflict"] != self.conflict:
            return False
        if self.created_since is not None and entry.created < self.created_since:
            return False
        return self.updated_since is None or entry.updated >= self.updated_since

    def is_empty(self) -> bool:
        """True when nothing is filtered out."""
        return self == SourceFilter()


@dataclass
class _Entry:
    """One stored source with what the ledger needs beside its JSON."""

    sequence: int
    source: dict[str, Any]
    rings: list[list[Point]]
    bbox: BBox
    start: datetime
    end: datetime
    created: datetime
    updated: datetime
    account_id: str
    encoded: bytes | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.source["id"]

    def json_bytes(self) -> bytes:
        """The source as compact JSON, serialized once until it changes."""
        if self.encoded is None:
            self.encoded = json.dumps(self.source, separators=(",", ":")).encode()
        return self.encoded

    def mark_changed(self, moment: datetime) -> None:
        self.updated = moment
        self.source["updated_at"] = format_timestamp(moment)
        self.encoded = None

    def overlaps_in_time(self, other: _Entry) -> bool:
        return self.start < other.end and other.start < self.end


class Ledger:
    """Thread-safe store of sources with METI's conflict rules.

    :param seed: seeds the generator of ``src_`` ids, so a run is reproducible
    :param clock: returns the current aware UTC time (for ``created_at``/``updated_at``)
    """

    def __init__(self, seed: int = 0, clock: Callable[[], datetime] = utc_now) -> None:
        self._lock = threading.RLock()
        self._seed = seed
        self._clock = clock
        self._random = random.Random(seed)
        self._entries: dict[str, _Entry] = {}
        self._by_alt_id: dict[str, dict[str, None]] = {}
        self._index = GridIndex()
        self._sequence = 0
        self._seed_cursor = 0
        self._seed_areas: dict[int, float] = {}
        # Bumped by every write, so a cached listing knows when it is stale.
        self._version = 0
        self._listing_cache: tuple[SourceFilter, int, list[_Entry]] | None = None

    # --- writes ----------------------------------------------------------------------------

    def create(
        self, feature_collection: Mapping[str, Any], *, account_id: str = DEFAULT_ACCOUNT
    ) -> list[dict[str, str]]:
        """Validate and store every feature, or none; return ``{"id", "alt_id"}`` per feature.

        :param feature_collection: a GeoJSON FeatureCollection
        :param account_id: the account the new sources belong to
        :raises MetiValidationError: the collection breaks a rule; nothing was stored
        """
        features = validate_feature_collection(feature_collection)
        with self._lock:
            self._version += 1
            now = self._clock()
            return [
                self._insert(self._new_entry(feature, now, account_id), now) for feature in features
            ]

    def delete(self, source_id: str, *, account_id: str | None = None) -> bool:
        """Delete one source and release its neighbours; False when it does not exist.

        :param account_id: only a source of this account (None: any account)
        """
        with self._lock:
            entry = self._entries.get(source_id)
            if entry is None or not _in_account(entry, account_id):
                return False
            del self._entries[source_id]
            self._version += 1
            self._forget(entry)
            return True

    def delete_by_alt_id(self, alt_id: str, *, account_id: str | None = None) -> int:
        """Delete every source with ``alt_id``; return how many there were.

        :param account_id: only sources of this account (None: any account)
        """
        with self._lock:
            ids = list(self._by_alt_id.get(alt_id, ()))
            return sum(self.delete(source_id, account_id=account_id) for source_id in ids)

    def seed(
        self,
        count: int,
        *,
        start_at: str = "2024-01-01T00:00:00Z",
        end_at: str = "2025-01-01T00:00:00Z",
        account_id: str = DEFAULT_ACCOUNT,
        **properties: Any,
    ) -> int:
        """Bulk-insert ``count`` generated, non-overlapping sources (for benchmarks).

        They skip the conflict search: they lie apart from each other on a lattice in a
        reserved area (see ``SEED_ORIGIN``). Extra keyword arguments become properties such
        as ``methodology`` or ``project_id``.

        :param count: how many sources to add
        :param account_id: the account the new sources belong to
        :return: the number of sources stored afterwards
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a non-negative integer, got {count!r}")
        start, end = parse_timestamp(start_at), parse_timestamp(end_at)
        if end <= start:
            raise ValueError("end_at must be after start_at")
        unknown = set(properties) - set(COPIED_PROPERTIES)
        if unknown:
            raise ValueError(f"unknown properties: {', '.join(sorted(unknown))}")
        with self._lock:
            if self._seed_cursor + count > SEED_CAPACITY:
                raise ValueError(f"at most {SEED_CAPACITY} generated sources fit the lattice")
            self._version += 1
            now = self._clock()
            for _ in range(count):
                entry = self._lattice_entry(
                    start_at, end_at, start, end, properties, now, account_id
                )
                self._store(entry)
            return len(self._entries)

    def clear(self) -> None:
        """Drop every source and restart the id generator from the seed."""
        with self._lock:
            self._entries.clear()
            self._by_alt_id.clear()
            self._index.clear()
            self._random = random.Random(self._seed)
            self._sequence = 0
            self._seed_cursor = 0
            self._version += 1

    # --- reads -----------------------------------------------------------------------------

    def get(self, source_id: str, *, account_id: str | None = None) -> dict[str, Any] | None:
        """A copy of one source, or None.

        :param account_id: only a source of this account (None: any account)
        """
        with self._lock:
            entry = self._entries.get(source_id)
            if entry is None or not _in_account(entry, account_id):
                return None
            return json.loads(entry.json_bytes())

    def all(self, *, account_id: str | None = None) -> list[dict[str, Any]]:
        """Copies of every source (of one account, when given), in creation order."""
        with self._lock:
            return [
                json.loads(entry.json_bytes())
                for entry in self._entries.values()
                if _in_account(entry, account_id)
            ]

    def count(self, *, account_id: str | None = None) -> int:
        """How many sources are stored (in one account, when given)."""
        with self._lock:
            if account_id is None:
                return len(self._entries)
            return sum(1 for entry in self._entries.values() if entry.account_id == account_id)

    def account_of(self, source_id: str) -> str | None:
        """The account a source belongs to, or None when it does not exist."""
        with self._lock:
            entry = self._entries.get(source_id)
            return None if entry is None else entry.account_id

    def page(self, filters: SourceFilter, limit: int, offset: int) -> tuple[list[bytes], int]:
        """One page of matching sources as JSON bytes, in creation order, and the match count.

        :param filters: which sources to include
        :param limit: the largest page
        :param offset: how many matching sources to skip
        """
        with self._lock:
            matching = self._matching(filters)
            chosen = matching[offset : offset + limit]
            return [entry.json_bytes() for entry in chosen], len(matching)

    # --- internals -------------------------------------------------------------------------

    def _matching(self, filters: SourceFilter) -> list[_Entry]:
        """Entries passing ``filters``; the last answer is reused while nothing changes,
        so paging through a large ledger scans it once."""
        cached = self._listing_cache
        if cached is not None and cached[0] == filters and cached[1] == self._version:
            return cached[2]
        if filters.alt_id is not None:
            ids = self._by_alt_id.get(filters.alt_id, {})
            matching = [self._entries[source_id] for source_id in ids]
        else:
            matching = list(self._entries.values())
        if filters.account_id is not None:
            # Checked apart from the other filters: every API listing sets it, and this
            # comprehension is several times faster than SourceFilter.matches.
            account_id = filters.account_id
            matching = [entry for entry in matching if entry.account_id == account_id]
        remaining = replace(filters, account_id=None)
        if not remaining.is_empty():
            matching = [entry for entry in matching if remaining.matches(entry)]
        self._listing_cache = (filters, self._version, matching)
        return matching

    def _new_entry(self, feature: Mapping[str, Any], now: datetime, account_id: str) -> _Entry:
        properties = feature["properties"]
        geometry = feature["geometry"]
        rings = rings_of(geometry)
        source = self._source_dict(
            alt_id=feature["id"],
            start_at=properties["start_at"],
            end_at=properties["end_at"],
            geometry=json.loads(json.dumps(geometry)),
            hectares=round(spheroid_area_m2(rings) / 10_000, 3),
            centroid=planar_centroid(rings),
            properties=properties,
            now=now,
        )
        return self._entry(
            source,
            rings,
            parse_timestamp(properties["start_at"]),
            parse_timestamp(properties["end_at"]),
            now,
            account_id,
        )

    def _source_dict(
        self,
        *,
        alt_id: str,
        start_at: str,
        end_at: str,
        geometry: dict[str, Any],
        hectares: float,
        centroid: Point,
        properties: Mapping[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        stamp = format_timestamp(now)
        return {
            "id": self._new_id(),
            "alt_id": alt_id,
            "start_at": start_at,
            "end_at": end_at,
            "geojson": geometry,
            "hectares": hectares,
            "country": COUNTRY,
            "centroid": [round(centroid[0], 7), round(centroid[1], 7)],
            "conflict": False,
            "conflict_with": [],
            "percent_overlap": None,
            **{name: properties.get(name) for name in COPIED_PROPERTIES},
            "created_at": stamp,
            "updated_at": stamp,
        }

    def _entry(
        self,
        source: dict[str, Any],
        rings: list[list[Point]],
        start: datetime,
        end: datetime,
        now: datetime,
        account_id: str,
    ) -> _Entry:
        self._sequence += 1
        return _Entry(
            self._sequence, source, rings, bounding_box(rings), start, end, now, now, account_id
        )

    def _new_id(self) -> str:
        while True:
            source_id = "src_" + "".join(self._random.choices(_ID_ALPHABET, k=13))
            if source_id not in self._entries:
                return source_id

    def _insert(self, entry: _Entry, now: datetime) -> dict[str, str]:
        neighbours = self._conflicting(entry)
        entry.source["conflict_with"] = [neighbour.id for neighbour in neighbours]
        entry.source["conflict"] = bool(neighbours)
        self._store(entry)
        for neighbour in neighbours:
            neighbour.source["conflict_with"].append(entry.id)
            neighbour.source["conflict"] = True
        for touched in (entry, *neighbours):
            touched.source["percent_overlap"] = self._percent_overlap(touched)
            touched.mark_changed(now)
        return {"id": entry.id, "alt_id": entry.source["alt_id"]}

    def _conflicting(self, entry: _Entry) -> list[_Entry]:
        frame = LocalFrame.around(entry.bbox)
        shrinking = frame.project(entry.rings)
        candidates = self._index.candidates(entry.bbox)  # keyed by source id
        found = [
            other
            for other in map(self._entries.__getitem__, cast("set[str]", candidates))
            if other.overlaps_in_time(entry)
            and shrunk_intersects(shrinking, frame.project(other.rings), CONFLICT_INSET_M)
        ]
        return sorted(found, key=lambda other: other.sequence)

    def _percent_overlap(self, entry: _Entry) -> float | None:
        neighbours = [self._entries[i] for i in entry.source["conflict_with"] if i in self._entries]
        if not neighbours:
            return None
        frame = LocalFrame.around(entry.bbox)
        others = [frame.project(neighbour.rings) for neighbour in neighbours]
        return round(covered_fraction(frame.project(entry.rings), others), 4)

    def _store(self, entry: _Entry) -> None:
        self._entries[entry.id] = entry
        self._by_alt_id.setdefault(entry.source["alt_id"], {})[entry.id] = None
        self._index.insert(entry.id, entry.bbox)

    def _forget(self, entry: _Entry) -> None:
        self._index.remove(entry.id)
        same_alt_id = self._by_alt_id.get(entry.source["alt_id"], {})
        same_alt_id.pop(entry.id, None)
        if not same_alt_id:
            self._by_alt_id.pop(entry.source["alt_id"], None)
        now = self._clock()
        for neighbour_id in entry.source["conflict_with"]:
            neighbour = self._entries.get(neighbour_id)
            if neighbour is None:
                continue
            remaining = [i for i in neighbour.source["conflict_with"] if i != entry.id]
            neighbour.source["conflict_with"] = remaining
            neighbour.source["conflict"] = bool(remaining)
            neighbour.source["percent_overlap"] = self._percent_overlap(neighbour)
            neighbour.mark_changed(now)

    def _lattice_entry(
        self,
        start_at: str,
        end_at: str,
        start: datetime,
        end: datetime,
        properties: Mapping[str, Any],
        now: datetime,
        account_id: str,
    ) -> _Entry:
        position = self._seed_cursor
        self._seed_cursor += 1
        row, column = divmod(position, SEED_COLUMNS)
        west = SEED_ORIGIN[0] + column * SEED_PITCH_DEG
        south = SEED_ORIGIN[1] - row * SEED_PITCH_DEG
        east, north = west + SEED_SIDE_DEG, south + SEED_SIDE_DEG
        ring = [(west, south), (east, south), (east, north), (west, north), (west, south)]
        if row not in self._seed_areas:
            self._seed_areas[row] = round(spheroid_area_m2([ring]) / 10_000, 3)
        source = self._source_dict(
            alt_id=f"seed-{position:07d}",
            start_at=start_at,
            end_at=end_at,
            geometry={"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
            hectares=self._seed_areas[row],
            centroid=(west + SEED_SIDE_DEG / 2, south + SEED_SIDE_DEG / 2),
            properties=properties,
            now=now,
        )
        return self._entry(source, [ring], start, end, now, account_id)


def _in_account(entry: _Entry, account_id: str | None) -> bool:
    return account_id is None or entry.account_id == account_id
