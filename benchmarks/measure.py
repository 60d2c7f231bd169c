"""Timing one block of work, and summarising repeated timings as median and range."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

TIMES = "\u00d7"  # the multiplication sign of ratios
DASH = "\u2013"  # the en dash of ranges


@dataclass
class Timing:
    """Client CPU seconds (every thread of this process), wall seconds and emulator CPU."""

    cpu: float = 0.0
    wall: float = 0.0
    server_cpu: float | None = None


@contextmanager
def timed(server_cpu: Callable[[], float | None] | None = None) -> Iterator[Timing]:
    """Measure the block; collect garbage first so an earlier block's garbage is not billed."""
    gc.collect()
    timing = Timing()
    server_before = server_cpu() if server_cpu else None
    cpu, wall = time.process_time(), time.perf_counter()
    yield timing
    timing.wall = time.perf_counter() - wall
    timing.cpu = time.process_time() - cpu
    server_after = server_cpu() if server_cpu else None
    if server_before is not None and server_after is not None:
        timing.server_cpu = server_after - server_before


@dataclass(frozen=True)
class Spread:
    """Median and range of repeated measurements."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values), len(values))

    def scaled(self, factor: float) -> Spread:
        return Spread(self.median * factor, self.low * factor, self.high * factor, self.count)

    def text(self, digits: int = 0, unit: str = "") -> str:
        """``median (low-high)`` with an en dash; only the median when there is one value."""
        fmt = f"{{:,.{digits}f}}"
        median = fmt.format(self.median) + unit
        if self.count < 2:
            return median
        return f"{median} ({fmt.format(self.low)}{DASH}{fmt.format(self.high)})"

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.count}


def ratio_text(spread: Spread) -> str:
    """A ratio with two decimals and its range, e.g. ``0.97x (0.93-1.02)``."""
    return spread.text(2, TIMES)


def rotated(items: Sequence[Any], round_number: int) -> list[Any]:
    """``items`` starting at a different one each round, so no variant always runs first."""
    shift = round_number % len(items)
    return [*items[shift:], *items[:shift]]
