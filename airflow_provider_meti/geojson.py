"""FeatureCollection loading, validation and batching, before anything reaches METI.

The rules follow METI's open-source ledger (millpont/open-meti): a collection is all or
nothing, a feature needs a Polygon or MultiPolygon that ``ST_IsValid`` accepts (closed,
non-self-intersecting rings, holes inside their shell, parts not overlapping; see
:mod:`airflow_provider_meti.polygons`), ``start_at`` and ``end_at``, a window longer than one
day and an ``id`` shorter than 50 characters. Two rules are the client's own policy, stricter
than the ledger: unique ids, and no ring crossing the antimeridian. Unlike the API, which
answers every failure with one generic message, this module names the feature, the field and
the rule. The emulator has its own independent rules, so the two can check each other.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from airflow_provider_meti.exceptions import (
    FeatureProblem,
    MetiInputUnavailableError,
    MetiValidationError,
)
from airflow_provider_meti.polygons import parts_reason, polygon_reason
from airflow_provider_meti.rings import Point, ring_topology_reason
from airflow_provider_meti.timestamps import parse_timestamp as parse_timestamp  # also public here

MAX_ID_LENGTH = 50
"""``alt_id`` must be shorter than this (the ledger's ``length(alt_id) < 50``)."""
MIN_WINDOW = timedelta(days=1)
"""``end_at`` must be strictly later than ``start_at`` plus this."""
MAX_POSITION_PROBLEMS_PER_RING = 10
"""Bad positions reported one by one per ring; the rest are counted in one summary."""


# --- loading -------------------------------------------------------------------------------


def load_feature_collection(value: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """Return a FeatureCollection given as a dict, a JSON string or a ``.geojson``/``.json`` path.

    A string whose first non-blank character is ``{`` (or ``[``) is parsed as JSON; any other
    string is a file path. Only the JSON syntax is checked here: call
    :func:`validate_feature_collection` for the METI rules.

    :param value: the collection itself, its JSON text, or the path of a file holding it
    :raises MetiValidationError: the file is missing or unreadable, the JSON is malformed, or
        the value is neither a mapping, a string nor a path
    """
    if isinstance(value, dict):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        return _parse_json_object(value, where="FeatureCollection")
    if isinstance(value, (str, os.PathLike)):
        return _load_file(Path(value))
    raise _single_problem(
        "FeatureCollection",
        "expected a dict, a JSON string or the path of a .geojson/.json file, "
        f"got {type(value).__name__}",
    )


def _load_file(path: Path) -> dict[str, Any]:
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _unavailable(where, "file not found") from None
    except UnicodeDecodeError:
        raise _single_problem(where, "is not UTF-8 text") from None
    except OSError as error:
        raise _unavailable(where, f"cannot be read ({error.strerror or error})") from None
    return _parse_json_object(text, where=where)


def _parse_json_object(text: str, *, where: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        reason = f"is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        raise _single_problem(where, reason) from None
    if not isinstance(parsed, dict):
        raise _single_problem(where, f"must be a JSON object, got {_json_type(parsed)}")
    return parsed


def _single_problem(where: str, reason: str) -> MetiValidationError:
    return MetiValidationError([FeatureProblem(None, None, where, reason)])


def _unavailable(where: str, reason: str) -> MetiInputUnavailableError:
    return MetiInputUnavailableError([FeatureProblem(None, None, where, reason)])


# --- validation ----------------------------------------------------------------------------


def validate_feature_collection(fc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Check a FeatureCollection against METI's rules and return its features.

    Every problem of every feature is collected before raising, so one run shows all of them.

    :param fc: the parsed GeoJSON FeatureCollection
    :return: the list of features, in input order
    :raises MetiValidationError: with one :class:`FeatureProblem` per broken rule
    """
    problems = collection_problems(fc)
    if problems:
        raise MetiValidationError(problems)
    return list(fc["features"])


@dataclass(frozen=True)
class ValidFeatureCollection:
    """The features of a collection that passed validation, in input order.

    Passing one to ``create_sources`` skips a second validation of the same features.
    """

    features: tuple[dict[str, Any], ...]


def validated(fc: Mapping[str, Any] | ValidFeatureCollection) -> ValidFeatureCollection:
    """``fc`` checked once (see :func:`validate_feature_collection`)."""
    if isinstance(fc, ValidFeatureCollection):
        return fc
    return ValidFeatureCollection(tuple(validate_feature_collection(fc)))


def collection_problems(fc: Any) -> list[FeatureProblem]:
    """Every reason ``fc`` would be rejected; empty when it is valid.

    Problems of the collection itself have ``index=None``; the others name their feature.

    :param fc: the parsed GeoJSON FeatureCollection (any JSON value is accepted)
    """
    if not isinstance(fc, Mapping):
        return [
            _collection_problem("FeatureCollection", f"must be an object, got {_json_type(fc)}")
        ]
    problems: list[FeatureProblem] = []
    if fc.get("type") != "FeatureCollection":
        problems.append(
            _collection_problem("type", f"must be 'FeatureCollection' ({_got(fc, 'type')})")
        )
    features = fc.get("features")
    if not isinstance(features, list):
        problems.append(
            _collection_problem("features", f"must be a list of features ({_got(fc, 'features')})")
        )
        return problems
    if not features:
        problems.append(_collection_problem("features", "must contain at least one feature"))
    for index, feature in enumerate(features):
        problems.extend(feature_problems(index, feature))
    problems.extend(_duplicate_id_problems(features))
    problems.sort(key=lambda problem: -1 if problem.index is None else problem.index)
    return problems


def feature_problems(index: int, feature: Any) -> list[FeatureProblem]:
    """Every reason one feature would be rejected (ids are checked for uniqueness elsewhere).

    :param index: the feature's position in its collection, used in the messages
    :param feature: the feature as parsed from JSON
    """
    if not isinstance(feature, Mapping):
        return [
            FeatureProblem(index, None, "feature", f"must be an object, got {_json_type(feature)}")
        ]
    feature_id = feature.get("id")
    reasons: list[tuple[str, str]] = []
    if feature.get("type") != "Feature":
        reasons.append(("type", f"must be 'Feature' ({_got(feature, 'type')})"))
    reasons.extend(_id_reasons(feature))
    reasons.extend(_window_reasons(feature.get("properties")))
    reasons.extend(_geometry_reasons(feature.get("geometry"), "geometry" in feature))
    return [FeatureProblem(index, feature_id, field, reason) for field, reason in reasons]


def _collection_problem(field: str, reason: str) -> FeatureProblem:
    return FeatureProblem(None, None, field, reason)


def _id_reasons(feature: Mapping[str, Any]) -> list[tuple[str, str]]:
    if "id" not in feature or feature["id"] is None:
        return [("id", "is required (your own identifier, stored by METI as alt_id)")]
    feature_id = feature["id"]
    if not isinstance(feature_id, str):
        reason = f"must be a string, got {_json_type(feature_id)} {feature_id!r}"
        if isinstance(feature_id, (int, float)) and not isinstance(feature_id, bool):
            reason += f'; quote it, e.g. "{feature_id}"'
        return [("id", reason)]
    if not feature_id.strip():
        return [("id", "must not be empty")]
    if len(feature_id) >= MAX_ID_LENGTH:
        return [("id", f"must be shorter than {MAX_ID_LENGTH} characters (got {len(feature_id)})")]
    return []


def _duplicate_id_problems(features: list[Any]) -> list[FeatureProblem]:
    first_index: dict[str, int] = {}
    problems: list[FeatureProblem] = []
    for index, feature in enumerate(features):
        feature_id = feature.get("id") if isinstance(feature, Mapping) else None
        if not isinstance(feature_id, str):
            continue
        if feature_id in first_index:
            reason = f"duplicates the id of feature {first_index[feature_id]}; ids must be unique"
            problems.append(FeatureProblem(index, feature_id, "id", reason))
        else:
            first_index[feature_id] = index
    return problems


def _window_reasons(properties: Any) -> list[tuple[str, str]]:
    if not isinstance(properties, Mapping):
        got = "missing" if properties is None else f"got {_json_type(properties)}"
        return [("properties", f"must be an object with start_at and end_at ({got})")]
    reasons: list[tuple[str, str]] = []
    start = _timestamp_reason(properties, "start_at", reasons)
    end = _timestamp_reason(properties, "end_at", reasons)
    if start is not None and end is not None and end <= start + MIN_WINDOW:
        shown = f"{properties['start_at']} .. {properties['end_at']}"
        reasons.append(
            ("properties.end_at", f"must be more than one day after start_at (got {shown})")
        )
    return reasons


def _timestamp_reason(
    properties: Mapping[str, Any], key: str, reasons: list[tuple[str, str]]
) -> datetime | None:
    field = f"properties.{key}"
    value = properties.get(key)
    if value is None:
        reasons.append((field, "is required (an ISO 8601 timestamp)"))
        return None
    if not isinstance(value, str):
        reasons.append((field, f"must be an ISO 8601 string, got {_json_type(value)} {value!r}"))
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        reasons.append((field, f"is not an ISO 8601 timestamp (got {value!r})"))
        return None


GEOMETRY_TYPES = ("Polygon", "MultiPolygon")
"""What METI stores: the docs say "valid Polygon", the Rulebook adds MultiPolygon (May 2025)."""


def _geometry_reasons(geometry: Any, present: bool) -> list[tuple[str, str]]:
    if geometry is None:
        return [
            (
                "geometry",
                "is required (a GeoJSON Polygon or MultiPolygon)"
                if not present
                else "must not be null",
            )
        ]
    if not isinstance(geometry, Mapping):
        return [("geometry", f"must be a GeoJSON object, got {_json_type(geometry)}")]
    kind = geometry.get("type")
    if kind not in GEOMETRY_TYPES:
        got = _got(geometry, "type")
        return [("geometry.type", f"METI takes 'Polygon' or 'MultiPolygon' ({got})")]
    if kind == "Polygon":
        return _polygon_reasons("geometry.coordinates", geometry.get("coordinates"), part=None)
    return _multipolygon_reasons(geometry.get("coordinates"))


def _multipolygon_reasons(parts: Any) -> list[tuple[str, str]]:
    field = "geometry.coordinates"
    if not isinstance(parts, list):
        return [(field, f"must be a list of polygons ({_got_value(parts)})")]
    if not parts:
        return [(field, "a MultiPolygon needs at least one part (polygon)")]
    reasons: list[tuple[str, str]] = []
    for number, part in enumerate(parts):
        reasons.extend(_polygon_reasons(f"{field}[{number}]", part, part=number))
    if reasons or len(parts) < 2:
        return reasons
    reason = parts_reason([[_xy(ring) for ring in part] for part in parts])
    return [(field, reason)] if reason else []


def _polygon_reasons(field: str, rings: Any, *, part: int | None) -> list[tuple[str, str]]:
    prefix = "" if part is None else f"part {part}: "
    if not isinstance(rings, list):
        return [(field, f"{prefix}must be a list of linear rings ({_got_value(rings)})")]
    if not rings:
        return [(field, f"{prefix}must contain at least one ring")]
    reasons: list[tuple[str, str]] = []
    for ring_index, ring in enumerate(rings):
        ring_prefix = "" if part is None else f"part {part}, ring {ring_index}: "
        ring_reasons = _ring_reasons(f"{field}[{ring_index}]", ring)
        reasons.extend((where, ring_prefix + reason) for where, reason in ring_reasons)
    if reasons:
        return reasons
    reason = polygon_reason([_xy(ring) for ring in rings])
    return [(field, prefix + reason)] if reason else []


def _ring_reasons(field: str, ring: Any) -> list[tuple[str, str]]:
    if not isinstance(ring, list):
        return [(field, f"must be a list of positions, got {_json_type(ring)}")]
    if len(ring) < 4:
        return [(field, f"a ring needs at least 4 positions, got {len(ring)}")]
    bad = [
        (f"{field}[{i}]", reason)
        for i, position in enumerate(ring)
        if (reason := _position_reason(position)) is not None
    ]
    if bad:
        shown = bad[:MAX_POSITION_PROBLEMS_PER_RING]
        hidden = len(bad) - len(shown)
        if hidden:
            shown.append((field, f"{hidden} more positions are invalid"))
        return shown
    points = _xy(ring)
    if points[0] != points[-1]:
        return [(field, f"ring is not closed: first {_fmt(points[0])} != last {_fmt(points[-1])}")]
    reason = antimeridian_reason(points) or ring_topology_reason(points)
    return [(field, reason)] if reason else []


def antimeridian_reason(ring: Sequence[Point]) -> str | None:
    """Why a ring must be split at 180° before METI sees it, or None.

    METI's ledger intersects in the plane (``ST_Intersects`` on geometry), so an edge from
    179.9 to -179.9 is read as running the long way round: the field becomes a band about
    360° wide and conflicts with fields across its whole latitude band. An edge with both
    ends on ±180 (a polar cap, the whole world) is meant as that band and is accepted.

    :param ring: the ring's (longitude, latitude) positions
    """
    for position, (a, b) in enumerate(pairwise(ring)):
        if abs(b[0] - a[0]) > 180 and not (abs(a[0]) == 180 and abs(b[0]) == 180):
            return (
                f"ring crosses the antimeridian between positions {position} {_fmt(a)} and "
                f"{position + 1} {_fmt(b)}; split the field at 180° into a MultiPolygon "
                "(RFC 7946, section 3.1.9)"
            )
    return None


def _xy(ring: list[Any]) -> list[Point]:
    return [(float(position[0]), float(position[1])) for position in ring]


def _position_reason(position: Any) -> str | None:
    if not isinstance(position, (list, tuple)):
        return f"must be a [longitude, latitude] pair, got {_json_type(position)}"
    if len(position) not in (2, 3):
        return f"must have 2 or 3 numbers, got {len(position)}"
    for axis, value in zip(("longitude", "latitude", "altitude"), position, strict=False):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{axis} must be a number, got {_json_type(value)} {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{axis} must be finite, got {value!r}"
    lon, lat = position[0], position[1]
    if not -180 <= lon <= 180:
        return f"longitude must be within [-180, 180], got {lon!r}"
    if not -90 <= lat <= 90:
        return f"latitude must be within [-90, 90], got {lat!r}"
    return None


# --- batching ------------------------------------------------------------------------------


def batched(features: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Yield consecutive lists of at most ``size`` features, in order.

    :param features: the features to split
    :param size: the largest batch, at least 1
    :raises ValueError: ``size`` is not a positive integer
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    for start in range(0, len(features), size):
        yield list(features[start : start + size])


def as_feature_collection(features: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Wrap features in a GeoJSON FeatureCollection.

    :param features: the features, in the order they should be sent
    """
    return {"type": "FeatureCollection", "features": list(features)}


# --- message helpers -----------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _got_value(value: Any) -> str:
    return f"got {value!r}" if isinstance(value, str) else f"got {_json_type(value)}"


def _got(container: Mapping[str, Any], key: str) -> str:
    if key not in container:
        return "missing"
    value = container[key]
    return f"got {value!r}" if isinstance(value, str) else f"got {_json_type(value)}"


def _fmt(point: Point) -> str:
    return f"[{point[0]:g}, {point[1]:g}]"
