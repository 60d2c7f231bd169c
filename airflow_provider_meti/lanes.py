"""Group the features of one create into lanes that must be sent one after another.

METI's ledger finds conflicts in row triggers that run under READ COMMITTED without a lock:
two overlapping features POSTed in concurrent transactions do not see each other and are both
stored with ``conflict = false``, while sent one after the other both are flagged. A parallel
create therefore sends the features of one lane sequentially, and only different lanes at the
same time. Two features share a lane when their bounding boxes and their validity windows
overlap, directly or through a chain of other features.

Boxes that only touch never share a lane: the ledger flags a conflict only where the new
polygon shrunk inward by 9 m still meets the other one, so a point of the other polygon lies
9 m inside the new one, and the two boxes overlap with positive area. Fields that touch or lie
a few metres apart, as farm fields do, therefore still go out in parallel.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow_provider_meti.timestamps import parse_timestamp

MIN_CELL_DEGREES = 1e-6
"""Smallest grid cell, so that a create of degenerate (zero-width) boxes still hashes."""
MAX_CELLS_PER_FEATURE = 4096
"""A feature covering more grid cells than this is compared with every feature instead."""

Box = tuple[float, float, float, float]


def overlap_lanes(features: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Indexes of ``features`` grouped so that overlapping features share a group.

    Features whose bounding boxes (over all parts) and ``[start_at, end_at)`` windows
    both overlap end up in the same group, and so does every chain of such features. Groups
    come in order of their first index, each sorted. Boxes are hashed on a grid sized after
    the median feature, so 100,000 scattered fields take about as long as sorting them.

    :param features: validated features (Polygon or MultiPolygon, with ``start_at`` and
        ``end_at``)
    :raises ValueError: a feature has no readable geometry or window
    """
    boxes = [_bounding_box(index, feature) for index, feature in enumerate(features)]
    parsed: dict[Any, datetime] = {}  # a create's windows repeat: parse each text once
    windows = [_window(index, feature, parsed) for index, feature in enumerate(features)]
    lanes = Groups(len(features))

    def join_if_overlapping(a: int, b: int) -> None:
        if lanes.together(a, b) or not _boxes_meet(boxes[a], boxes[b]):
            return
        (start_a, end_a), (start_b, end_b) = windows[a], windows[b]
        if start_a < end_b and start_b < end_a:
            lanes.join(a, b)

    cell = _cell_size(boxes)
    grid: dict[tuple[int, int], list[int]] = {}
    large: list[int] = []
    for index, box in enumerate(boxes):
        cells = _cells(box, cell)
        if cells is None:
            large.append(index)
            continue
        for key in cells:
            members = grid.setdefault(key, [])
            for other in members:
                join_if_overlapping(index, other)
            members.append(index)
    for index in large:
        for other in range(len(features)):
            if other != index:
                join_if_overlapping(index, other)

    return lanes.groups()


class Groups:
    """Indexes ``0 .. count - 1`` joined into groups (union-find).

    :param count: how many indexes there are
    """

    def __init__(self, count: int) -> None:
        self._parent = list(range(count))

    def _root(self, index: int) -> int:
        parent = self._parent
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    def together(self, a: int, b: int) -> bool:
        """Whether ``a`` and ``b`` are in one group."""
        return self._root(a) == self._root(b)

    def join(self, a: int, b: int) -> None:
        """Put the groups of ``a`` and ``b`` together."""
        root_a, root_b = self._root(a), self._root(b)
        if root_a != root_b:
            self._parent[max(root_a, root_b)] = min(root_a, root_b)

    def groups(self) -> list[list[int]]:
        """Every group, in order of its first index, each sorted."""
        grouped: dict[int, list[int]] = {}
        for index in range(len(self._parent)):
            grouped.setdefault(self._root(index), []).append(index)
        return list(grouped.values())


def _bounding_box(index: int, feature: Mapping[str, Any]) -> Box:
    try:
        geometry = feature["geometry"]
        polygons = (
            geometry["coordinates"]
            if geometry["type"] == "MultiPolygon"
            else [geometry["coordinates"]]
        )
        xs = [float(p[0]) for rings in polygons for ring in rings for p in ring]
        ys = [float(p[1]) for rings in polygons for ring in rings for p in ring]
        return (min(xs), min(ys), max(xs), max(ys))
    except (KeyError, TypeError, IndexError, ValueError):
        raise ValueError(f"feature {index} has no readable Polygon or MultiPolygon") from None


def _window(
    index: int, feature: Mapping[str, Any], parsed: dict[Any, datetime]
) -> tuple[datetime, datetime]:
    try:
        properties = feature["properties"]
        ends = properties["start_at"], properties["end_at"]
        for text in ends:
            if text not in parsed:
                parsed[text] = parse_timestamp(text)
        return parsed[ends[0]], parsed[ends[1]]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"feature {index} has no readable start_at and end_at") from None


def _boxes_meet(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _cell_size(boxes: Sequence[Box]) -> float:
    if not boxes:
        return 1.0
    sizes = sorted(max(box[2] - box[0], box[3] - box[1]) for box in boxes)
    # Twice the median: most boxes then cover one to four cells, and a cell holds few boxes.
    return max(2 * sizes[len(sizes) // 2], MIN_CELL_DEGREES)


def _cells(box: Box, cell: float) -> Iterator[tuple[int, int]] | None:
    low_x, low_y = math.floor(box[0] / cell), math.floor(box[1] / cell)
    high_x, high_y = math.floor(box[2] / cell), math.floor(box[3] / cell)
    if (high_x - low_x + 1) * (high_y - low_y + 1) > MAX_CELLS_PER_FEATURE:
        return None
    return ((x, y) for x in range(low_x, high_x + 1) for y in range(low_y, high_y + 1))
