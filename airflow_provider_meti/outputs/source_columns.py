"""Sources as typed Arrow columns: the table schema of a GeoParquet extract.

The fields METI's ledger documents get typed columns; the polygon becomes shapely geometry
(written as WKB by ``parquet``). Nothing is dropped: fields the schema does not know, and
known fields whose value does not fit the column's type, are kept in ``extra_fields`` as a
JSON object, and the typed column is null for that row. One odd value never fails the extract.

What fits: text that is valid Unicode (no lone surrogate, which UTF-8 cannot encode); a finite
number for a float column (``inf``, which a JSON decoder makes of ``1e400``, does not); an
integer in int64's range, or its ASCII digits as text, for ``outcome_reporting_year``; an ISO
8601 time whose UTC instant lies in years 1 to 9999; a geometry (bare, or in the stored
Feature) that shapely reads and whose coordinates are finite. ``wdpaid`` is text: WDPA ids
are integers, but METI's reply type is undocumented, and text holds an integer id too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from airflow_provider_meti.outputs.features import stored_geometry
from airflow_provider_meti.outputs.geometries import read_geometries
from airflow_provider_meti.outputs.json_text import compact_json, has_surrogate

GEOMETRY_COLUMN = "geometry"
EXTRA_COLUMN = "extra_fields"
GEOMETRY_FIELD = "geojson"  # the source field that holds the polygon (or the whole Feature)

_UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Unfit(ValueError):
    """A value that does not fit its column's type."""


# What a converter may raise for a value of an unforeseen shape: the value goes to
# extra_fields, the extract goes on.
_UNFIT_ERRORS = (ValueError, TypeError, OverflowError)


def _text(value: Any) -> str:
    # A lone surrogate ("\ud800" in the reply) is no UTF-8, which Parquet strings must be.
    if not isinstance(value, str) or has_surrogate(value):
        raise _Unfit
    return value


def _number(value: Any) -> float:
    # Only finite numbers: inf (what a JSON decoder makes of 1e400) or NaN is no measurement,
    # and would poison every sum over the column.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Unfit
    number = float(value)  # OverflowError for an integer beyond float64
    if not math.isfinite(number):
        raise _Unfit
    return number


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Unfit
    return value


def _year(value: Any) -> int:
    # The emulator and v2 filters carry the year as text or as a number: both are a year.
    # ASCII digits only: "²".isdigit() is true, yet int("²") fails.
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            raise _Unfit
        value = int(text)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise _Unfit
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Unfit
    return value


def _texts(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(item, str) and not has_surrogate(item) for item in value
    ):
        raise _Unfit
    return value


def _wdpa_id(value: Any) -> str:
    # WDPA ids are integers, but METI's reply type is undocumented: a text column keeps
    # either ("555", 555 -> "555") and never turns an id with a letter or a zero in front away.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(value)


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
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        # OverflowError when UTC falls outside years 1 to 9999 (0001-01-01T00:00:00+01:00)
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError) as error:
        raise _Unfit from error


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
    "unep_overlap": (pa.bool_(), _flag),
    "pa_name": (pa.string(), _text),
    "pa_designation": (pa.string(), _text),
    "wdpaid": (pa.string(), _wdpa_id),
    "methodology": (pa.string(), _text),
    "source_type": (pa.string(), _text),
    "attribute_type": (pa.list_(pa.string()), _texts),
    "geometry_source": (pa.string(), _text),
    "steward_id": (pa.string(), _text),
    "project_id": (pa.string(), _text),
    "outcome_reporting_year": (pa.int64(), _year),
    "tags": (pa.list_(pa.string()), _texts),
    "created_at": (_UTC_TIMESTAMP, _utc_timestamp),
    "updated_at": (_UTC_TIMESTAMP, _utc_timestamp),
}
_KNOWN_FIELDS = frozenset(_TYPED_FIELDS) | {GEOMETRY_FIELD}

SOURCE_SCHEMA = pa.schema(
    [pa.field(name, type_) for name, (type_, _) in _TYPED_FIELDS.items()]
    + [pa.field(EXTRA_COLUMN, pa.string()), pa.field(GEOMETRY_COLUMN, pa.binary())]
)
"""Columns of a GeoParquet extract; ``geometry`` holds ISO WKB (see ``parquet``)."""


def page_columns(page: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list[Any]], list[Any]]:
    """The typed column values of one page and its geometries (shapely, or None).

    :param page: sources as METI returns them
    :return: ``{column: values}`` for every column but ``geometry``, and the geometries
    """
    columns: dict[str, list[Any]] = {name: [] for name in _TYPED_FIELDS}
    converters = [
        (name, convert, columns[name], convert is _text)
        for name, (_, convert) in _TYPED_FIELDS.items()
    ]
    unfits: list[dict[str, Any]] = []
    geometry_values: list[Any] = []
    for source in page:
        unfit: dict[str, Any] = {}
        for name, convert, values, is_text in converters:
            value = source.get(name)
            # ASCII text needs no conversion: checked here, it saves a call for most values.
            if value is not None and not (is_text and type(value) is str and value.isascii()):
                try:
                    value = convert(value)
                except _UNFIT_ERRORS:
                    unfit[name] = value
                    value = None
            values.append(value)
        geometry_values.append(stored_geometry(source.get(GEOMETRY_FIELD)))
        for name, value in source.items():
            if name not in _KNOWN_FIELDS:
                unfit[name] = value
        unfits.append(unfit)
    geometries, unreadable = read_geometries(geometry_values)
    for index in unreadable + _unbounded(geometries):
        geometries[index] = None
        unfits[index][GEOMETRY_FIELD] = page[index].get(GEOMETRY_FIELD)
    columns[EXTRA_COLUMN] = [compact_json(unfit) if unfit else None for unfit in unfits]
    return columns, geometries


def _unbounded(geometries: list[Any]) -> list[int]:
    """Indices of geometries with an infinite or NaN coordinate: they have no bounding box,
    and the file's ``bbox`` metadata would be no JSON."""
    bounds = shapely.bounds(geometries)
    present = ~shapely.is_missing(geometries) & ~shapely.is_empty(geometries)
    unbounded = present & ~np.isfinite(bounds).all(axis=1)
    return [int(index) for index in np.flatnonzero(unbounded)]


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
