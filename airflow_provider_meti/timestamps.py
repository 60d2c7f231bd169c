"""ISO 8601 timestamps as METI accepts them, read into aware UTC datetimes."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_TIMESTAMP = re.compile(
    r"""
    (?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})
    (?:[T\ ](?P<hour>\d{2}):(?P<minute>\d{2})
        (?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?
    )?
    \s*(?P<zone>[Zz]|[+-]\d{2}(?::?\d{2})?)?
    """,
    re.VERBOSE,
)


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 timestamp into an aware UTC datetime.

    Accepts a trailing ``Z``, ``+HH:MM``/``+HHMM``/``+HH`` offsets, any number of fractional
    digits (beyond microseconds they are truncated) and a bare date (midnight). A timestamp
    without a zone is taken as UTC.

    :param value: the timestamp text, e.g. ``"2024-11-01T16:25:00.000Z"``
    :raises ValueError: the value is not a string or not an ISO 8601 timestamp
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 string, got {type(value).__name__}")
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    parts = match.groupdict()
    fraction = (parts["fraction"] or "0")[:6].ljust(6, "0")
    try:
        parsed = datetime(
            int(parts["year"]),
            int(parts["month"]),
            int(parts["day"]),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            int(fraction),
            tzinfo=_zone(parts["zone"]),
        )
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError) as error:
        raise ValueError(f"not a valid timestamp: {value!r} ({error})") from None


def _zone(text: str | None) -> timezone:
    if text is None or text in ("Z", "z"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset out of range: {text}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))
