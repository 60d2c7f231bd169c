"""Sources as typed Arrow columns: the table schema of a GeoParquet extract.

The fields METI's ledger documents get typed columns; the polygon becomes shapely geometry
(written as WKB by ``parquet``). Nothing is dropped: fields the schema does not know, and
known fields whose value does not fit the column's type, are kept in ``extra_fields`` as a
JSON object, and the typed column is null for that row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import shapely
import shapely.geometry

GEOMETRY_COLUMN = "geometry"
EXTRA_COLUMN = "extra_fields"
GEOMETRY_FIELD = "geojson"  # the source field that holds the polygon

_UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


class _Unfit(ValueError):
    """A value that does not fit its column's type."""


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Unfit
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Unfit
    return float(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Unfit
    return value


def _year(value: Any) -> int:
    # The emulator and v2 filters carry the year as text or as a number: both are a year.
    if isinstance(value, bool):
        raise _Unfit
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return int(value)
    raise _Unfit


def _texts(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Unfit
    return value


def _point(value: Any) -> list[float]:
    """``[lon, lat]``, from a coordinate pair or a GeoJSON Point."""
    if isinstance(value, Mapping) and value.get("type") == "Point":
        value = value.get("coordinates")
    if not isinstance(value, list | tuple) or len(value) not in (2, 3):
        raise _Unfit
    return [_number(item) for item in value]


def _utc_timestamp(value: Any) -> datetime:
    """An ISO 8601 text as an aware UTC datetime; a text without offset is taken as UTC."""
    if not isinstance(value, str):
        raise _Unfit
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"  # Python 3.10's fromisoformat does not read "Z"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise _Unfit from error
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


# name -> (Arrow type, converter). Order is column order.
_TYPED_FIELDS: dict[str, tuple[pa.DataType, Callable[[Any], Any]]] = {
    "id": (pa.string(), _text),
    "alt_id": (pa.string(), _text),
    "start_at": (_UTC_TIMESTAMP, _utc_timestamp),
    "end_at": (_UTC_TIMESTAMP, _utc_timestamp),
    "hectares": (pa.float64(), _number),
    "country": (pa.string(), _text),
    "centroid": (pa.list_(pa.float64()), _point),
    "conflict": (pa.bool_(), _flag),
    "conflict_with": (pa.list_(pa.string()), _texts),
    "percent_overlap": (pa.float64(), _number),
    "methodology": (pa.string(), _text),
    "steward_id": (pa.string(), _text),
    "project_id": (pa.string(), _text),
    "outcome_reporting_year": (pa.int32(), _year),
    "tags": (pa.list_(pa.string()), _texts),
    "created_at": (_UTC_TIMESTAMP, _utc_timestamp),
    "updated_at": (_UTC_TIMESTAMP, _utc_timestamp),
}

SOURCE_SCHEMA = pa.schema(
    [pa.field(name, type_) for name, (type_, _) in _TYPED_FIELDS.items()]
    + [pa.field(EXTRA_COLUMN, pa.string()), pa.field(GEOMETRY_COLUMN, pa.binary())]
)
"""Columns of a GeoParquet extract; ``geometry`` holds ISO WKB (see ``parquet``)."""


def _geometry(value: Any) -> shapely.Geometry:
    try:
        geometry = shapely.geometry.shape(value)
    except Exception as error:  # shapely raises several types for malformed GeoJSON
        raise _Unfit from error
    if not isinstance(geometry, shapely.Geometry):
        raise _Unfit
    return geometry


def page_columns(page: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list[Any]], list[Any]]:
    """The typed column values of one page and its geometries (shapely, or None).

    :param page: sources as METI returns them
    :return: ``{column: values}`` for every column but ``geometry``, and the geometries
    """
    columns: dict[str, list[Any]] = {name: [] for name in _TYPED_FIELDS}
    extras: list[str | None] = []
    geometries: list[Any] = []
    for source in page:
        unfit: dict[str, Any] = {}
        for name, (_, convert) in _TYPED_FIELDS.items():
            value = source.get(name)
            if value is not None:
                try:
                    value = convert(value)
                except _Unfit:
                    unfit[name] = value
                    value = None
            columns[name].append(value)
        raw_geometry = source.get(GEOMETRY_FIELD)
        geometry = None
        if raw_geometry is not None:
            try:
                geometry = _geometry(raw_geometry)
            except _Unfit:
                unfit[GEOMETRY_FIELD] = raw_geometry
        geometries.append(geometry)
        for name, value in source.items():
            if name not in _TYPED_FIELDS and name != GEOMETRY_FIELD:
                unfit[name] = value
        extras.append(json.dumps(unfit, ensure_ascii=False, default=str) if unfit else None)
    columns[EXTRA_COLUMN] = extras
    return columns, geometries


def page_table(page: Sequence[Mapping[str, Any]]) -> tuple[pa.Table, list[Any]]:
    """One page of sources as an Arrow table in ``SOURCE_SCHEMA``, and its geometries.

    :param page: sources as METI returns them
    """
    columns, geometries = page_columns(page)
    wkb = shapely.to_wkb(geometries, flavor="iso")  # GeoParquet asks for ISO WKB
    arrays = [
        pa.array(columns[field.name], type=field.type)
        for field in SOURCE_SCHEMA
        if field.name != GEOMETRY_COLUMN
    ]
    arrays.append(pa.array(wkb.tolist(), type=pa.binary()))
    return pa.Table.from_arrays(arrays, schema=SOURCE_SCHEMA), geometries
