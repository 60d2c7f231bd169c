"""The emulator's source ledger: storage, conflicts and listing, shared safely between threads.

It decides like METI's open-source ledger (millpont/open-meti), trigger by trigger:
- ``process_feature_collection``: a collection is read (``reading.py``) and stored all or
  nothing; its rows are inserted in order, and each row's checks see the rows before it, so
  duplicates in one collection conflict with each other;
- ``sources_before_insert``: hectares, centroid, country; the row conflicts with every stored
  source of the same country whose ``[start_at, end_at)`` overlaps and which intersects the
  new polygon buffered by -9 m; its ``percent_overlap`` is over those partners;
- ``sources_after_insert`` (after the whole collection): each partner gets the new id and its
  ``percent_overlap`` again, over its mutual partners;
- ``sources_before_delete``: the id leaves its neighbours' ``conflict_with``; every source
  that intersects the deleted one and overlaps it in time gets ``percent_overlap`` again, over
  *every* source intersecting it and overlapping it in time.
No trigger touches ``updated_at``. Choices and known differences are in ``decisions.py``.

Every source belongs to one account. Reads and deletes can be limited to an account (the API
always limits them to the caller's); conflicts are found across accounts, as in METI.

Longer than most modules on purpose: one lock guards storage, conflict marking and listing
together, and splitting the class would split what that lock keeps consistent.
"""

from __future__ import annotations

import json
import random
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, cast

from airflow_provider_meti.emulator.areas import hectares
from airflow_provider_meti.emulator.countries import CountryBoundaries
from airflow_provider_meti.emulator.credentials import DEFAULT_ACCOUNT
from airflow_provider_meti.emulator.decisions import DEFAULT_COUNTRY
from airflow_provider_meti.emulator.geometry import (
    BBox,
    centroid,
    equal_area,
    shrunk_for_conflicts,
)
from airflow_provider_meti.emulator.grid_index import GridIndex
from airflow_provider_meti.emulator.reading import ReadFeature, read_collection
from airflow_provider_meti.emulator.timestamps import format_timestamptz, parse_timestamptz
from airflow_provider_meti.emulator.validity import BaseGeometry, shapely

COUNTRY = DEFAULT_COUNTRY
FIELD_NAMES = (
    "methodology",
    "source_type",
    "attribute_type",
    "geometry_source",
    "tags",
    "steward_id",
    "project_id",
    "outcome_reporting_year",
)
"""v2's descriptive SourceCreateRequest fields, stored on every source of one create."""
FILTER_FIELDS = ("methodology", "steward_id", "project_id", "outcome_reporting_year")
PROTECTED_AREA_FIELDS = ("pa_name", "pa_designation", "wdpaid")
_ID_ALPHABET = string.ascii_letters + string.digits
ConcurrentConflicts = Literal["serial", "ledger"]

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


@dataclass(frozen=True)
class SourceFilter:
    """Which sources a listing returns; ``None`` means "any"."""

    account_id: str | None = None
    methodology: str | None = None
    steward_id: str | None = None
    project_id: str | None = None
    outcome_reporting_year: str | None = None
    alt_id: str | None = None
    source_id: str | None = None
    """v2's ``id`` filter: only the source with this id."""
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
        if self.source_id is not None and source["id"] != self.source_id:
            return False
        if self.conflict is not None and source["conflict"] != self.conflict:
            return False
        if self.created_since is not None and entry.created < self.created_since:
            return False
        # No trigger touches updated_at, so it is always created_at.
        return self.updated_since is None or entry.created >= self.updated_since

    def is_empty(self) -> bool:
        """True when nothing is filtered out."""
        return self == SourceFilter()


@dataclass(eq=False)  # identity: entries are used as set members and dict keys
class _Entry:
    """One stored source with what the ledger needs beside its JSON."""

    sequence: int
    source: dict[str, Any]
    geometry: BaseGeometry
    bbox: BBox
    start: datetime
    end: datetime
    created: datetime
    account_id: str
    country: str | None
    commit: int = 0
    shrunk: BaseGeometry | None = field(default=None, repr=False)
    encoded: bytes | None = field(default=None, repr=False)
    _equal_area: BaseGeometry | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return cast(str, self.source["id"])

    @property
    def updated(self) -> datetime:
        return self.created

    def json_bytes(self) -> bytes:
        """The source as compact JSON, serialized once until it changes."""
        if self.encoded is None:
            self.encoded = json.dumps(self.source, separators=(",", ":")).encode()
        return self.encoded

    def changed(self) -> None:
        self.encoded = None

    def equal_area(self) -> BaseGeometry:
        """The geometry in EPSG:6933 (for ``percent_overlap``), computed once."""
        if self._equal_area is None:
            self._equal_area = equal_area(self.geometry)
        return self._equal_area

    def shrunk_geometry(self) -> BaseGeometry:
        """The geometry buffered by -9 m (the new row's side of the conflict test)."""
        if self.shrunk is None:
            self.shrunk = shrunk_for_conflicts(self.geometry)
            shapely.prepare(self.shrunk)
        return self.shrunk

    def overlaps_in_time(self, other: _Entry) -> bool:
        """``tstzrange(start_at, end_at) && tstzrange(...)``: half-open windows overlap."""
        return self.start < other.end and other.start < self.end

    def same_country(self, other: _Entry) -> bool:
        """``a.country = b.country``: NULL equals nothing, not even NULL."""
        return self.country is not None and self.country == other.country


