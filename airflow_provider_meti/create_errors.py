"""A create's refusal in terms of the caller's features: which one, by index and ``alt_id``.

METI v2 answers a bad ``SourceCreateRequest`` with FastAPI's 422, whose items point into the
body: ``["body", "feature_collection", "features", 1, "geometry"]``. The server knows only
positions; the caller knows its features by ``alt_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_meti.exceptions import MetiApiError

FEATURES_LOC = ("feature_collection", "features")


def feature_position(loc: Any) -> tuple[int, str] | None:
    """The feature index a FastAPI ``loc`` points at, and the rest of the path as text."""
    if not isinstance(loc, (list, tuple)):
        return None
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    if len(parts) < 3 or tuple(parts[:2]) != FEATURES_LOC:
        return None
    index = parts[2]
    if isinstance(index, bool) or not isinstance(index, int):
        try:
            index = int(str(index))
        except ValueError:
            return None
    return index, ".".join(str(part) for part in parts[3:])


def named_rejection(error: MetiApiError, features: Sequence[Mapping[str, Any]]) -> MetiApiError:
    """``error`` with every 422 item that points at a feature naming its index and ``alt_id``;
    ``error`` itself when none does.

    :param error: the create's error, its ``details`` read from the reply
    :param features: the features of the refused POST, in the order sent
    """
    if error.status_code != 422 or not error.details:
        return error
    named: list[str] = []
    for item in error.details:
        position = feature_position(item.get("loc"))
        if position is None or not 0 <= position[0] < len(features):
            continue
        index, field = position
        alt_id = features[index].get("id")
        where = f"feature {index} of the request (alt_id {alt_id!r})"
        named.append(f"{where}{' ' + field if field else ''}: {item.get('msg', '')}".rstrip(": "))
    if not named:
        return error
    return type(error)(
        f"{error.message} | METI refused " + "; ".join(named),
        status_code=error.status_code,
        method=error.method,
        path=error.path,
        retry_after=error.retry_after,
        details=error.details,
    )
