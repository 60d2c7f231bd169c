"""Sources as GeoJSON Features: one per line (NDJSON) or one FeatureCollection document."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from airflow_provider_meti.outputs.json_text import compact_json

__all__ = [
    "FEATURE_COLLECTION_EXTENSIONS",
    "compact_json",
    "source_to_feature",
    "write_feature_bytes",
    "write_features",
]

FEATURE_COLLECTION_EXTENSIONS = (".geojson", ".json")
"""``output_path`` suffixes written as one FeatureCollection; anything else is NDJSON."""


def stored_geometry(value: Any) -> Any:
    """The geometry of a source's ``geojson``: METI's ledger keeps either the bare geometry or
    the whole Feature as it was sent (``{"type": "Feature", "geometry": {...}, ...}``).

    :param value: the source's ``geojson`` field, as it came
    """
    if isinstance(value, Mapping) and value.get("type") == "Feature":
        return value.get("geometry")
    return value


def source_to_feature(source: Mapping[str, Any]) -> dict[str, Any]:
    """A stored source as a GeoJSON Feature: its polygon as geometry, the rest as properties.

    The values are kept as they came; a stored Feature gives its geometry (its own
    ``properties`` are the sent copy of what the source's fields say).
    """
    properties = dict(source)  # a copy minus two keys: 3x faster than a filtering comprehension
    properties.pop("id", None)
    properties.pop("geojson", None)
    return {
        "type": "Feature",
        "id": source.get("id"),
        "geometry": stored_geometry(source.get("geojson")),
        "properties": properties,
    }


def write_features(
    handle: IO[str], pages: Iterable[list[dict[str, Any]]], *, as_collection: bool
) -> int:
    """Write sources as Features, page by page; return how many were written.

    :param handle: a text file open for writing
    :param pages: lists of sources
    :param as_collection: one FeatureCollection document instead of one Feature per line
    """
    count = 0
    if as_collection:
        handle.write('{"type": "FeatureCollection", "features": [\n')
    for page in pages:
        if not page:
            continue
        lines = [compact_json(source_to_feature(source)) for source in page]
        if as_collection:
            handle.write((",\n" if count else "") + ",\n".join(lines))
        else:
            handle.write("\n".join(lines) + "\n")
        count += len(lines)
        # Let go of this page before the next is fetched: one page in memory, not two.
        del page, lines
    if as_collection:
        handle.write("\n]}\n")
    return count


def write_feature_bytes(
    handle: IO[bytes], pages: Iterable[Sequence[dict[str, Any]]], *, as_collection: bool
) -> int:
    """``write_features`` as UTF-8 bytes; a ``raw_pages.RawPage`` is written with its values
    copied as the server sent them (see ``raw_features``), any other page as decoded.

    :param handle: a binary file open for writing
    :param pages: lists of sources, decoded or raw
    :param as_collection: one FeatureCollection document instead of one Feature per line
    """
    count = 0
    separator = b",\n" if as_collection else b"\n"
    if as_collection:
        handle.write(b'{"type": "FeatureCollection", "features": [\n')
    for page in pages:
        if not page:
            continue
        buffer = bytearray(b",\n" if as_collection and count else b"")
        if _is_raw(page):
            from airflow_provider_meti.outputs.raw_features import encode_raw_features

            encode_raw_features(page, buffer, separator)
        else:
            buffer += separator.join(
                compact_json(source_to_feature(source)).encode() for source in page
            )
        if not as_collection:
            buffer += b"\n"
        handle.write(buffer)
        count += len(page)
        # Let go of this page before the next is fetched: one page in memory, not two.
        del page, buffer
    if as_collection:
        handle.write(b"\n]}\n")
    return count


def _is_raw(page: Sequence[dict[str, Any]]) -> bool:
    try:
        from airflow_provider_meti.raw_pages import RawPage
    except ImportError:  # pragma: no cover - no msgspec, so no raw pages either
        return False
    return isinstance(page, RawPage)
