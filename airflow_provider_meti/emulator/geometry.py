"""Geometry for the emulator's ledger: spheroidal area, centroid and the conflict test.

Everything works on GeoJSON-style rings of (longitude, latitude). Overlap questions are
answered in a local metric frame centred on the polygon of interest, which is accurate to
centimetres over field-sized areas and needs no GIS library.

Slightly longer than most modules: area, centroid and the conflict test share the local
frame and polygon types defined here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

WGS84_A = 6_378_137.0
WGS84_F = 1 / 298.257223563
_E2 = WGS84_F * (2 - WGS84_F)
_E = math.sqrt(_E2)

Point = tuple[float, float]
Ring = Sequence[Point]
BBox = tuple[float, float, float, float]
"""(min_x, min_y, max_x, max_y)"""
Edge = tuple[float, float, float, float]

SAMPLE_SPACING_M = 0.5
"""Finest spacing of the points probed by the conflict test."""
SAMPLE_BUDGET = 20_000
"""Most points probed per pair of polygons (scaled down for polygons with many edges)."""
EDGE_TEST_BUDGET = 2_000_000
"""Bounds point-against-edge tests per question, so huge rings stay responsive."""
OVERLAP_ROWS = 256


def rings_of(geometry: Mapping[str, Any]) -> list[list[Point]]:
    """The rings of a validated GeoJSON Polygon as lists of (lon, lat) floats."""
    return [[(float(p[0]), float(p[1])) for p in ring] for ring in geometry["coordinates"]]


# --- area and centroid on the spheroid -----------------------------------------------------


def spheroid_area_m2(rings: Sequence[Ring]) -> float:
    """Area on the WGS84 spheroid in square metres: the shell minus its holes.

    Lambert's cylindrical equal-area projection of the ellipsoid keeps areas exactly, so the
    shoelace formula in it gives the spheroidal area of the ring. Its edges are straight in
    that projection; for field-sized polygons they differ from geodesics by far less than a
    square metre, and along parallels and meridians they are exact.
    """
    shell, *holes = rings
    area = abs(_equal_area_shoelace(shell))
    return max(0.0, area - sum(abs(_equal_area_shoelace(hole)) for hole in holes))


def _equal_area_shoelace(ring: Ring) -> float:
    lon0 = ring[0][0]
    y0 = _authalic_y(ring[0][1])  # relative coordinates keep the products small and exact
    projected = [
        (WGS84_A * math.radians(_wrap(lon - lon0)), _authalic_y(lat) - y0) for lon, lat in ring
    ]
    twice_area = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in pairwise(projected))
    return twice_area / 2


def _authalic_y(lat: float) -> float:
    """Northing of Lambert's cylindrical equal-area projection on the ellipsoid."""
    s = math.sin(math.radians(lat))
    q = (1 - _E2) * (s / (1 - _E2 * s * s) - math.log((1 - _E * s) / (1 + _E * s)) / (2 * _E))
    return WGS84_A * q / 2


def _wrap(delta_lon: float) -> float:
    return (delta_lon + 180.0) % 360.0 - 180.0


def planar_centroid(rings: Sequence[Ring]) -> Point:
    """Area-weighted centroid in the lon/lat plane (what ``ST_Centroid`` gives a geometry)."""
    x0, y0 = rings[0][0]
    total = sum_x = sum_y = 0.0
    for index, ring in enumerate(rings):
        area, moment_x, moment_y = _ring_moments(ring, x0, y0)
        # The shell adds and holes subtract, whichever way each ring winds.
        sign = (1.0 if area >= 0 else -1.0) * (1.0 if index == 0 else -1.0)
        total += sign * area
        sum_x += sign * moment_x
        sum_y += sign * moment_y
    if total == 0:
        corners = rings[0][:-1]
        return (
            sum(p[0] for p in corners) / len(corners),
            sum(p[1] for p in corners) / len(corners),
        )
    return (x0 + sum_x / total, y0 + sum_y / total)


def _ring_moments(ring: Ring, x0: float, y0: float) -> tuple[float, float, float]:
    """Signed area and first moments (divided by 6) of a ring, relative to (x0, y0)."""
    area = moment_x = moment_y = 0.0
    shifted = [(x - x0, y - y0) for x, y in ring]
    for (x1, y1), (x2, y2) in pairwise(shifted):
        cross = x1 * y2 - x2 * y1
        area += cross
        moment_x += (x1 + x2) * cross
        moment_y += (y1 + y2) * cross
    return area / 2, moment_x / 6, moment_y / 6


