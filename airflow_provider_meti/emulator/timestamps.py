"""Timestamps read the way PostgreSQL's ``timestamptz`` input reads them (the common forms).

The ledger casts ``properties.start_at``/``end_at`` with ``::timestamptz``. That accepts far
more than ISO 8601: ``2024/01/01``, a space instead of ``T``, ``UTC``/``GMT``/``Z`` or a
numeric offset with or without a colon, lower-case letters, ``24:00:00``, and fractions
finer than a microsecond, which it rounds (half to even, like ``rint``) to 1 µs.
Written apart from the client's parser on purpose: the emulator is a double of METI, not of
the client.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

_TIMESTAMP = re.compile(
    r"""^\s*
    (?P<year>\d{4})(?P<sep>[-/])(?P<month>\d{1,2})(?P=sep)(?P<day>\d{1,2})
    (?:(?:[Tt]|\s+)
        (?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?
    )?
    \s*(?P<zone>[Zz]|(?i:utc|gmt)|[+-]\d{2}(?::?\d{2})?)?
    \s*$""",
    re.VERBOSE,
)
_MICRO = Decimal("0.000001")


def parse_timestamptz(text: str) -> datetime:
    """The aware UTC moment ``text`` names, as ``text::timestamptz`` would read it.

    A missing zone means UTC: docs leave open the service's session ``TimeZone``; Supabase,
    where the ledger runs, defaults to UTC.

    :raises ValueError: PostgreSQL would refuse the text too (or the emulator cannot read it:
        named months, Julian days, ``infinity`` and ``epoch`` are not supported)
    """
    match = _TIMESTAMP.match(text)
    if match is None:
        raise ValueError(f"not a timestamp PostgreSQL reads: {text!r}")
    parts = match.groupdict()
    hour = int(parts["hour"] or 0)
    minute = int(parts["minute"] or 0)
    second = int(parts["second"] or 0)
    fraction = Decimal("0." + (parts["fraction"] or "0"))
    micros = int(fraction.quantize(_MICRO, rounding=ROUND_HALF_EVEN) * 1_000_000)
    extra = timedelta(0)
    if hour == 24 and minute == 0 and second == 0 and micros == 0:
        hour, extra = 0, timedelta(days=1)  # PostgreSQL reads 24:00:00 as the next midnight
    if minute > 59 or second > 60:
        raise ValueError(f"time out of range in {text!r}")
    if second == 60:  # a leap second rolls over into the next minute, as in PostgreSQL
        second, extra = 0, extra + timedelta(minutes=1)
    moment = datetime(
        int(parts["year"]),
        int(parts["month"]),
        int(parts["day"]),
        hour,
        minute,
        second,
        tzinfo=_zone(parts["zone"]),
    )
    return (moment + extra + timedelta(microseconds=micros)).astimezone(timezone.utc)


@lru_cache(maxsize=64)  # bulk inserts stamp thousands of sources with a few moments
def format_timestamptz(moment: datetime) -> str:
    """ISO 8601 UTC with a ``Z``: milliseconds, or microseconds when they are not whole.

    Docs leave open how METI prints a stored timestamp; its v2 examples show
    ``2026-04-13T14:22:01.000Z``.
    """
    moment = moment.astimezone(timezone.utc)
    if moment.microsecond % 1000 == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _zone(text: str | None) -> timezone:
    if text is None or text.lower() in ("z", "utc", "gmt"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 15 or minutes > 59:
        raise ValueError(f"time zone offset out of range: {text!r}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))
