"""Values as JSON text that is always valid JSON and always encodable as UTF-8.

Sources come from decoded JSON replies, and a decoder may hand over what JSON text cannot
hold as it is: a float that overflowed to infinity (``1e400``) or a lone surrogate
(``"\\ud800"``, a valid JSON escape but no Unicode scalar value, so not encodable as UTF-8).
``compact_json`` writes both so that a JSON reader gets the same value back:

- ``inf`` and ``-inf`` as the numbers ``1e999`` and ``-1e999`` (valid JSON, which IEEE 754
  readers such as Python's ``json`` and JavaScript's ``JSON.parse`` read as infinity again);
  ``nan`` as ``null`` (no JSON number reads as NaN);
- a text holding a lone surrogate with every non-ASCII character escaped (``\\ud800``).

Both are rare, so the common case costs one C-encoder call and an ASCII check.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from typing import Any

# One encoder for every line: json.dumps with options builds a new JSONEncoder on each call.
# allow_nan=False: the encoder would otherwise write Infinity and NaN, which are not JSON.
_COMPACT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
_ASCII = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=str)
_SURROGATE = re.compile("[\ud800-\udfff]")

# Stand-ins for non-finite floats while encoding: random, so no text of a source can match.
_MARKER = secrets.token_hex(16)
_POSITIVE_INFINITY = f"meti-inf-{_MARKER}"
_NEGATIVE_INFINITY = f"meti-minus-inf-{_MARKER}"


def compact_json(value: Any) -> str:
    """``value`` as compact JSON, non-ASCII kept as is unless it holds a lone surrogate.

    :param value: a JSON-like value (a value of another type is written as its ``str``)
    """
    infinities = False
    try:
        text = _COMPACT.encode(value)
    except ValueError:  # a non-finite float somewhere
        value, infinities = _marked(value), True
        text = _COMPACT.encode(value)
    if has_surrogate(text):
        text = _ASCII.encode(value)
    if infinities:
        text = text.replace(f'"{_POSITIVE_INFINITY}"', "1e999")
        text = text.replace(f'"{_NEGATIVE_INFINITY}"', "-1e999")
    return text


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (and so cannot be encoded as UTF-8).

    :param text: any text
    """
    return not text.isascii() and _SURROGATE.search(text) is not None


def _marked(value: Any) -> Any:
    """A copy of ``value`` with each non-finite float replaced by a marker (NaN by None)."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return _POSITIVE_INFINITY if value > 0 else _NEGATIVE_INFINITY
        return value
    if isinstance(value, dict):
        return {key: _marked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_marked(item) for item in value]
    return value
