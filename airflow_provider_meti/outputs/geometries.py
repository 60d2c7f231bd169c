"""GeoJSON Polygons and MultiPolygons of one page as shapely geometries, built in bulk.

``shapely.geometry.shape`` builds one geometry at a time (about 18 µs a polygon, most of a
GeoParquet page's cost); gathering every ring's coordinates of a page into one array and
letting shapely build all rings, polygons and multipolygons at once takes about a quarter of
that. Only the plain shapes go that way: anything else (another type, no rings, no parts,
malformed coordinates) is read by ``shape`` one by one, as before, so the result is the same
either way, and a value ``shape`` refuses is reported for that geometry alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import shapely
import shapely.geometry

_BULK_TYPES = ("Polygon", "MultiPolygon")


class NotAGeometry(ValueError):
    """A GeoJSON value shapely cannot read as a geometry."""


def read_geometry(value: Any) -> Any:
    """One GeoJSON geometry as a shapely geometry.

    :param value: a GeoJSON geometry object
    :raises NotAGeometry: when shapely cannot read it
    """
    try:
        geometry = shapely.geometry.shape(value)
    except Exception as error:  # shapely raises several types for malformed GeoJSON
        raise NotAGeometry from error
    if not isinstance(geometry, shapely.Geometry):
        raise NotAGeometry
    return geometry


def read_geometries(values: Sequence[Any]) -> tuple[list[Any], list[int]]:
    """GeoJSON geometries (or None) as shapely geometries (or None), in bulk where possible.

    :param values: GeoJSON geometry objects or None
    :return: the geometries, None where ``values`` had None or an unreadable value, and the
        indices of the unreadable values
    """
    geometries: list[Any] = [None] * len(values)
    bulk = [index for index, value in enumerate(values) if _plain(value)]
    if bulk:
        try:
            for index, geometry in zip(bulk, _bulk_read([values[i] for i in bulk]), strict=True):
                geometries[index] = geometry
        except Exception:  # malformed coordinates somewhere: each is read on its own below
            bulk = []
    done = set(bulk)
    unreadable = []
    for index, value in enumerate(values):
        if value is None or index in done:
            continue
        try:
            geometries[index] = read_geometry(value)
        except NotAGeometry:
            unreadable.append(index)
    return geometries, unreadable


def _plain(value: Any) -> bool:
    """A Polygon or MultiPolygon whose every polygon and ring has something: the bulk path's."""
    if not isinstance(value, Mapping) or value.get("type") not in _BULK_TYPES:
        return False
    coordinates = value.get("coordinates")
    polygons = coordinates if value["type"] == "MultiPolygon" else [coordinates]
    if not isinstance(polygons, list) or not polygons:
        return False
    return all(
        isinstance(rings, list) and rings and all(isinstance(ring, list) and ring for ring in rings)
        for rings in polygons
    )


def _bulk_read(values: list[Mapping[str, Any]]) -> list[Any]:
    """Shapely geometries of plain Polygons and MultiPolygons; raises on any malformed one."""
    positions: list[Any] = []
    ring_sizes: list[int] = []
    rings_per_polygon: list[int] = []
    polygons_per_value: list[int] = []
    for value in values:
        polygons = (
            value["coordinates"] if value["type"] == "MultiPolygon" else [value["coordinates"]]
        )
        for rings in polygons:
            for ring in rings:
                positions.extend(ring)
                ring_sizes.append(len(ring))
            rings_per_polygon.append(len(rings))
        polygons_per_value.append(len(polygons))
    coordinates = np.array(positions, dtype=np.float64)
    if coordinates.ndim != 2 or coordinates.shape[1] not in (2, 3):
        raise NotAGeometry
    rings = shapely.linearrings(
        coordinates, indices=np.repeat(np.arange(len(ring_sizes)), ring_sizes)
    )
    polygons = shapely.polygons(
        rings, indices=np.repeat(np.arange(len(rings_per_polygon)), rings_per_polygon)
    )
    geometries: list[Any] = []
    first = 0
    multi_parts: list[Any] = []
    multi_sizes: list[int] = []
    multi_at: list[int] = []
    for value, count in zip(values, polygons_per_value, strict=True):
        if value["type"] == "MultiPolygon":
            multi_parts.extend(polygons[first : first + count])
            multi_sizes.append(count)
            multi_at.append(len(geometries))
            geometries.append(None)
        else:
            geometries.append(polygons[first])
        first += count
    if multi_at:
        multipolygons = shapely.multipolygons(
            multi_parts, indices=np.repeat(np.arange(len(multi_sizes)), multi_sizes)
        )
        for at, multipolygon in zip(multi_at, multipolygons, strict=True):
            geometries[at] = multipolygon
    return geometries