def bounding_box(rings: Sequence[Ring]) -> BBox:
    """The (min_lon, min_lat, max_lon, max_lat) of the shell."""
    xs = [p[0] for p in rings[0]]
    ys = [p[1] for p in rings[0]]
    return (min(xs), min(ys), max(xs), max(ys))


def boxes_overlap(a: BBox, b: BBox) -> bool:
    """True when two closed boxes share at least a point."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


# --- local metric frame --------------------------------------------------------------------


@dataclass(frozen=True)
class LocalFrame:
    """Metres east and north of an origin, scaled by the ellipsoid's radii at its latitude."""

    lon0: float
    lat0: float
    metres_per_deg_lon: float
    metres_per_deg_lat: float

    @classmethod
    def around(cls, box: BBox) -> LocalFrame:
        """A frame centred on a lon/lat box."""
        lon0, lat0 = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        s = math.sin(math.radians(lat0))
        w = math.sqrt(1 - _E2 * s * s)
        prime_vertical = WGS84_A / w
        meridional = WGS84_A * (1 - _E2) / w**3
        per_radian = math.pi / 180
        return cls(
            lon0,
            lat0,
            prime_vertical * math.cos(math.radians(lat0)) * per_radian,
            meridional * per_radian,
        )

    def project(self, rings: Sequence[Ring]) -> PlanarPolygon:
        """The polygon in this frame's metres."""
        planar = [
            [
                (
                    _wrap(lon - self.lon0) * self.metres_per_deg_lon,
                    (lat - self.lat0) * self.metres_per_deg_lat,
                )
                for lon, lat in ring
            ]
            for ring in rings
        ]
        return PlanarPolygon.from_rings(planar)


@dataclass(frozen=True)
class PlanarPolygon:
    """A polygon (shell and holes) in metres, kept as its edges for fast point queries."""

    edges: tuple[Edge, ...]
    bbox: BBox

    @classmethod
    def from_rings(cls, rings: Sequence[Ring]) -> PlanarPolygon:
        edges = tuple(
            (x1, y1, x2, y2)
            for ring in rings
            for (x1, y1), (x2, y2) in pairwise(ring)
            if (x1, y1) != (x2, y2)
        )
        xs = [p[0] for p in rings[0]]
        ys = [p[1] for p in rings[0]]
        return cls(edges, (min(xs), min(ys), max(xs), max(ys)))

    def contains(self, x: float, y: float) -> bool:
        """Even-odd test over every ring, so points in holes are outside."""
        inside = False
        for x1, y1, x2, y2 in self.edges:
            if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
        return inside

    def clearance_at_least(self, x: float, y: float, distance: float) -> bool:
        """True when no edge comes closer than ``distance`` to the point."""
        limit = distance * distance
        for x1, y1, x2, y2 in self.edges:
            if (
                x < min(x1, x2) - distance
                or x > max(x1, x2) + distance
                or y < min(y1, y2) - distance
                or y > max(y1, y2) + distance
            ):
                continue
            if _squared_distance_to_segment(x, y, x1, y1, x2, y2) < limit:
                return False
        return True

    def row_intervals(self, y: float) -> list[tuple[float, float]]:
        """The x-intervals where the horizontal line at ``y`` is inside the polygon."""
        crossings = sorted(
            x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            for x1, y1, x2, y2 in self.edges
            if (y1 > y) != (y2 > y)
        )
        return list(zip(crossings[::2], crossings[1::2], strict=False))

    def boundary_points(self, spacing: float, within: BBox) -> Iterator[Point]:
        """Points every ``spacing`` metres along the edges that pass through ``within``."""
        for x1, y1, x2, y2 in self.edges:
            if not boxes_overlap((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), within):
                continue
            steps = max(1, math.ceil(math.hypot(x2 - x1, y2 - y1) / spacing))
            for k in range(steps + 1):
                t = k / steps
                yield (x1 + (x2 - x1) * t, y1 + (y2 - y1) * t)


def _squared_distance_to_segment(
    px: float, py: float, x1: float, y1: float, x2: float, y2: float
) -> float:
    dx, dy = x2 - x1, y2 - y1
    t = ((px - x1) * dx + (py - y1) * dy) / (dx * dx + dy * dy)
    t = 0.0 if t < 0 else 1.0 if t > 1 else t
    ex, ey = px - (x1 + t * dx), py - (y1 + t * dy)
    return ex * ex + ey * ey


