"""A bounding-box grid index, so a new source is only tested against sources nearby."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator

from airflow_provider_meti.emulator.geometry import BBox, boxes_overlap

Cell = tuple[int, int]


class GridIndex:
    """Keys filed under every grid cell their box touches.

    Boxes spanning more than ``max_cells`` cells are kept aside and always offered as
    candidates, so one continent-sized polygon cannot bloat the grid.

    :param cell_degrees: the side of a grid cell in degrees
    :param max_cells: most cells one box is filed under
    """

    def __init__(self, cell_degrees: float = 0.05, max_cells: int = 64) -> None:
        self.cell_degrees = cell_degrees
        self.max_cells = max_cells
        self._cells: dict[Cell, set[Hashable]] = {}
        self._boxes: dict[Hashable, BBox] = {}
        self._oversized: set[Hashable] = set()

    def __len__(self) -> int:
        return len(self._boxes)

    def insert(self, key: Hashable, box: BBox) -> None:
        """File ``key`` under ``box`` (replacing any earlier box of the same key)."""
        if key in self._boxes:
            self.remove(key)
        self._boxes[key] = box
        if self._cell_count(box) > self.max_cells:
            self._oversized.add(key)
            return
        for cell in self._cells_of(box):
            self._cells.setdefault(cell, set()).add(key)

    def remove(self, key: Hashable) -> None:
        """Forget ``key``; unknown keys are ignored."""
        box = self._boxes.pop(key, None)
        if box is None:
            return
        if key in self._oversized:
            self._oversized.discard(key)
            return
        for cell in self._cells_of(box):
            keys = self._cells.get(cell)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._cells[cell]

    def candidates(self, box: BBox) -> set[Hashable]:
        """Every key whose box shares at least a point with ``box``."""
        if self._cell_count(box) > max(self.max_cells, len(self._cells)):
            nearby: set[Hashable] = set(self._boxes)
        else:
            nearby = set(self._oversized)
            for cell in self._cells_of(box):
                nearby.update(self._cells.get(cell, ()))
        return {key for key in nearby if boxes_overlap(self._boxes[key], box)}

    def clear(self) -> None:
        """Forget every key."""
        self._cells.clear()
        self._boxes.clear()
        self._oversized.clear()

    def _span(self, box: BBox) -> tuple[int, int, int, int]:
        size = self.cell_degrees
        return (
            math.floor(box[0] / size),
            math.floor(box[1] / size),
            math.floor(box[2] / size),
            math.floor(box[3] / size),
        )

    def _cell_count(self, box: BBox) -> int:
        x0, y0, x1, y1 = self._span(box)
        return (x1 - x0 + 1) * (y1 - y0 + 1)

    def _cells_of(self, box: BBox) -> Iterator[Cell]:
        x0, y0, x1, y1 = self._span(box)
        for x in range(x0, x1 + 1):
            for y in range(y0, y1 + 1):
                yield (x, y)
