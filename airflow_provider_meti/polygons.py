"""Whether a Polygon or MultiPolygon is valid as a whole, as PostGIS ``ST_IsValid`` decides.

:mod:`airflow_provider_meti.rings` checks each ring on its own; this module checks how the
rings sit together. METI's ledger refuses the whole collection when ``ST_IsValid`` is false,
so the client refuses, before sending:

- a hole not inside its shell (which is also what a hole listed first looks like);
- two rings that cross or share a stretch of edge (a hole equal to its shell included);
- a hole inside another hole;
- rings touching in a cycle (e.g. a hole touching its shell at two points), which cuts the
  interior in pieces;
- MultiPolygon parts whose interiors overlap or whose edges share more than points.

GEOS, through shapely (installed with the ``[parquet]`` extra), decides when it can be
imported, since it is what PostGIS runs. Otherwise an exact pure-Python check decides the
same: the sweep of :mod:`rings` over the edges of all rings, exact orientation tests, and
point-in-ring tests on a point of each ring that lies off the other ring.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from itertools import pairwise
from types import ModuleType
from typing import Any

from airflow_provider_meti.rings import (
    Edge,
    Point,
    distinct_corners,
    edges_near_each_other,
    orientation,
)

USE_SHAPELY = True
"""Let GEOS decide when shapely is importable; False forces the pure-Python check."""

Ring = Sequence[Point]
ExactPoint = tuple[float | Fraction, float | Fraction]

OUTSIDE_SHELL = "a hole lies outside its shell (the first ring is the shell, holes follow)"
SHELL_IN_HOLE = "the first ring must be the outer shell, but it lies inside"
RINGS_CROSS = "rings cross each other"
RINGS_SHARE_EDGE = "rings share part of an edge"
NESTED_HOLES = "a hole lies inside another hole"
DISCONNECTED = "the rings touch in a cycle, which cuts the interior in pieces"
PARTS_OVERLAP = "parts overlap (MultiPolygon parts may touch only at points)"

_GEOS_HINTS = {
    "Hole lies outside shell": OUTSIDE_SHELL,
    "Self-intersection": "rings cross or share part of an edge",
    "Interior is disconnected": DISCONNECTED,
    "Holes are nested": NESTED_HOLES,
    "Nested shells": PARTS_OVERLAP,
    "Ring Self-intersection": "a ring intersects itself",
    "Too few points": "a ring has too few distinct points",
}


def polygon_reason(rings: Sequence[Ring]) -> str | None:
    """Why a polygon whose rings are each valid is not valid as a whole, or None if it is.

    :param rings: closed (x, y) rings, shell first, each already a valid linear ring
    """
    geos = _shapely()
    if geos is not None:
        return _geos_reason(geos, geos.Polygon(rings[0], rings[1:]))
    return _polygon_reason([distinct_corners(ring) for ring in rings])


def parts_reason(parts: Sequence[Sequence[Ring]]) -> str | None:
    """Why valid polygons do not form a valid MultiPolygon (they overlap), or None.

    :param parts: the polygons, each a list of closed (x, y) rings, each valid on its own
    """
    geos = _shapely()
    if geos is not None:
        shapes = [geos.Polygon(rings[0], rings[1:]) for rings in parts]
        return _geos_reason(geos, geos.MultiPolygon(shapes))
    return _parts_reason([[distinct_corners(ring) for ring in rings] for rings in parts])


# --- GEOS ----------------------------------------------------------------------------------


def _shapely() -> ModuleType | None:
    if not USE_SHAPELY:
        return None
    try:
        import shapely
    except ImportError:
        return None
    return shapely


def _geos_reason(geos: ModuleType, shape: Any) -> str | None:
    if geos.is_valid(shape):
        return None
    explained = str(geos.is_valid_reason(shape))
    kind = explained.split("[", 1)[0].strip()
    hint = _GEOS_HINTS.get(kind, "not a valid polygon")
    return f"{hint} (ST_IsValid: {explained})"


# --- pure Python ---------------------------------------------------------------------------


class _Found(Exception):
    """Carries the first reason found out of the contact scan."""


def _polygon_reason(rings: list[list[Point]]) -> str | None:
    if len(rings) == 1:
        return None  # a lone valid ring is a valid polygon
    try:
        touches = _contacts(rings, lambda a, b: f"rings {a} and {b}")
    except _Found as found:
        return str(found)
    shell, holes = rings[0], rings[1:]
    for number, hole in enumerate(holes, start=1):
        if not _inside_ring(_point_off(hole, [shell]), shell):
            if _inside_ring(_point_off(shell, [hole]), hole):
                return f"{SHELL_IN_HOLE} ring {number}"
            return f"{OUTSIDE_SHELL}: ring {number}"
    for a, b in _boxes_may_nest(holes):
        inner, outer = holes[a], holes[b]
        if _inside_ring(_point_off(inner, [outer]), outer):
            return f"{NESTED_HOLES}: ring {a + 1} inside ring {b + 1}"
    cycle_at = _touch_cycle(touches)
    if cycle_at is not None:
        return f"{DISCONNECTED} (at {_fmt(cycle_at)})"
    return None


def _parts_reason(parts: list[list[list[Point]]]) -> str | None:
    rings = [ring for rings in parts for ring in rings]
    part_of = [p for p, rings_of_part in enumerate(parts) for _ in rings_of_part]

    def name(a: int, b: int) -> str:
        return f"parts {part_of[a]} and {part_of[b]}"

    try:
        _contacts(rings, name, same_group=lambda a, b: part_of[a] == part_of[b])
    except _Found as found:
        return f"{PARTS_OVERLAP}: {found}"
    shells = [rings_of_part[0] for rings_of_part in parts]
    for a, b in _boxes_may_nest(shells):
        if _inside_polygon(_point_off(shells[a], parts[b]), parts[b]):
            return f"{PARTS_OVERLAP}: part {a} lies inside part {b}"
    return None


def _contacts(
    rings: list[list[Point]],
    name: Any,
    same_group: Any = None,
) -> list[tuple[int, int, Point]]:
    """Touch points between rings; raises :class:`_Found` on a shared edge or a crossing.

    A shared stretch of edge is reported before crossings, since where two rings run along
    each other their corners also look like crossings from one side.
    """
    touches: list[tuple[int, int, Point]] = []
    crossing: str | None = None
    for (ra, ea), (rb, eb) in edges_near_each_other(rings):
        if same_group is not None and same_group(ra, rb):
            continue
        a1, a2 = rings[ra][ea], rings[ra][ea + 1]
        b1, b2 = rings[rb][eb], rings[rb][eb + 1]
        for kind, point in _edge_contacts(a1, a2, b1, b2):
            if kind == "share":
                raise _Found(f"{RINGS_SHARE_EDGE}: {name(ra, rb)}, from {_fmt(point)}")
            if kind == "touch" and not _cross_at(
                point, _around(rings[ra], ea, point), _around(rings[rb], eb, point)
            ):
                touches.append((ra, rb, point))
            elif crossing is None:
                crossing = f"{RINGS_CROSS}: {name(ra, rb)}, near {_fmt(point)}"
    if crossing is not None:
        raise _Found(crossing)
    return touches


def _edge_contacts(a1: Point, a2: Point, b1: Point, b2: Point) -> Iterator[tuple[str, Point]]:
    d1 = orientation(b1, b2, a1)
    d2 = orientation(b1, b2, a2)
    d3 = orientation(a1, a2, b1)
    d4 = orientation(a1, a2, b2)
    if d1 * d2 < 0 and d3 * d4 < 0:
        yield "cross", a1 if _within_box(b1, b2, a1) else b1
        return
    if d1 == 0 and d2 == 0:
        axis = 0 if a1[0] != a2[0] else 1
        low = max(min(a1[axis], a2[axis]), min(b1[axis], b2[axis]))
        high = min(max(a1[axis], a2[axis]), max(b1[axis], b2[axis]))
        if low < high:
            yield "share", next(p for p in (a1, a2, b1, b2) if p[axis] == low)
        elif low == high:
            yield "touch", next(p for p in (a1, a2) if p[axis] == low)
        return
    for point, side, start, end in ((a1, d1, b1, b2), (a2, d2, b1, b2)):
        if side == 0 and _within_box(start, end, point):
            yield "touch", point
    for point, side, start, end in ((b1, d3, a1, a2), (b2, d4, a1, a2)):
        if side == 0 and _within_box(start, end, point) and point not in (a1, a2):
            yield "touch", point


def _around(ring: list[Point], edge: int, point: Point) -> tuple[Point, Point]:
    """The ring's two neighbours of ``point``, which lies on edge ``edge`` of the ring."""
    last = len(ring) - 2  # index of the last edge; ring[-1] == ring[0]
    if point == ring[edge]:
        return ring[edge - 1 if edge > 0 else last], ring[edge + 1]
    if point == ring[edge + 1]:
        return ring[edge], ring[edge + 2 if edge < last else 1]
    return ring[edge], ring[edge + 1]


