"""Whole-geometry validity as the ledger's ``ST_IsValid`` decides it (GEOS, through shapely).

The ledger builds each geometry with ``ST_GeomFromGeoJSON`` and refuses the collection when
``ST_IsValid`` is false. PostGIS and shapely share GEOS's validity test, so beyond the rings'
own shape this catches what a ring-by-ring check cannot: a hole outside or crossing its
shell, holes that overlap, a hole listed first (then the "shell" lies inside the "hole"),
MultiPolygon parts that overlap.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow_provider_meti.emulator.dependencies import missing_extra

try:
    import shapely
    from shapely.geometry import MultiPolygon, Polygon
    from shapely.geometry.base import BaseGeometry
except ImportError as error:  # pragma: no cover - only without the [emulator] extra
    raise missing_extra(error) from error

Position = tuple[float, float]
PolygonRings = Sequence[Sequence[Position]]


def ring_problem(ring: Sequence[Position]) -> str | None:
    """What GEOS refuses in one ring before any validity test: too short or not closed."""
    if len(ring) < 4:
        return f"a ring needs at least 4 positions, got {len(ring)}"
    if ring[0] != ring[-1]:
        return "the ring is not closed: its last position differs from its first"
    return None


def build(kind: str, polygons: Sequence[PolygonRings]) -> BaseGeometry:
    """A shapely Polygon (``kind`` "Polygon", one entry) or MultiPolygon of closed rings."""
    parts = [Polygon(rings[0], rings[1:]) for rings in polygons]
    return parts[0] if kind == "Polygon" else MultiPolygon(parts)


def validity_problem(geometry: BaseGeometry) -> str | None:
    """GEOS's reason the geometry is not valid (as ``ST_IsValidReason``), or None."""
    if shapely.is_valid(geometry):
        return None
    return str(shapely.is_valid_reason(geometry))