class Ledger:
    """Thread-safe store of sources deciding like METI's ledger.

    :param seed: seeds the generator of ids, so a run is reproducible
    :param clock: returns the current aware UTC time (for ``created_at``/``updated_at``)
    :param countries: country boundaries (a GeoJSON FeatureCollection, its path, or
        ``CountryBoundaries``); None: one country, ``XX``, covering the world
    :param sandbox: a ``/sandbox`` ledger: ``sandbox_`` ids, never a conflict,
        ``unep_overlap`` None
    :param concurrent_conflicts: ``"serial"`` (default): creates run one after the other;
        ``"ledger"``: METI's READ COMMITTED race, where a create does not see the rows of
        creates still in their transaction, so two overlapping collections sent at once are
        both stored without a conflict
    :param transaction_hold: in ``"ledger"`` mode, called (outside the lock) between a
        create's conflict search and its commit, e.g. ``threading.Barrier(2).wait`` to make
        two creates overlap deterministically
    :param transaction_seconds: in ``"ledger"`` mode, how long each create holds its
        transaction open (for HTTP tests that cannot reach the hook)
    """

    def __init__(
        self,
        seed: int = 0,
        clock: Callable[[], datetime] = utc_now,
        *,
        countries: CountryBoundaries | Mapping[str, Any] | str | Path | None = None,
        sandbox: bool = False,
        concurrent_conflicts: ConcurrentConflicts = "serial",
        transaction_hold: Callable[[], object] | None = None,
        transaction_seconds: float = 0.0,
    ) -> None:
        if concurrent_conflicts not in ("serial", "ledger"):
            raise ValueError(
                f"concurrent_conflicts must be 'serial' or 'ledger', got {concurrent_conflicts!r}"
            )
        if transaction_seconds < 0:
            raise ValueError("transaction_seconds must not be negative")
        self._lock = threading.RLock()
        self._seed = seed
        self._clock = clock
        self._random = random.Random(seed)
        self._countries = (
            countries
            if countries is None or isinstance(countries, CountryBoundaries)
            else CountryBoundaries.load(countries)
        )
        self.sandbox = sandbox
        self.concurrent_conflicts = concurrent_conflicts
        self._hold = transaction_hold
        self._hold_seconds = transaction_seconds
        self._entries: dict[str, _Entry] = {}
        self._by_alt_id: dict[str, dict[str, None]] = {}
        self._index = GridIndex()
        self._sequence = 0
        self._commits = 0
        self._pending_ids: set[str] = set()
        self._missed: list[tuple[str, str]] = []
        self._seed_cursor = 0
        self._seed_areas: dict[int, float] = {}
        # Bumped by every write, so a cached listing knows when it is stale.
        self._version = 0
        self._listing_cache: tuple[SourceFilter, int, list[_Entry]] | None = None

    # --- writes ----------------------------------------------------------------------------

    def create(
        self,
        feature_collection: Mapping[str, Any],
        *,
        account_id: str = DEFAULT_ACCOUNT,
        fields: Mapping[str, Any] | None = None,
    ) -> list[dict[str, str]]:
        """Read and store every feature, or none; return ``{"id", "alt_id"}`` per feature.

        :param feature_collection: a GeoJSON FeatureCollection
        :param account_id: the account the new sources belong to
        :param fields: v2's descriptive fields (``FIELD_NAMES``) for every new source;
            ``properties`` are not copied (the ledger does not copy them)
        :raises CollectionRejected: a feature or the collection breaks a rule; nothing stored
        """
        descriptive = _descriptive_fields(fields or {})
        features = read_collection(feature_collection)
        if self.concurrent_conflicts == "serial":
            with self._lock:
                rows = self._insert_rows(features, account_id, descriptive)
                self._commit(rows, snapshot=self._commits)
        else:
            with self._lock:
                snapshot = self._commits
                rows = self._insert_rows(features, account_id, descriptive)
            try:
                if self._hold is not None:
                    self._hold()
                if self._hold_seconds:
                    time.sleep(self._hold_seconds)
            except BaseException:
                with self._lock:  # the transaction rolls back: nothing is stored
                    self._pending_ids.difference_update(row.id for row in rows)
                raise
            with self._lock:
                self._commit(rows, snapshot=snapshot)
        return [{"id": row.id, "alt_id": row.source["alt_id"]} for row in rows]

    @property
    def missed_conflicts(self) -> list[tuple[str, str]]:
        """Pairs of sources that would conflict but were stored by concurrent transactions
        (``"ledger"`` mode), so neither lists the other; in commit order."""
        with self._lock:
            return list(self._missed)

    def delete(self, source_id: str, *, account_id: str | None = None) -> bool:
        """Delete one source as the ledger's delete triggers do; False when it does not exist.

        :param account_id: only a source of this account (None: any account)
        """
        with self._lock:
            entry = self._entries.get(source_id)
            if entry is None or not _in_account(entry, account_id):
                return False
            self._before_delete(entry)
            del self._entries[source_id]
            self._forget(entry)
            self._version += 1
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
        **fields: Any,
    ) -> int:
        """Bulk-insert ``count`` generated, non-overlapping sources (for benchmarks).

        They skip the conflict search: they lie apart from each other on a lattice in a
        reserved area (see ``SEED_ORIGIN``). Extra keyword arguments are descriptive fields
        (``FIELD_NAMES``) such as ``methodology`` or ``project_id``.

        :param count: how many sources to add
        :param account_id: the account the new sources belong to
        :return: the number of sources stored afterwards
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a non-negative integer, got {count!r}")
        start, end = parse_timestamptz(start_at), parse_timestamptz(end_at)
        if end <= start:
            raise ValueError("end_at must be after start_at")
        descriptive = _descriptive_fields(fields)
        with self._lock:
            if self._seed_cursor + count > SEED_CAPACITY:
                raise ValueError(f"at most {SEED_CAPACITY} generated sources fit the lattice")
            self._version += 1
            self._commits += 1
            now = self._clock()
            positions = range(self._seed_cursor, self._seed_cursor + count)
            self._seed_cursor += count
            rows = [divmod(position, SEED_COLUMNS) for position in positions]
            wests = [SEED_ORIGIN[0] + column * SEED_PITCH_DEG for _, column in rows]
            souths = [SEED_ORIGIN[1] - row * SEED_PITCH_DEG for row, _ in rows]
            boxes = shapely.box(
                wests,
                souths,
                [w + SEED_SIDE_DEG for w in wests],
                [s + SEED_SIDE_DEG for s in souths],
            )
            for position, (row, _), west, south, geometry in zip(
                positions, rows, wests, souths, boxes, strict=True
            ):
                entry = self._lattice_entry(
                    position, row, west, south, geometry, start, end, descriptive, now, account_id
                )
                self._store(entry)
            return len(self._entries)

    def clear(self) -> None:
        """Drop every source and restart the id generator from the seed."""
        with self._lock:
            self._entries.clear()
            self._by_alt_id.clear()
            self._index.clear()
            self._missed.clear()
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
            return cast("dict[str, Any]", json.loads(entry.json_bytes()))

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

    # --- listing ---------------------------------------------------------------------------

    def _matching(self, filters: SourceFilter) -> list[_Entry]:
        """Entries passing ``filters``; the last answer is reused while nothing changes,
        so paging through a large ledger scans it once."""
        cached = self._listing_cache
        if cached is not None and cached[0] == filters and cached[1] == self._version:
            return cached[2]
        if filters.source_id is not None:
            entry = self._entries.get(filters.source_id)
            matching = [] if entry is None else [entry]
        elif filters.alt_id is not None:
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

    # --- insert: process_feature_collection, sources_before_insert -------------------------

    def _insert_rows(
        self, features: list[ReadFeature], account_id: str, fields: Mapping[str, Any]
    ) -> list[_Entry]:
        now = self._clock()
        rows: list[_Entry] = []
        for feature in features:
            rows.append(self._before_insert(feature, rows, now, account_id, fields))
        self._pending_ids.update(row.id for row in rows)
        return rows

    def _before_insert(
        self,
        feature: ReadFeature,
        earlier: list[_Entry],
        now: datetime,
        account_id: str,
        fields: Mapping[str, Any],
    ) -> _Entry:
        geometry = feature.geometry
        point = centroid(geometry)
        country = (
            COUNTRY if self._countries is None else self._countries.country_of(point[0], point[1])
        )
        source = self._source_dict(
            alt_id=feature.alt_id,
            start=feature.start,
            end=feature.end,
            geojson=feature.feature,
            hectares=hectares(feature.polygons),
            country=country,
            centroid=point,
            fields=fields,
            now=now,
        )
        self._sequence += 1
        entry = _Entry(
            self._sequence,
            source,
            geometry,
            cast(BBox, tuple(geometry.bounds)),
            feature.start,
            feature.end,
            now,
            account_id,
            country,
        )
        if self.sandbox:
            return entry
        shrunk = entry.shrunk_geometry()
        partners = [
            other
            for other in self._visible(shrunk, earlier)
            if other.same_country(entry)
            and other.overlaps_in_time(entry)
            and shapely.intersects(other.geometry, shrunk)
        ]
        entry.source["conflict_with"] = [partner.id for partner in partners]
        entry.source["conflict"] = bool(partners)
        if partners:
            entry.source["percent_overlap"] = _covered_share(
                entry,
                [
                    partner
                    for partner in partners
                    if partner.overlaps_in_time(entry)
                    and shapely.intersects(partner.geometry, geometry)
                ],
            )
        return entry

    def _visible(self, shrunk: BaseGeometry, earlier: list[_Entry]) -> list[_Entry]:
        """Committed sources whose box meets ``shrunk``'s, then this statement's earlier rows.

        Rows of other creates still in their transaction are not stored yet, so they are not
        seen, as under READ COMMITTED.
        """
        if shrunk.is_empty:  # ST_Intersects(x, EMPTY) is false
            return []
        keys = cast("set[str]", self._index.candidates(cast(BBox, tuple(shrunk.bounds))))
        committed = sorted((self._entries[key] for key in keys), key=lambda e: e.sequence)
        return [*committed, *earlier]

    # --- commit: sources_after_insert ------------------------------------------------------

    def _commit(self, rows: list[_Entry], *, snapshot: int) -> None:
        self._commits += 1
        self._version += 1
        for row in rows:
            row.commit = self._commits
            self._pending_ids.discard(row.id)
            self._store(row)
        if self.sandbox:
            return
        for row in rows:
            self._after_insert(row)
        if snapshot < self._commits - 1:
            self._note_missed(rows, snapshot)

    def _after_insert(self, new: _Entry) -> None:
        if not new.source["conflict"]:
            return
        partners = [self._entries[i] for i in new.source["conflict_with"] if i in self._entries]
        for partner in partners:
            kept = list(dict.fromkeys(partner.source["conflict_with"]))
            partner.source["conflict_with"] = [*kept, new.id]
            partner.source["conflict"] = True
            partner.changed()
        for partner in partners:
            if shapely.intersects(partner.geometry, new.geometry):
                partner.source["percent_overlap"] = self._mutual_share(partner)

    def _mutual_share(self, subject: _Entry) -> float | None:
        listed = set(subject.source["conflict_with"])
        others = [
            other
            for other in self._nearby(subject)
            if other.id in listed
            and subject.id in other.source["conflict_with"]
            and other.same_country(subject)
            and other.overlaps_in_time(subject)
            and shapely.intersects(other.geometry, subject.geometry)
        ]
        return _covered_share(subject, others)

    def _note_missed(self, rows: list[_Entry], snapshot: int) -> None:
        """Record conflicts the race hid: rows committed by others since ``snapshot``."""
        own = {row.id for row in rows}
        for row in rows:
            for other in self._nearby(row):
                if other.id in own or other.commit <= snapshot or other.commit == row.commit:
                    continue
                if (
                    other.same_country(row)
                    and other.overlaps_in_time(row)
                    and (
                        shapely.intersects(other.geometry, row.shrunk_geometry())
                        or shapely.intersects(row.geometry, other.shrunk_geometry())
                    )
                ):
                    self._missed.append((other.id, row.id))

    # --- delete: sources_before_delete, remove_conflict_id_on_delete -----------------------

    def _before_delete(self, old: _Entry) -> None:
        nearby = self._nearby(old)
        listed = [self._entries[i] for i in old.source["conflict_with"] if i in self._entries]
        for neighbour in dict.fromkeys([*listed, *nearby]):
            if neighbour is old or old.id not in neighbour.source["conflict_with"]:
                continue
            remaining = [i for i in neighbour.source["conflict_with"] if i != old.id]
            neighbour.source["conflict_with"] = remaining
            neighbour.source["conflict"] = bool(remaining)
            neighbour.changed()
        for neighbour in nearby:
            if (
                neighbour is old
                or not neighbour.same_country(old)
                or not neighbour.overlaps_in_time(old)
                or not shapely.intersects(neighbour.geometry, old.geometry)
            ):
                continue
            if not neighbour.source["conflict"] or not neighbour.source["conflict_with"]:
                share = None
            else:
                # Not only partners: every source meeting it in space and time counts here.
                share = _covered_share(
                    neighbour,
                    [
                        other
                        for other in self._nearby(neighbour)
                        if other is not neighbour
                        and other is not old
                        and other.same_country(neighbour)
                        and other.overlaps_in_time(neighbour)
                        and shapely.intersects(other.geometry, neighbour.geometry)
                    ],
                )
            neighbour.source["percent_overlap"] = share
            neighbour.changed()
        # remove_conflict_id_on_delete then clears `conflict` where conflict_with is empty,
        # which the loop above has already done for every source listing the deleted one.

    # --- storage ---------------------------------------------------------------------------

    def _nearby(self, entry: _Entry) -> list[_Entry]:
        keys = cast("set[str]", self._index.candidates(entry.bbox))
        return sorted((self._entries[key] for key in keys), key=lambda other: other.sequence)

    def _source_dict(
        self,
        *,
        alt_id: str,
        start: datetime,
        end: datetime,
        geojson: dict[str, Any],
        hectares: float,
        country: str | None,
        centroid: tuple[float, float],
        fields: Mapping[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        stamp = format_timestamptz(now)
        return {
            "id": self._new_id(),
            "alt_id": alt_id,
            "start_at": format_timestamptz(start),
            "end_at": format_timestamptz(end),
            "geojson": geojson,
            "hectares": hectares,
            "country": country,
            "centroid": [centroid[0], centroid[1]],
            "conflict": False,
            "conflict_with": [],
            "percent_overlap": None,
            # docs leave open how METI decides a protected-area overlap; none known here.
            "unep_overlap": None if self.sandbox else False,
            **dict.fromkeys(PROTECTED_AREA_FIELDS),
            **fields,
            "created_at": stamp,
            "updated_at": stamp,
        }

    def _new_id(self) -> str:
        while True:
            if self.sandbox:
                source_id = f"sandbox_{self._random.getrandbits(128):032x}"
            else:
                source_id = "src_" + "".join(self._random.choices(_ID_ALPHABET, k=13))
            if source_id not in self._entries and source_id not in self._pending_ids:
                return source_id

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

    def _lattice_entry(
        self,
        position: int,
        row: int,
        west: float,
        south: float,
        geometry: BaseGeometry,
        start: datetime,
        end: datetime,
        fields: Mapping[str, Any],
        now: datetime,
        account_id: str,
    ) -> _Entry:
        east, north = west + SEED_SIDE_DEG, south + SEED_SIDE_DEG
        ring = [(west, south), (east, south), (east, north), (west, north), (west, south)]
        if row not in self._seed_areas:
            self._seed_areas[row] = hectares([[ring]])
        alt_id = f"seed-{position:07d}"
        point = (west + SEED_SIDE_DEG / 2, south + SEED_SIDE_DEG / 2)
        feature = {
            "type": "Feature",
            "id": alt_id,
            "properties": {
                "start_at": format_timestamptz(start),
                "end_at": format_timestamptz(end),
            },
            "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
        }
        country = (
            COUNTRY if self._countries is None else self._countries.country_of(point[0], point[1])
        )
        source = self._source_dict(
            alt_id=alt_id,
            start=start,
            end=end,
            geojson=feature,
            hectares=self._seed_areas[row],
            country=country,
            centroid=point,
            fields=fields,
            now=now,
        )
        self._sequence += 1
        return _Entry(
            self._sequence,
            source,
            geometry,
            (west, south, east, north),
            start,
            end,
            now,
            account_id,
            country,
            commit=self._commits,
        )


def _covered_share(subject: _Entry, others: Iterable[_Entry]) -> float | None:
    """``LEAST(1, GREATEST(0, area(union of intersections) / area))`` in EPSG:6933."""
    planar = subject.equal_area()
    area = float(planar.area)
    if area == 0:
        return None
    pieces = [shapely.intersection(other.equal_area(), planar) for other in others]
    covered = float(shapely.union_all(pieces).area) if pieces else 0.0
    return min(1.0, max(0.0, covered / area))


def _descriptive_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(FIELD_NAMES)
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    return {name: fields.get(name) for name in FIELD_NAMES}


def _in_account(entry: _Entry, account_id: str | None) -> bool:
    return account_id is None or entry.account_id == account_id