def _cross_at(point: Point, mine: tuple[Point, Point], theirs: tuple[Point, Point]) -> bool:
    """True when a ring passing ``point`` through ``mine`` goes from one side of the other to
    the other side (the two rings only touch there otherwise)."""
    if any(_along(point, own, other) for own in mine for other in theirs):
        return False  # the rings run along each other here: a shared edge, reported as such
    return _in_wedge(point, mine[0], *theirs) != _in_wedge(point, mine[1], *theirs)


def _along(apex: Point, one: Point, other: Point) -> bool:
    """Whether apex->one and apex->other point the same way (exact)."""
    if orientation(apex, one, other) != 0:
        return False
    ax, ay, bx, by, cx, cy = (Fraction(v) for v in (*apex, *one, *other))
    return (bx - ax) * (cx - ax) + (by - ay) * (cy - ay) > 0


def _in_wedge(apex: Point, direction: Point, start: Point, end: Point) -> bool:
    """Whether apex->direction lies strictly inside the turn counter-clockwise from
    apex->start to apex->end."""
    turn = orientation(apex, start, end)
    after_start = orientation(apex, start, direction) > 0
    before_end = orientation(apex, direction, end) > 0
    if turn > 0:
        return after_start and before_end
    if turn < 0:
        return after_start or before_end
    return after_start


