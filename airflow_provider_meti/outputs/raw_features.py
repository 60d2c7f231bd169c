"""Sources read as ``dict`` of ``msgspec.Raw`` (see ``raw_pages``) written as GeoJSON
Features, their values copied as the server's bytes.

The Feature is the one ``features.source_to_feature`` makes, with the same keys in the same
order: the 2024 spellings gain today's names and hectares given as text become a number,
as ``replies.normal_source`` does for a decoded source.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from airflow_provider_meti.raw_pages import NULL, RawSource
from airflow_provider_meti.replies import RENAMED_KEYS, hectares_number

_OLD_KEYS = frozenset(RENAMED_KEYS)
_QUOTE = b'"'
_BRACE = b"{"


class _Stored(msgspec.Struct):
    """What tells a stored whole Feature from a bare geometry; the rest is skipped."""

    type: Any = None
    geometry: msgspec.Raw = NULL


_STORED = msgspec.json.Decoder(_Stored)
_TEXT = msgspec.json.Decoder(str)
# One encoder for every line; it writes a Raw value's bytes as they are.
_ENCODER = msgspec.json.Encoder()


def encode_raw_features(sources: Iterable[RawSource], buffer: bytearray, separator: bytes) -> None:
    """Append each source's Feature to ``buffer`` as compact JSON, ``separator`` between.

    :param sources: a page read by ``raw_pages.read_raw_page``
    :param buffer: where the JSON text goes
    :param separator: written between two Features
    """
    for index, source in enumerate(sources):
        if index:
            buffer += separator
        _ENCODER.encode_into(raw_feature(source), buffer, -1)


def raw_feature(source: RawSource) -> dict[str, Any]:
    """``source`` as a GeoJSON Feature whose values are still JSON text.

    :param source: a listed source (see ``raw_pages.read_raw_page``)
    """
    properties: dict[str, Any] = dict(source)
    id_ = properties.pop("id", NULL)
    geometry = properties.pop("geojson", NULL)
    if memoryview(geometry)[:1] == _BRACE:
        stored = _STORED.decode(geometry)
        if stored.type == "Feature":
            geometry = stored.geometry
    if not _OLD_KEYS.isdisjoint(properties):
        for old, new in RENAMED_KEYS.items():
            if old in properties and properties.get(new, NULL) == NULL:
                properties[new] = properties[old]
    hectares = properties.get("hectares")
    if hectares is not None and memoryview(hectares)[:1] == _QUOTE:
        number = _hectares(hectares)
        if number is not None:
            properties["hectares"] = number
    return {"type": "Feature", "id": id_, "geometry": geometry, "properties": properties}


def _hectares(raw: msgspec.Raw) -> float | None:
    # The page decoded, so this is valid JSON text with no lone surrogate (msgspec refuses).
    return hectares_number(_TEXT.decode(raw))
