"""How the ledger reads a FeatureCollection, and which features make it refuse the lot.

``process_feature_collection`` reads per feature only ``id`` (as text), ``properties.start_at``
and ``properties.end_at`` (``::timestamptz``) and ``geometry`` (``ST_GeomFromGeoJSON``), and
refuses the collection when any geometry is missing or not ``ST_IsValid``, a timestamp is
missing or unreadable, or ``end_at <= start_at + 1 day``; the table adds ``length(alt_id) < 50``.
It never reads a feature's ``type``, accepts numeric ids and numbers given as JSON strings,
and stores duplicates. Every rule here says where it comes from; choices the ledger does not
make are in ``decisions.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_meti.emulator.decisions import ACCEPTED_GEOMETRY_TYPES
from airflow_provider_meti.emulator.rejections import CollectionRejected, Rejection
from airflow_provider_meti.emulator.timestamps import format_timestamptz, parse_timestamptz
from airflow_provider_meti.emulator.validity import (
    BaseGeometry,
    Position,
    build,
    ring_problem,
    validity_problem,
)

ALT_ID_LIMIT = 50
"""``CHECK (length(alt_id) < 50)``."""
MINIMUM_WINDOW = timedelta(days=1)
"""``end_at <= start_at + interval '1 day'`` is refused."""


@dataclass(frozen=True)
class ReadFeature:
    """One feature as the ledger stores it."""

    index: int
    alt_id: str
    start: datetime
    end: datetime
    polygons: list[list[list[Position]]]
    """Each polygon's rings of (lon, lat): one polygon for a Polygon, the parts of a
    MultiPolygon."""
    geometry: BaseGeometry
    feature: dict[str, Any]
    """The whole Feature as sent (the ledger's ``geojson`` column)."""


def read_collection(collection: Any) -> list[ReadFeature]:
    """Every feature of ``collection``, or CollectionRejected listing every problem.

    :raises CollectionRejected: nothing may be stored
    """
    if not isinstance(collection, Mapping) or collection.get("type") != "FeatureCollection":
        raise CollectionRejected(
            [Rejection(None, ("type",), 'must be "FeatureCollection"', "collection")]
        )
    features = collection.get("features")
    if not isinstance(features, list):
        raise CollectionRejected([Rejection(None, ("features",), "must be an array", "collection")])
    read: list[ReadFeature] = []
    problems: list[Rejection] = []
    for index, feature in enumerate(features):
        found: list[Rejection] = []
        result = _read_feature(index, feature, found)
        problems.extend(found)
        if result is not None and not found:
            read.append(result)
    if problems:
        raise CollectionRejected(problems)
    return read


def _read_feature(index: int, feature: Any, problems: list[Rejection]) -> ReadFeature | None:
    if not isinstance(feature, Mapping):
        # feature->>'geometry' of a non-object is NULL: "geometry IS NULL".
        problems.append(Rejection(index, (), "a feature must be a JSON object", "not_a_feature"))
        return None
    alt_id = _alt_id(index, feature.get("id"), problems)
    properties = feature.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    start = _timestamp(index, "start_at", properties.get("start_at"), problems)
    end = _timestamp(index, "end_at", properties.get("end_at"), problems)
    if start is not None and end is not None and end <= start + MINIMUM_WINDOW:
        problems.append(
            Rejection(
                index,
                ("properties", "end_at"),
                "must be more than one day after start_at (got "
                f"{format_timestamptz(start)} .. {format_timestamptz(end)})",
                "window_too_short",
            )
        )
    read = _geometry(index, feature.get("geometry"), problems)
    if alt_id is None or start is None or end is None or read is None:
        return None
    polygons, geometry = read
    copied = json.loads(json.dumps(feature))
    return ReadFeature(index, alt_id, start, end, polygons, geometry, copied)


def _alt_id(index: int, value: Any, problems: list[Rejection]) -> str | None:
    # feature->>'id': a string as is, any other JSON value as its text; NULL breaks NOT NULL.
    if value is None:
        problems.append(Rejection(index, ("id",), "the feature needs an id", "missing_id"))
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)):
        text = json.dumps(value)
    else:
        # docs leave open: the ledger would store an object's JSON text; refused here.
        problems.append(Rejection(index, ("id",), "id must be a string or number", "bad_id"))
        return None
    if len(text) >= ALT_ID_LIMIT:
        problems.append(
            Rejection(
                index,
                ("id",),
                f"id must be shorter than {ALT_ID_LIMIT} characters, got {len(text)}",
                "id_too_long",
            )
        )
        return None
    return text


