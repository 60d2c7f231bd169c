"""Every choice the emulator's ledger makes, and every known difference from METI's ledger.

METI's ledger is its open-source SQL (millpont/open-meti: ``process_feature_collection``,
``sources_before_insert``, ``sources_after_insert``, ``sources_before_delete``,
``remove_conflict_id_on_delete``). The emulator follows it; where it does not, or where the
docs leave a point open, the entry is here with a short why. The README's emulator section is
written from this list; ``DIFFERENCES`` is what a test can print.
"""

from __future__ import annotations

from dataclasses import dataclass

ACCEPTED_GEOMETRY_TYPES = ("Polygon", "MultiPolygon")
"""The docs say "a valid Polygon"; the Rulebook (§5.2.1) adds MultiPolygon."""

CONFLICT_INSET_M = 9.0
"""``ST_Buffer(NEW.geometry::geography, -9)``."""

POLAR_LATITUDE = 70.0
"""PostGIS buffers a geography whose centre lies beyond this in a polar azimuthal frame."""

UTM_ZONE_WIDTH = 6.0
"""PostGIS buffers a geography narrower than this (degrees of longitude) in its UTM zone."""

DEFAULT_COUNTRY = "XX"
"""Without country boundaries, every source gets this country: one country for the world."""


@dataclass(frozen=True)
class Decision:
    """One point where the emulator had to choose."""

    topic: str
    emulator: str
    ledger: str
    why: str

    @property
    def differs(self) -> bool:
        return self.emulator != self.ledger


_SAME = "same"

DECISIONS: tuple[Decision, ...] = (
    Decision(
        "Points, LineStrings, GeometryCollections",
        "refused",
        "stored (ST_IsValid is true), 0 ha, never conflict",
        "the docs say a valid Polygon and the Rulebook adds MultiPolygon; anything else is "
        "outside the docs, and refusing it keeps tests from relying on it",
    ),
    Decision(
        "empty geometries (coordinates [])",
        "refused",
        "stored (an empty geometry is valid), 0 ha, never conflict",
        "the docs require at least four positions per ring",
    ),
    Decision(
        "ids that are JSON objects or arrays",
        "refused",
        "stored as their JSON text",
        "no one means that; strings, numbers and booleans are read as the ledger reads them",
    ),
    Decision(
        "ids that are non-integer numbers",
        "the number as Python prints it (1001.50 -> '1001.5')",
        "the digits as sent (jsonb keeps 1001.50)",
        "the JSON parser has turned the number into a float before the ledger sees it",
    ),
    Decision(
        "timestamps in PostgreSQL's rarer input forms (named months, Julian days, 'epoch', "
        "'infinity', 'now')",
        "refused",
        "read",
        "the common forms are read as timestamptz reads them (YYYY-MM-DD or YYYY/MM/DD, 'T' or a "
        "space, Z/UTC/GMT/offsets, rounding to 1 µs); the rest would need PostgreSQL's parser",
    ),
    Decision(
        "timestamps without a zone",
        "UTC",
        "the session TimeZone (UTC on Supabase by default)",
        "docs leave open the server's TimeZone",
    ),
    Decision(
        "how start_at/end_at/created_at are printed",
        "ISO 8601 UTC with Z, milliseconds (microseconds when not whole)",
        "not in the SQL (the API formats timestamptz); v2 examples show 2026-04-13T14:22:01.000Z",
        "docs leave open the exact format",
    ),
    Decision(
        "the -9 m buffer, outside the polar caps and narrower than 6° of longitude",
        "a local metric frame at the field, buffer 9 m divided by the UTM scale factor at the "
        "field's centre",
        "a buffer of 9 m in the UTM zone of the centre",
        "the same ground distance to well under a millimetre for fields; no PROJ needed",
    ),
    Decision(
        "the -9 m buffer, centre beyond ±70° latitude",
        _SAME,
        _SAME,
        "modelled exactly: PostGIS's polar Lambert azimuthal equal-area frame (EPSG:3574 "
        "north, 3409 south) on the ellipsoid, so the threshold depends on direction (about "
        "8.87 m east-west and 9.14 m north-south at 70°) as in METI",
    ),
    Decision(
        "the -9 m buffer, polygons 6° of longitude or wider",
        "a local frame at the centre with 9 m",
        "PostGIS's custom LAEA zones or World Mercator",
        "fields are not that wide; modelling every zone would need PROJ",
    ),
    Decision(
        "geometry crossing the antimeridian (lon jumping 179 -> -179)",
        _SAME,
        _SAME,
        "ST_Intersects is planar, so such a field is a 360°-wide band that conflicts with "
        "fields in its latitude band; the emulator does the same in both orders; hectares stay "
        "the small geodesic field's",
    ),
    Decision(
        "hectares",
        _SAME,
        _SAME,
        "ST_Area(geography, true) / 10000, unrounded: Karney's geodesic polygon area on WGS84 "
        "(geographiclib, as PostGIS uses), each ring's absolute area, holes subtracted",
    ),
    Decision(
        "percent_overlap",
        _SAME,
        _SAME,
        "on insert, the share of the source's area (EPSG:6933, equal-area cylindrical, planar) "
        "covered by the union of its conflict partners; after a delete, by every source that "
        "intersects it and overlaps it in time, partner or not; None without conflicts",
    ),
    Decision(
        "updated_at of neighbours",
        _SAME,
        _SAME,
        "never changes: no trigger sets it",
    ),
    Decision(
        "country",
        "XX for every source, or the user's boundaries (Ledger(countries=...))",
        "from METI's countries table, by centroid",
        "METI's boundaries are not published; with countries= a centroid in no boundary gives "
        "None, which never conflicts, as in METI",
    ),
    Decision(
        "concurrent creates",
        "serial by default; Ledger(concurrent_conflicts='ledger') reproduces the race",
        "READ COMMITTED without a lock: two overlapping collections in concurrent transactions "
        "are both stored with conflict false",
        "tests should see the documented decisions unless they ask for the race",
    ),
    Decision(
        "concurrent deletes",
        "serial",
        "READ COMMITTED races too",
        "not modelled",
    ),
    Decision(
        "protected areas (unep_overlap, pa_name, pa_designation, wdpaid)",
        "false / None",
        "from UNEP-WCMC data",
        "the emulator knows no protected areas; docs leave open how the overlap is decided",
    ),
    Decision(
        "order of ids in conflict_with",
        "creation order",
        "the order of the SQL loop (index order, unspecified)",
        "deterministic for tests",
    ),
    Decision(
        "an empty features array",
        "succeeds, stores nothing",
        "succeeds, stores nothing (no rows to insert)",
        "docs leave open whether the API refuses it before the ledger",
    ),
    Decision(
        "features of one collection",
        _SAME,
        _SAME,
        "inserted in order; each row's conflict search sees the rows before it, so "
        "duplicates in one collection are both stored and conflict with each other",
    ),
    Decision(
        "descriptive fields in properties",
        _SAME,
        _SAME,
        "not copied (the SQL does not); v2's top-level SourceCreateRequest fields are stored",
    ),
)

DIFFERENCES: tuple[Decision, ...] = tuple(entry for entry in DECISIONS if entry.differs)
