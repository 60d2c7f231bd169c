"""Listing pages read for writers that pass sources through: each source a ``dict`` of
``msgspec.Raw`` values.

An extract copies most of a source unchanged, above all its geometry, whose coordinates
are most of the page. Decoding them into Python floats and lists only to encode them
again allocates several objects a coordinate, and those allocations set off garbage
collections that walk every object of the task process. Here a source's values stay the
server's bytes; only its keys, and what the extract reads (the 2024 spellings, whether the
stored geometry is a whole Feature), are decoded. A page this reader cannot take as it is
(not UTF-8, not an array of objects, a number or a lone surrogate msgspec refuses) is left to
the plain path.
"""

from __future__ import annotations

from typing import Any

import msgspec

from airflow_provider_meti.replies import ENVELOPE_KEYS

RawSource = dict[str, msgspec.Raw]
"""A listed source whose values are still JSON text."""


class RawPage(list[RawSource]):
    """A page of ``RawSource``: a writer tells it from a page of decoded sources by type."""


NULL = msgspec.Raw(b"null")


class _Envelope(msgspec.Struct):
    """A page wrapped in an object: the sources under one of ``ENVELOPE_KEYS``."""

    data: msgspec.Raw = NULL
    sources: msgspec.Raw = NULL
    items: msgspec.Raw = NULL
    results: msgspec.Raw = NULL
    total: Any = None


_PAGE = msgspec.json.Decoder(list[RawSource] | _Envelope)
_SOURCES = msgspec.json.Decoder(list[RawSource])


def read_raw_page(content: bytes) -> tuple[RawPage, int | None] | None:
    """The sources of a listing reply's body and its total; None when only the plain path
    can read it (the plain path then reads it, or says what is wrong with it).

    :param content: the reply's body
    """
    if not content.isascii():
        try:
            content.decode("utf-8")  # msgspec does not check what it keeps as Raw
        except UnicodeDecodeError:
            return None
    if b"\n" in content or b"\r" in content:
        # A value kept as Raw must not carry a line break into one NDJSON line.
        try:
            content = msgspec.json.format(content, indent=-1)
        except msgspec.DecodeError:
            return None
    try:
        body = _PAGE.decode(content)
        if isinstance(body, list):
            return RawPage(body), None
        for key in ENVELOPE_KEYS:
            wrapped = getattr(body, key)
            if memoryview(wrapped)[:1] == b"[":
                total = body.total
                return RawPage(_SOURCES.decode(wrapped)), total if isinstance(total, int) else None
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return None


def detached(source: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of ``source`` whose ``msgspec.Raw`` values own their bytes: a value decoded as
    ``Raw`` holds on to the whole reply it was read from."""
    if source is None:
        return None
    return {
        key: value.copy() if isinstance(value, msgspec.Raw) else value
        for key, value in source.items()
    }
