"""Valid, non-overlapping GeoJSON squares to register (section 4)."""

from __future__ import annotations

from typing import Any

ORIGIN = (-100.0, 40.0)  # away from the emulator's seeded lattice
PITCH = 0.01  # degrees between squares: about 1 km, so no two ever conflict
SIDE = 0.004
COLUMNS = 100


def square(index: int) -> dict[str, Any]:
    row, column = divmod(index, COLUMNS)
    west, south = ORIGIN[0] + column * PITCH, ORIGIN[1] + row * PITCH
    east, north = west + SIDE, south + SIDE
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "type": "Feature",
        "id": f"BENCH-{index:06d}",
        "properties": {"start_at": "2024-01-01T00:00:00Z", "end_at": "2025-01-01T00:00:00Z"},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def feature_collection(count: int) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [square(i) for i in range(count)]}
