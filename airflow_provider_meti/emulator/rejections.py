"""Why the emulator's ledger refused a FeatureCollection: every problem found, each with where.

METI's ledger refuses the whole collection with one generic message; the emulator keeps what
it found (feature index, field path, rule) so the routes can answer in v1's or v2's shape and
tests can assert on the rule that fired.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rejection:
    """One broken rule.

    :param index: the feature's position in ``features`` (None: the collection itself)
    :param path: where inside the feature (or collection), e.g. ``("geometry",)`` or
        ``("properties", "start_at")``
    :param message: what is wrong, for people
    :param kind: a stable name of the rule, for code and tests (e.g. ``"invalid_geometry"``)
    """

    index: int | None
    path: tuple[str | int, ...]
    message: str
    kind: str

    def __str__(self) -> str:
        inside = ".".join(str(part) for part in self.path)
        where = " ".join(part for part in (self._feature(), inside) if part)
        return f"{where}: {self.message}" if where else self.message

    def _feature(self) -> str:
        return "" if self.index is None else f"feature {self.index}"


class CollectionRejected(Exception):
    """The ledger stored nothing: at least one feature (or the collection) breaks a rule.

    :param problems: every problem found, collection-level ones first
    """

    def __init__(self, problems: list[Rejection]) -> None:
        if not problems:
            raise ValueError("a rejection needs at least one problem")
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}")