def _touch_cycle(touches: list[tuple[int, int, Point]]) -> Point | None:
    """A touch point closing a cycle of rings and touch points, or None (union-find)."""
    parent: dict[Any, Any] = {}

    def root(node: Any) -> Any:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    seen: set[tuple[int, Point]] = set()
    for ring_a, ring_b, point in touches:
        for ring in (ring_a, ring_b):
            if (ring, point) in seen:
                continue
            seen.add((ring, point))
            a, b = root(("ring", ring)), root(("point", point))
            if a == b:
                return point
            parent[a] = b
    return None


def _boxes_may_nest(rings: Sequence[Sequence[Point]]) -> Iterator[tuple[int, int]]:
    """Ordered pairs (inner, outer) whose boxes allow ``inner`` inside ``outer``."""
    boxes = [_box(ring) for ring in rings]
    for a, inner in enumerate(boxes):
        for b, outer in enumerate(boxes):
            low_inside = outer[0] <= inner[0] and outer[1] <= inner[1]
            if a != b and low_inside and inner[2] <= outer[2] and inner[3] <= outer[3]:
                yield a, b


def _box(ring: Sequence[Point]) -> tuple[float, float, float, float]:
    xs = [p[0] for p in ring]
    ys = [p[1] for p in ring]
    return min(xs), min(ys), max(xs), max(ys)


def _point_off(ring: list[Point], others: Sequence[list[Point]]) -> ExactPoint:
    """A point of ``ring`` (a corner, else an exact edge midpoint) on none of ``others``."""
    for corner in ring[:-1]:
        if not any(_on_ring(corner, other) for other in others):
            return corner
    for a, b in pairwise(ring):
        middle = ((Fraction(a[0]) + Fraction(b[0])) / 2, (Fraction(a[1]) + Fraction(b[1])) / 2)
        if not any(_on_ring(middle, other) for other in others):
            return middle
    return ring[0]  # unreachable for rings that neither cross nor share an edge


def _on_ring(point: ExactPoint, ring: list[Point]) -> bool:
    return any(
        orientation(a, b, point) == 0 and _within_box(a, b, point)  # type: ignore[arg-type]
        for a, b in pairwise(ring)
    )


def _inside_ring(point: ExactPoint, ring: list[Point]) -> bool:
    """Even-odd test for a point known not to lie on the ring (exact)."""
    inside = False
    y = point[1]
    for a, b in pairwise(ring):
        if (a[1] > y) != (b[1] > y):
            left = orientation(a, b, point) > 0  # type: ignore[arg-type]
            if left == (b[1] > a[1]):
                inside = not inside
    return inside


def _inside_polygon(point: ExactPoint, rings: list[list[Point]]) -> bool:
    return _inside_ring(point, rings[0]) and not any(_inside_ring(point, h) for h in rings[1:])


def _within_box(a: Point, b: Point, p: ExactPoint) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _fmt(point: ExactPoint) -> str:
    return f"[{float(point[0]):g}, {float(point[1]):g}]"


__all__ = ["USE_SHAPELY", "Edge", "parts_reason", "polygon_reason"]
