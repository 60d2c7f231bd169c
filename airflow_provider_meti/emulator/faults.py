"""Deterministic fault injection: which request fails, and how.

One seeded ``random.Random`` decides, under a lock, for each request the plan applies to, so
the same seed and the same sequence of requests give the same faults.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

FAULT_KINDS = ("500", "503", "429", "drop", "stored_then_drop", "latency")
"""``drop`` closes the connection before processing; ``stored_then_drop`` after it."""
DEFAULT_KINDS = ("503", "429", "drop")
DEFAULT_PATHS = ("/sources",)
"""Faults hit the sources API unless told otherwise; ``/token`` and ``/oauth/token`` are opt-in."""
ADMIN_PREFIX = "/_emulator/"


@dataclass(frozen=True)
class Fault:
    """The fault chosen for one request."""

    kind: str
    retry_after: float
    latency: float


@dataclass(frozen=True)
class FaultPlan:
    """How often, how and where to fail.

    :param rate: probability (0..1) that a matching request fails
    :param kinds: the faults to choose from, uniformly (see ``FAULT_KINDS``)
    :param seed: seeds the decisions
    :param retry_after: seconds sent in ``Retry-After`` with a 429 (fractions allowed)
    :param latency: seconds a ``latency`` fault waits before answering normally
    :param methods: only these HTTP methods (None: all)
    :param paths: only paths starting with one of these prefixes
    :param count: stop after injecting this many faults (None: no limit)
    :param skip: serve this many matching requests normally before faults may start
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = DEFAULT_KINDS
    seed: int = 0
    retry_after: float = 1.0
    latency: float = 0.0
    methods: tuple[str, ...] | None = None
    paths: tuple[str, ...] = DEFAULT_PATHS
    count: int | None = None
    skip: int = 0

    def __post_init__(self) -> None:
        rate_is_number = isinstance(self.rate, (int, float)) and not isinstance(self.rate, bool)
        if not rate_is_number or not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be a number between 0 and 1, got {self.rate!r}")
        if not self.kinds or any(kind not in FAULT_KINDS for kind in self.kinds):
            raise ValueError(f"kinds must be a non-empty list of {', '.join(FAULT_KINDS)}")
        for name in ("retry_after", "latency"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number of seconds")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0
        ):
            raise ValueError(f"count must be a non-negative integer or null, got {self.count!r}")
        if isinstance(self.skip, bool) or not isinstance(self.skip, int) or self.skip < 0:
            raise ValueError(f"skip must be a non-negative integer, got {self.skip!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FaultPlan:
        """Build a plan from JSON-like settings (``{}`` means no faults).

        :raises ValueError: an unknown key or a value out of range
        """
        unknown = set(config) - {field for field in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        values = dict(config)
        for name in ("kinds", "methods", "paths"):
            if values.get(name) is not None:
                values[name] = _as_tuple(name, values[name])
        if values.get("methods") is not None:
            values["methods"] = tuple(method.upper() for method in values["methods"])
        return cls(**values)

    def applies_to(self, method: str, path: str) -> bool:
        """Whether a request may be faulted (admin endpoints never are)."""
        if self.rate <= 0 or path.startswith(ADMIN_PREFIX):
            return False
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return any(path.startswith(prefix) for prefix in self.paths)

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready settings."""
        settings = asdict(self)
        for name in ("kinds", "methods", "paths"):
            if settings[name] is not None:
                settings[name] = list(settings[name])
        return settings


def _as_tuple(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, Iterable) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name} must be a list of strings")
    return tuple(value)


class FaultInjector:
    """Applies a :class:`FaultPlan` to the requests it is asked about (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan = FaultPlan()
        self._random = random.Random(self._plan.seed)
        self._injected = 0
        self._matched = 0

    @property
    def plan(self) -> FaultPlan:
        """The plan in force."""
        with self._lock:
            return self._plan

    def configure(self, plan: FaultPlan) -> None:
        """Replace the plan and restart its decisions from the plan's seed."""
        with self._lock:
            self._plan = plan
            self._random = random.Random(plan.seed)
            self._injected = 0
            self._matched = 0

    def clear(self) -> None:
        """Stop injecting faults."""
        self.configure(FaultPlan())

    def decide(self, method: str, path: str) -> Fault | None:
        """The fault for this request, or None to serve it normally."""
        with self._lock:
            plan = self._plan
            if not plan.applies_to(method, path):
                return None
            self._matched += 1
            if self._matched <= plan.skip:
                return None
            if plan.count is not None and self._injected >= plan.count:
                return None
            if self._random.random() >= plan.rate:
                return None
            self._injected += 1
            kind = plan.kinds[self._random.randrange(len(plan.kinds))]
            return Fault(kind, plan.retry_after, plan.latency)
