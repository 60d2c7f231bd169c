"""Hectares as the ledger computes them: ``ST_Area(geometry::geography, true) / 10000``.

PostGIS computes a geography's spheroidal area with Karney's geodesic polygon algorithm
(``geod_polygon_compute``, from GeographicLib): every ring's absolute area on WGS84 with
geodesic edges, the first ring of each polygon added and the others subtracted. The pure-Python
geographiclib runs the same algorithm, so a ring around a pole, an edge along the equator or a
field crossing the antimeridian get the area METI stores. Nothing is rounded.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow_provider_meti.emulator.dependencies import missing_extra

try:
    from geographiclib.geodesic import Geodesic
except ImportError as error:  # pragma: no cover - only without the [emulator] extra
    raise missing_extra(error) from error

Position = tuple[float, float]
SQUARE_METRES_PER_HECTARE = 10_000.0


def ring_area_m2(ring: Sequence[Position]) -> float:
    """The absolute geodesic area of one closed ring of (lon, lat), in square metres."""
    polygon = Geodesic.WGS84.Polygon()
    for lon, lat in ring[:-1]:  # PostGIS passes every point but the closing one
        polygon.AddPoint(lat, lon)
    _, _, area = polygon.Compute(False, True)
    return abs(area)


def polygons_area_m2(polygons: Sequence[Sequence[Sequence[Position]]]) -> float:
    """The area of a Polygon's rings (one entry) or a MultiPolygon's parts, square metres."""
    total = 0.0
    for shell, *holes in polygons:
        total += ring_area_m2(shell) - sum(ring_area_m2(hole) for hole in holes)
    return total


def hectares(polygons: Sequence[Sequence[Sequence[Position]]]) -> float:
    """``polygons_area_m2`` in hectares, unrounded."""
    return polygons_area_m2(polygons) / SQUARE_METRES_PER_HECTARE