# --- conflict test -------------------------------------------------------------------------


def shrunk_intersects(new: PlanarPolygon, other: PlanarPolygon, inset: float) -> bool:
    """Whether ``new`` shrunk inward by ``inset`` metres still meets ``other``.

    That holds exactly when some point of ``other`` lies inside ``new`` at least ``inset``
    from its boundary. Points are probed along ``other``'s edges (thin overlaps hug them),
    then on ever finer grids over the only box where such a point can be, until one is found
    or the spacing reaches ``SAMPLE_SPACING_M`` or the budget runs out. A point found is a
    proof; not finding one can only miss a sliver narrower than the last spacing tried.
    """
    region = _intersect_boxes(_inset_box(new.bbox, inset), other.bbox)
    if region is None:
        return False
    budget = _sample_budget(new, other)

    def deep_inside_new(x: float, y: float) -> bool:
        return new.contains(x, y) and new.clearance_at_least(x, y, inset)

    if any(
        _in_box(point, region) and deep_inside_new(*point)
        for point in _capped(
            other.boundary_points(_edge_spacing(other, region, budget), region), budget
        )
    ):
        return True
    return any(
        other.contains(x, y) and deep_inside_new(x, y) for x, y in _grid_levels(region, budget)
    )


def _sample_budget(a: PlanarPolygon, b: PlanarPolygon) -> int:
    per_point = len(a.edges) + len(b.edges)
    return max(50, min(SAMPLE_BUDGET, EDGE_TEST_BUDGET // max(per_point, 1)))


def _edge_spacing(polygon: PlanarPolygon, region: BBox, budget: int) -> float:
    length = sum(
        math.hypot(x2 - x1, y2 - y1)
        for x1, y1, x2, y2 in polygon.edges
        if boxes_overlap((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), region)
    )
    return max(SAMPLE_SPACING_M, length / budget)


def _grid_levels(region: BBox, budget: int) -> Iterator[Point]:
    """Cell centres of grids over ``region``, coarse to fine, within ``budget`` points."""
    width, height = region[2] - region[0], region[3] - region[1]
    spacing = max(width, height) / 4 or SAMPLE_SPACING_M  # a point-sized region: one probe
    spent = 0
    while True:
        columns = max(1, math.ceil(width / spacing))
        rows = max(1, math.ceil(height / spacing))
        spent += columns * rows
        if spent > budget:
            return
        for i in range(columns):
            x = region[0] + (i + 0.5) * width / columns
            for j in range(rows):
                yield (x, region[1] + (j + 0.5) * height / rows)
        if spacing <= SAMPLE_SPACING_M:
            return
        spacing /= 2


def _capped(points: Iterator[Point], budget: int) -> Iterator[Point]:
    for count, point in enumerate(points):
        if count >= budget:
            return
        yield point


def _inset_box(box: BBox, inset: float) -> BBox:
    return (box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset)


def _intersect_boxes(a: BBox, b: BBox) -> BBox | None:
    box = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return box if box[0] <= box[2] and box[1] <= box[3] else None


def _in_box(point: Point, box: BBox) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


# --- overlap share -------------------------------------------------------------------------


def covered_fraction(subject: PlanarPolygon, others: Sequence[PlanarPolygon]) -> float:
    """Share of ``subject``'s area covered by the union of ``others`` (0..1).

    Integrated over horizontal scanlines: each row's inside-intervals are exact, so the
    result is exact for axis-aligned shapes and close for any other.
    """
    min_y, max_y = subject.bbox[1], subject.bbox[3]
    if max_y <= min_y or not others:
        return 0.0
    edges = len(subject.edges) + sum(len(other.edges) for other in others)
    rows = max(16, min(OVERLAP_ROWS, EDGE_TEST_BUDGET // edges))
    covered = total = 0.0
    for row in range(rows):
        y = min_y + (row + 0.5) * (max_y - min_y) / rows
        inside = subject.row_intervals(y)
        total += sum(b - a for a, b in inside)
        union = _merge([interval for other in others for interval in other.row_intervals(y)])
        covered += _overlap_length(inside, union)
    return 0.0 if total == 0 else min(1.0, covered / total)


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlap_length(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    length = 0.0
    i = j = 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if high > low:
            length += high - low
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return length
