"""Whether a polygon ring is a valid linear ring: the one costly rule of METI's validation.

Kept apart from ``geojson`` (which reads and checks whole collections) because it is an
algorithm of its own: an edge sweep that stays fast on rings of many thousand vertices,
in exact arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from itertools import pairwise

Point = tuple[float, float]
Edge = tuple[int, int]
"""An edge as (ring index, index of its first position in that ring)."""


def ring_topology_reason(ring: Sequence[Point]) -> str | None:
    """Why a closed ring is not a valid linear ring (``ST_IsValid``-like), or None if it is.

    A ring needs at least three distinct corners, no spike (an edge folding back on the
    previous one) and no two non-adjacent edges that cross or touch. Edges are swept in
    order of their smallest x, so long rings stay fast.

    :param ring: the ring's (x, y) positions, first equal to last
    """
    points, original_index = _without_repeats(ring)
    segment_count = len(points) - 1
    if segment_count < 3:
        return f"ring has fewer than 3 distinct corners ({max(segment_count, 0)})"
    clash = _first_clash(points, segment_count)
    if clash is None:
        return None
    first, second = clash
    return (
        f"ring intersects itself: edge from position {original_index[first]} meets "
        f"edge from position {original_index[second]}"
    )


def _without_repeats(ring: Sequence[Point]) -> tuple[list[Point], list[int]]:
    points: list[Point] = []
    original_index: list[int] = []
    for index, point in enumerate(ring):
        if not points or point != points[-1]:
            points.append(point)
            original_index.append(index)
    return points, original_index


def _first_clash(points: list[Point], count: int) -> tuple[int, int] | None:
    if _sweep_along_y_is_cheaper(points):
        # A mirror image keeps every crossing and touch, so sweep the transposed ring.
        points = [(y, x) for x, y in points]
    min_x = [min(points[i][0], points[i + 1][0]) for i in range(count)]
    max_x = [max(points[i][0], points[i + 1][0]) for i in range(count)]
    min_y = [min(points[i][1], points[i + 1][1]) for i in range(count)]
    max_y = [max(points[i][1], points[i + 1][1]) for i in range(count)]
    active: list[int] = []
    for i in sorted(range(count), key=min_x.__getitem__):
        left = min_x[i]
        active = [j for j in active if max_x[j] >= left]
        for j in active:
            if max_y[j] < min_y[i] or min_y[j] > max_y[i]:
                continue
            if _edges_clash(points, count, i, j):
                return (min(i, j), max(i, j))
        active.append(i)
    return None


def _sweep_along_y_is_cheaper(points: list[Point]) -> bool:
    """Compare how much of each axis' span the edges cover on average (lower sweeps faster)."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    span_x = (max(xs) - min(xs)) or 1.0
    span_y = (max(ys) - min(ys)) or 1.0
    cover_x = sum(abs(b - a) for a, b in pairwise(xs)) / span_x
    cover_y = sum(abs(b - a) for a, b in pairwise(ys)) / span_y
    return cover_y < cover_x


def _edges_clash(points: list[Point], count: int, i: int, j: int) -> bool:
    if (i + 1) % count == j:
        return _is_spike(points[i], points[i + 1], points[j + 1])
    if (j + 1) % count == i:
        return _is_spike(points[j], points[j + 1], points[i + 1])
    return _segments_meet(points[i], points[i + 1], points[j], points[j + 1])


def _is_spike(a: Point, shared: Point, c: Point) -> bool:
    """True when edge shared->c runs back along edge a->shared."""
    if orientation(a, shared, c) != 0:
        return False
    return (shared[0] - a[0]) * (c[0] - shared[0]) + (shared[1] - a[1]) * (c[1] - shared[1]) < 0


def _segments_meet(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    d1 = orientation(q1, q2, p1)
    d2 = orientation(q1, q2, p2)
    d3 = orientation(p1, p2, q1)
    d4 = orientation(p1, p2, q2)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    return (
        (d1 == 0 and _within_box(q1, q2, p1))
        or (d2 == 0 and _within_box(q1, q2, p2))
        or (d3 == 0 and _within_box(p1, p2, q1))
        or (d4 == 0 and _within_box(p1, p2, q2))
    )


def _within_box(a: Point, b: Point, p: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


_ORIENTATION_ERROR_BOUND = 3.3306690738754716e-16  # (3 + 16 * eps) * eps, after Shewchuk


def orientation(a: Point, b: Point, c: Point) -> int:
    """Sign of the turn a -> b -> c: 1 left, -1 right, 0 collinear (exact).

    The float determinant decides when it is clearly away from zero; otherwise the exact
    rational value does, so touching edges are never missed through rounding.
    """
    left = (b[0] - a[0]) * (c[1] - a[1])
    right = (b[1] - a[1]) * (c[0] - a[0])
    det = left - right
    if abs(det) > _ORIENTATION_ERROR_BOUND * (abs(left) + abs(right)):
        return 1 if det > 0 else -1
    ax, ay, bx, by, cx, cy = (Fraction(v) for v in (*a, *b, *c))
    exact = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    return (exact > 0) - (exact < 0)


def distinct_corners(ring: Sequence[Point]) -> list[Point]:
    """``ring`` without consecutive repeated positions (still closed when ``ring`` was)."""
    return _without_repeats(ring)[0]


def edges_near_each_other(rings: Sequence[Sequence[Point]]) -> Iterator[tuple[Edge, Edge]]:
    """Pairs of edges of two different rings whose bounding boxes meet, each as (ring, edge).

    The same sweep as :func:`ring_topology_reason`, over the edges of every ring at once, so
    the rings of a polygon are compared in O((n + pairs) log n) rather than edge by edge.

    :param rings: closed rings without consecutive repeats; edge ``k`` runs from position
        ``k`` to ``k + 1``
    """
    owners: list[Edge] = [(r, k) for r, ring in enumerate(rings) for k in range(len(ring) - 1)]
    if not owners:
        return
    every_point = [point for ring in rings for point in ring]
    transpose = _sweep_along_y_is_cheaper(every_point)

    def ends(edge: Edge) -> tuple[Point, Point]:
        ring = rings[edge[0]]
        a, b = ring[edge[1]], ring[edge[1] + 1]
        return ((a[1], a[0]), (b[1], b[0])) if transpose else (a, b)

    boxes = []
    for edge in owners:
        (ax, ay), (bx, by) = ends(edge)
        boxes.append((min(ax, bx), max(ax, bx), min(ay, by), max(ay, by)))
    active: list[int] = []
    for i in sorted(range(len(owners)), key=lambda k: boxes[k][0]):
        left, _, low, high = boxes[i]
        active = [j for j in active if boxes[j][1] >= left]
        for j in active:
            if owners[j][0] == owners[i][0] or boxes[j][3] < low or boxes[j][2] > high:
                continue
            yield (owners[j], owners[i]) if j < i else (owners[i], owners[j])
        active.append(i)
