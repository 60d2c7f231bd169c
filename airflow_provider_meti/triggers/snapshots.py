"""What a sources-changed watcher remembers between polls, and what changed since: no I/O.

A snapshot maps each source id to whether METI flags it as in conflict. It is stored as
``base64(zlib(JSON))`` of the sorted ids and, when the watcher reports conflict changes, the
positions of the conflicting ones in that sorted list: ids only, the least that the four kinds
of change need.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS: tuple[str, ...] = ("added", "removed", "conflict_raised", "conflict_cleared")
CONFLICT_KINDS = frozenset({"conflict_raised", "conflict_cleared"})
FORMAT_VERSION = 1

Snapshot = Mapping[str, bool]
"""Source id → in conflict."""


def check_changes(changes: str | Iterable[str] | None) -> tuple[str, ...]:
    """The kinds of change asked for, in ``KINDS`` order; all of them for None.

    :raises ValueError: an unknown kind, or none at all
    """
    if changes is None:
        return KINDS
    wanted = {changes} if isinstance(changes, str) else set(changes)
    unknown = sorted(wanted - set(KINDS))
    if unknown:
        choices = ", ".join(repr(kind) for kind in KINDS)
        raise ValueError(f"changes must be among {choices}; got {', '.join(map(repr, unknown))}.")
    if not wanted:
        raise ValueError("changes must name at least one kind of change.")
    return tuple(kind for kind in KINDS if kind in wanted)


@dataclass(frozen=True)
class Listing:
    """One complete listing: every matching source's conflict flag, and for those in
    conflict the partners METI names (``conflict_with``)."""

    flags: Mapping[str, bool]
    partners: Mapping[str, tuple[str, ...]]
    polled_at: str
    """When the listing completed, ISO 8601 in UTC."""
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    """What watchers sharing this listing computed of it once for all (see below)."""


def _memoized(listing: Listing, key: Any, subject: object, compute: Any) -> Any:
    """``compute()``, once per ``key`` and ``subject`` object for ``listing``.

    Watchers of a shared listing hold the same snapshot object when they saw the same
    listings, so fifty of them cost one comparison, not fifty. The subject is kept in the
    entry, so an id reused by a new object never matches an old entry.
    """
    entry = listing.memo.get((key, id(subject)))
    if entry is not None and entry[0] is subject:
        return entry[1]
    value = compute()
    listing.memo[(key, id(subject))] = (subject, value)
    return value


def changes_since(old: Snapshot, listing: Listing, kinds: Iterable[str]) -> dict[str, list[str]]:
    """:func:`diff`, computed once per snapshot object and kinds for a shared listing."""
    wanted = tuple(kinds)
    return _memoized(listing, ("diff", wanted), old, lambda: diff(old, listing, wanted))


def diff(old: Snapshot, listing: Listing, kinds: Iterable[str]) -> dict[str, list[str]]:
    """The ids of each kind of change in ``kinds`` from ``old`` to ``listing``; a kind with
    no change is left out.

    A conflict is raised for a source newly flagged (a new source that arrives in conflict
    counts), and for each partner of it in the listing, so that a raised conflict lists both
    sources of the pair even when one of them was in conflict with a third already. A
    conflict is cleared for a source no longer flagged, and for one withdrawn while flagged.
    """
    new = listing.flags
    found: dict[str, set[str]] = {kind: set() for kind in kinds}
    if "added" in found:
        found["added"] = set(new) - set(old)
    if "removed" in found:
        found["removed"] = set(old) - set(new)
    if "conflict_raised" in found:
        raised = {sid for sid, flag in new.items() if flag and not old.get(sid, False)}
        for sid in list(raised):
            raised.update(partner for partner in listing.partners.get(sid, ()) if partner in new)
        found["conflict_raised"] = raised
    if "conflict_cleared" in found:
        found["conflict_cleared"] = {
            sid for sid, flag in old.items() if flag and not new.get(sid, False)
        }
    return {kind: sorted(ids) for kind, ids in found.items() if ids}


def kept(listing: Listing, kinds: Iterable[str]) -> Snapshot:
    """The snapshot to keep of ``listing``: the conflict flags only where ``kinds`` need them.

    One read-only mapping per listing for every watcher whose kinds need the same.
    """
    ids_only = CONFLICT_KINDS.isdisjoint(kinds)
    if ids_only:
        return _memoized(listing, "ids", listing, lambda: dict.fromkeys(listing.flags, False))
    return listing.flags


def unchanged(new: Snapshot, old: Snapshot | None, listing: Listing) -> bool:
    """``new == old`` for a snapshot ``new`` :func:`kept` of ``listing``, once for all."""
    if old is None:
        return False
    return bool(_memoized(listing, ("same", id(new)), old, lambda: new == old))


def encoded(snapshot: Snapshot, listing: Listing) -> str:
    """:func:`encode` of a snapshot :func:`kept` of ``listing``, once for all its watchers."""
    return _memoized(listing, "text", snapshot, lambda: encode(snapshot))


def encode(snapshot: Snapshot) -> str:
    """``snapshot`` as compact ASCII text (see the module's docstring)."""
    ids = sorted(snapshot)
    document: dict[str, Any] = {"v": FORMAT_VERSION, "ids": ids}
    conflicting = [index for index, sid in enumerate(ids) if snapshot[sid]]
    if conflicting:
        document["conflict"] = conflicting
    text = json.dumps(document, separators=(",", ":"))
    return base64.b64encode(zlib.compress(text.encode("utf-8"), 6)).decode("ascii")


def decode(text: str) -> dict[str, bool]:
    """The snapshot ``text`` holds.

    :raises ValueError: ``text`` is not a snapshot of this format
    """
    try:
        document = json.loads(zlib.decompress(base64.b64decode(text, validate=True)))
    except (binascii.Error, zlib.error, ValueError, TypeError) as error:
        raise ValueError(f"not a stored sources snapshot: {error}") from None
    if not isinstance(document, dict) or document.get("v") != FORMAT_VERSION:
        raise ValueError("not a stored sources snapshot of format version 1")
    ids = document.get("ids")
    conflicting = document.get("conflict", [])
    if not isinstance(ids, list) or not isinstance(conflicting, list):
        raise ValueError("a stored sources snapshot needs lists of ids and of positions")
    snapshot = dict.fromkeys((str(sid) for sid in ids), False)
    for index in conflicting:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(ids):
            raise ValueError(f"a stored sources snapshot names position {index!r} of {len(ids)}")
        snapshot[str(ids[index])] = True
    return snapshot
