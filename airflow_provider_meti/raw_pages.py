"""Listing pages read for writers that pass sources through: each source a ``dict`` of
``msgspec.Raw`` values, decoded from its own JSON text only as it is read.

An extract copies most of a source unchanged, above all its geometry, whose coordinates
are most of the page. Decoding them into Python floats and lists only to encode them
again allocates several objects a coordinate, and those allocations set off garbage
collections that walk every object of the task process. Here a source's values stay the
server's bytes; only its keys, and what the extract reads (the 2024 spellings, whether the
stored geometry is a whole Feature), are decoded. A page this reader cannot take as it is
(not UTF-8, not an array of objects, a number or a lone surrogate msgspec refuses) is left to
the plain path.

A page keeps each source as one ``msgspec.Raw`` (its whole JSON text) and decodes it into
its ``dict`` only when the source is read, so a writer holds one source's ``dict`` at a time,
not a whole page of them. A page of 1,000 such dicts (their key tables and some 15 ``Raw``
values each), allocated and freed on every page, made the extract's resident memory grow
with the number of pages (about 1.5 MiB more at 100 pages than at one) while the peak of
Python's own heap stayed flat: the C allocator's heap and pymalloc's arenas fragmenting (see
BENCHMARKS.md, section 3).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import msgspec

from airflow_provider_meti.replies import ENVELOPE_KEYS

RawSource = dict[str, msgspec.Raw]
"""A listed source whose values are still JSON text."""


NULL = msgspec.Raw(b"null")
_SOURCE = msgspec.json.Decoder(RawSource)


class RawPage(Sequence[RawSource]):
    """A page of ``RawSource``, each decoded from its JSON text as it is read (again on each
    read: a writer reads each source once); a writer tells it from a page of decoded sources
    by type.

    :param texts: the page's sources, each one JSON object as text
    """

    __slots__ = ("_texts",)

    def __init__(self, texts: list[msgspec.Raw]) -> None:
        self._texts = texts

    def __len__(self) -> int:
        return len(self._texts)

    @overload
    def __getitem__(self, index: int) -> RawSource: ...

    @overload
    def __getitem__(self, index: slice) -> list[RawSource]: ...

    def __getitem__(self, index: int | slice) -> RawSource | list[RawSource]:
        if isinstance(index, slice):
            return [_SOURCE.decode(text) for text in self._texts[index]]
        return _SOURCE.decode(self._texts[index])

    def __iter__(self) -> Iterator[RawSource]:
        decode = _SOURCE.decode
        for text in self._texts:
            yield decode(text)

    def __repr__(self) -> str:
        return f"RawPage({len(self._texts)} sources)"


class _Envelope(msgspec.Struct):
    """A page wrapped in an object: the sources under one of ``ENVELOPE_KEYS``."""

    data: msgspec.Raw = NULL
    sources: msgspec.Raw = NULL
    items: msgspec.Raw = NULL
    results: msgspec.Raw = NULL
    total: Any = None


# Each source kept as its text; the decoder checks that it is valid JSON (a lone surrogate or a
# NaN anywhere, in a key too, fails here as it did when each source was decoded at once).
_PAGE = msgspec.json.Decoder(list[msgspec.Raw] | _Envelope)
_SOURCES = msgspec.json.Decoder(list[msgspec.Raw])


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
            page = _page_of(body)
            return None if page is None else (page, None)
        for key in ENVELOPE_KEYS:
            wrapped = getattr(body, key)
            if memoryview(wrapped)[:1] == b"[":
                total = body.total
                page = _page_of(_SOURCES.decode(wrapped))
                if page is None:
                    return None
                return page, total if isinstance(total, int) else None
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return None


_OBJECT = ord("{")


def _page_of(texts: list[msgspec.Raw]) -> RawPage | None:
    """A page of ``texts`` when every one is a JSON object (its keys are then text, and it
    decodes into a ``RawSource``); None when one is not, for the plain path."""
    for text in texts:
        if memoryview(text)[0] != _OBJECT:
            return None
    return RawPage(texts)


def detached(source: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of ``source`` whose ``msgspec.Raw`` values own their bytes: a value decoded as
    ``Raw`` holds on to the whole reply it was read from."""
    if source is None:
        return None
    return {
        key: value.copy() if isinstance(value, msgspec.Raw) else value
        for key, value in source.items()
    }
