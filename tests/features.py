"""Small valid GeoJSON features for tests: squares laid out on a grid, apart by default."""

from __future__ import annotations

from typing import Any

ORIGIN = (-95.99, 32.77)  # the docs' example area, in Texas
SPACING = 0.01  # degrees between grid cells: about 1 km, so squares never touch
SIDE = 0.005  # degrees: a square of roughly 470 m x 560 m

APITEST2: dict[str, Any] = {
    "type": "Feature",
    "id": "APITEST2",
    "properties": {"start_at": "2024-11-01T16:25:00.000Z", "end_at": "2024-11-10T16:25:00.000Z"},
    "geometry": {
        "type": "Polygon",
        "coordinates": [
            [
                [-95.99151831445964, 32.776695443574994],
                [-95.99151831445964, 32.77064374883592],
                [-95.98497521320726, 32.77064374883592],
                [-95.98497521320726, 32.776695443574994],
                [-95.99151831445964, 32.776695443574994],
            ]
        ],
    },
}
"""The feature of METI's own documentation example, with the docs' full-precision coordinates."""


def square_feature(
    alt_id: str,
    *,
    x: float = 0,
    y: float = 0,
    side: float = SIDE,
    start_at: str = "2024-11-01T00:00:00Z",
    end_at: str = "2024-12-01T00:00:00Z",
    **properties: Any,
) -> dict[str, Any]:
    """A closed square Polygon feature at grid cell (x, y)."""
    west = ORIGIN[0] + x * SPACING
    south = ORIGIN[1] + y * SPACING
    ring = [
        [west, south],
        [west + side, south],
        [west + side, south + side],
        [west, south + side],
        [west, south],
    ]
    return {
        "type": "Feature",
        "id": alt_id,
        "properties": {"start_at": start_at, "end_at": end_at, **properties},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    """A FeatureCollection of ``features``."""
    return {"type": "FeatureCollection", "features": list(features)}