def _timestamp(index: int, name: str, value: Any, problems: list[Rejection]) -> datetime | None:
    path: tuple[str | int, ...] = ("properties", name)
    if value is None:
        problems.append(Rejection(index, path, f"{name} is missing", "missing_timestamp"))
        return None
    if not isinstance(value, str):
        problems.append(Rejection(index, path, f"{name} must be a string", "bad_timestamp"))
        return None
    try:
        return parse_timestamptz(value)
    except ValueError as error:
        problems.append(Rejection(index, path, str(error), "bad_timestamp"))
        return None


def _geometry(
    index: int, geometry: Any, problems: list[Rejection]
) -> tuple[list[list[list[Position]]], BaseGeometry] | None:
    path: tuple[str | int, ...] = ("geometry",)
    if geometry is None:
        problems.append(Rejection(index, path, "the feature has no geometry", "missing_geometry"))
        return None
    if not isinstance(geometry, Mapping) or geometry.get("type") not in ACCEPTED_GEOMETRY_TYPES:
        kind = geometry.get("type") if isinstance(geometry, Mapping) else None
        problems.append(
            Rejection(
                index,
                ("geometry", "type"),
                f"geometry must be a Polygon or MultiPolygon, got {kind!r}",
                "unsupported_geometry",
            )
        )
        return None
    kind = geometry["type"]
    coordinates = geometry.get("coordinates")
    raw_polygons = [coordinates] if kind == "Polygon" else coordinates
    if not isinstance(raw_polygons, list) or not raw_polygons:
        problems.append(
            Rejection(
                index, (*path, "coordinates"), "coordinates must be a non-empty array", "bad_rings"
            )
        )
        return None
    polygons: list[list[list[Position]]] = []
    before = len(problems)
    for part, raw_rings in enumerate(raw_polygons):
        where: tuple[str | int, ...] = (*path, "coordinates")
        if kind == "MultiPolygon":
            where = (*where, part)
        rings = _rings(index, where, raw_rings, problems)
        if rings is not None:
            polygons.append(rings)
    if len(problems) > before:
        return None
    shape = build(kind, polygons)
    reason = validity_problem(shape)
    if reason is not None:
        problems.append(
            Rejection(index, path, f"not a valid {kind} (ST_IsValid): {reason}", "invalid_geometry")
        )
        return None
    return polygons, shape


def _rings(
    index: int, where: tuple[str | int, ...], raw: Any, problems: list[Rejection]
) -> list[list[Position]] | None:
    if not isinstance(raw, list) or not raw:
        problems.append(Rejection(index, where, "a polygon needs at least one ring", "bad_rings"))
        return None
    rings: list[list[Position]] = []
    for number, raw_ring in enumerate(raw):
        ring = _positions(index, (*where, number), raw_ring, problems)
        if ring is None:
            return None
        problem = ring_problem(ring)
        if problem is not None:
            problems.append(Rejection(index, (*where, number), problem, "bad_ring"))
            return None
        rings.append(ring)
    return rings


def _positions(
    index: int, where: tuple[str | int, ...], raw: Any, problems: list[Rejection]
) -> list[Position] | None:
    if not isinstance(raw, list):
        problems.append(Rejection(index, where, "a ring must be an array", "bad_ring"))
        return None
    ring: list[Position] = []
    for number, position in enumerate(raw):
        point = _position(position)
        if point is None:
            problems.append(
                Rejection(
                    index,
                    (*where, number),
                    "a position must be [longitude, latitude] with -180..180 and -90..90",
                    "bad_position",
                )
            )
            return None
        ring.append(point)
    return ring


def _position(raw: Any) -> Position | None:
    # ST_GeomFromGeoJSON reads numbers given as JSON strings too; extra ordinates (height)
    # are kept by PostGIS and ignored by every later step, so they are dropped here.
    if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) < 2:
        return None
    values = [_number(value) for value in raw[:2]]
    lon, lat = values
    if lon is None or lat is None:
        return None
    # The ::geography cast refuses coordinates out of range, which aborts the insert.
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        return None
    return (lon, lat)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
