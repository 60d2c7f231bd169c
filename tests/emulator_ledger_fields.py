"""Fields for the emulator-ledger tests: metre-sized rectangles anywhere on WGS84."""

from __future__ import annotations

import math
from typing import Any

A = 6_378_137.0
F = 1 / 298.257223563
E2 = F * (2 - F)
WINDOW = ("2024-11-01T00:00:00Z", "2024-11-10T00:00:00Z")


def metres_per_degree(lat: float) -> tuple[float, float]:
    """(east-west, north-south) metres per degree on WGS84 at ``lat``."""
    w = math.sqrt(1 - E2 * math.sin(math.radians(lat)) ** 2)
    return (
        A / w * math.cos(math.radians(lat)) * math.pi / 180,
        A * (1 - E2) / w**3 * math.pi / 180,
    )


def rect(
    west: float, south: float, east: float, north: float, *, at: tuple[float, float] = (10.0, 45.0)
) -> list[list[float]]:
    """A closed ring from metres east/north of ``at`` (lon, lat)."""
    per_lon, per_lat = metres_per_degree(at[1])

    def position(x: float, y: float) -> list[float]:
        return [at[0] + x / per_lon, at[1] + y / per_lat]

    corners = [(west, south), (east, south), (east, north), (west, north), (west, south)]
    return [position(x, y) for x, y in corners]


def polygon(*rings: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def multipolygon(*parts: list[list[list[float]]]) -> dict[str, Any]:
    return {"type": "MultiPolygon", "coordinates": list(parts)}


def feature(
    alt_id: Any, geometry: dict[str, Any], window: tuple[str, str] = WINDOW, **properties: Any
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": alt_id,
        "properties": {"start_at": window[0], "end_at": window[1], **properties},
        "geometry": geometry,
    }


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}
