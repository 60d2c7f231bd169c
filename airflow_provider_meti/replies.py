"""What METI's replies mean: listing pages, create answers, and whether a source is a feature.

Pure functions over parsed JSON, shared by every transport. METI's documentation shows
plain arrays; servers in front of it have wrapped them in an envelope, so both are read.
Every source read here comes out in one shape: the 2024 GitBook spelling (``internal_id``,
``claim_start``/``claim_end``, ``hectares`` as text, ``conflicting_sources``) gains today's
names, its own keys kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_meti.exceptions import MetiApiError
from airflow_provider_meti.timestamps import parse_timestamp

ENVELOPE_KEYS = ("data", "sources", "items", "results")
# What a listed source must show for the client to tell that it is one of our features.
COMPARED_FIELDS = ("alt_id", "start_at", "end_at")
RENAMED_KEYS = {
    "internal_id": "alt_id",
    "claim_start": "start_at",
    "claim_end": "end_at",
    "conflicting_sources": "conflict_with",
}
"""The 2024 GitBook names of source fields, and today's names for them."""
_OLD_KEYS = frozenset(RENAMED_KEYS)
# "41.142643914938ha (101.67ac)": the hectares, then the acres in brackets.
_HECTARES_TEXT = re.compile(r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(?:ha\b|$)")


def normal_source(source: dict[str, Any]) -> dict[str, Any]:
    """``source`` with today's field names, read from any spelling METI has used.

    Returns ``source`` itself when it already has them (the common case costs one set test).
    Otherwise a copy holding both the original keys and the normal ones; a normal key the
    reply already has is never overwritten.
    """
    hectares = source.get("hectares")
    if _OLD_KEYS.isdisjoint(source) and not isinstance(hectares, str):
        return source
    normal = dict(source)
    for old, new in RENAMED_KEYS.items():
        if old in source and normal.get(new) is None:
            normal[new] = source[old]
    if isinstance(hectares, str):
        number = hectares_number(hectares)
        if number is not None:
            normal["hectares"] = number
    return normal


def normal_page(page: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A listing page with today's names; the page itself when every source has them."""
    if all(
        _OLD_KEYS.isdisjoint(source) and not isinstance(source.get("hectares"), str)
        for source in page
    ):
        return page
    return [normal_source(source) for source in page]


def hectares_number(text: str) -> float | None:
    """The hectares of a text such as ``"41.142643914938ha (101.67ac)"``; None if unreadable."""
    match = _HECTARES_TEXT.match(text)
    if match is None:
        return None
    number = float(match.group(1))
    return number if math.isfinite(number) else None


def conflict_with_of(source: Mapping[str, Any]) -> list[str]:
    """The ids of a source's conflict partners, as a clean list of strings.

    Reads ``conflict_with`` (or the 2024 ``conflicting_sources``): a single string is one id,
    ``null`` entries and blanks are dropped, an object entry gives its ``"id"``, and an id
    listed twice counts once.
    """
    raw = source.get("conflict_with")
    if raw is None:
        raw = source.get("conflicting_sources")
    if raw is None:
        return []
    items = [raw] if isinstance(raw, (str, dict)) else raw
    if not isinstance(items, (list, tuple)):
        items = [raw]
    ids: list[str] = []
    for item in items:
        if isinstance(item, Mapping):
            item = item.get("id")
        if item is None or isinstance(item, bool):
            continue
        text = str(item).strip()
        if text and text not in ids:
            ids.append(text)
    return ids


def unwrap_page(body: Any) -> tuple[list[dict[str, Any]], int | None]:
    """The list of sources in a listing response, and the total when the server gives one."""
    if isinstance(body, list):
        return _source_objects(body), None
    if isinstance(body, dict):
        for key in ENVELOPE_KEYS:
            if isinstance(body.get(key), list):
                total = body.get("total")
                return _source_objects(body[key]), total if isinstance(total, int) else None
    raise MetiApiError(
        "expected a JSON array of sources or an object holding one under "
        f"{', '.join(ENVELOPE_KEYS)}; got {type(body).__name__}",
        method="GET",
        path="/sources",
    )


def source_object(body: Any, path: str) -> dict[str, Any]:
    """``body`` when it is a JSON object, as one source must be."""
    if not isinstance(body, dict):
        raise MetiApiError(
            f"expected a source object, got {type(body).__name__}", method="GET", path=path
        )
    return normal_source(body)


def created_ids(body: Any, features: list[dict[str, Any]], path: str) -> dict[str, dict[str, str]]:
    """Map a create response to the features it answers, by ``alt_id``.

    :param path: where the create was POSTed, for the error (the sandbox's differs)
    """
    alt_ids = [feature["id"] for feature in features]
    if isinstance(body, dict) and isinstance(body.get("id"), str) and len(features) == 1:
        return {alt_ids[0]: {"id": body["id"], "alt_id": alt_ids[0]}}
    items = body if isinstance(body, list) else None
    if isinstance(body, dict):
        items = next((body[key] for key in ENVELOPE_KEYS if isinstance(body.get(key), list)), None)
    if items is None:
        raise MetiApiError(
            f"unrecognised create response for {len(features)} feature(s): expected "
            '{"id": ...} for one feature or a list of {"id", "alt_id"} objects',
            method="POST",
            path=path,
        )
    created: dict[str, dict[str, str]] = {}
    for item in items:
        if isinstance(item, dict):
            item = normal_source(item)
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            alt_id = item.get("alt_id", alt_ids[0] if len(features) == 1 else None)
            if isinstance(alt_id, str) and alt_id in alt_ids:
                created[alt_id] = {"id": item["id"], "alt_id": alt_id}
    missing = [alt_id for alt_id in alt_ids if alt_id not in created]
    if missing:
        shown = ", ".join(repr(alt_id) for alt_id in missing[:10])
        raise MetiApiError(
            f"the create response names no source id for {len(missing)} feature(s): {shown}",
            method="POST",
            path=path,
        )
    return created


def shows_compared_fields(source: Mapping[str, Any]) -> bool:
    """True when a listed source shows what is needed to tell whether it is a feature."""
    return all(source.get(name) for name in COMPARED_FIELDS)


def same_window(feature: Mapping[str, Any], source: Mapping[str, Any]) -> bool:
    """True when a stored source has the feature's validity window."""
    properties = feature.get("properties") or {}
    try:
        return parse_timestamp(source["start_at"]) == parse_timestamp(
            properties["start_at"]
        ) and parse_timestamp(source["end_at"]) == parse_timestamp(properties["end_at"])
    except (KeyError, TypeError, ValueError):
        return False


def _source_objects(items: list[Any]) -> list[dict[str, Any]]:
    """``items`` when every one is a JSON object, as a source must be."""
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise MetiApiError(
                f"expected a list of source objects, but item {index} of the page is "
                f"{type(item).__name__}",
                method="GET",
                path="/sources",
            )
    return normal_page(items)
