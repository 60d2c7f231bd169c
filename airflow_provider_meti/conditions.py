"""What the source sensor waits for: ``exists``, ``no_conflict``, ``resolved``, ``deleted``.

One definition for the sensor (poke and reschedule) and the trigger (deferrable), whichever
transport fetched the source.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from airflow_provider_meti.exceptions import MetiNotFoundError
from airflow_provider_meti.replies import conflict_with_of

WaitFor = Literal["exists", "no_conflict", "resolved", "deleted"]
WAIT_FOR_CONDITIONS: tuple[str, ...] = ("exists", "no_conflict", "resolved", "deleted")
CONDITION_TEXT = {
    "exists": "found",
    "no_conflict": "free of conflicts",
    "resolved": "free of conflicts or withdrawn",
    "deleted": "deleted",
}
"""How each condition reads in a sentence: "Source src_1 is {text}"."""


def check_wait_for(wait_for: str) -> str:
    """Return ``wait_for`` when it names a known condition; raise ``ValueError`` otherwise."""
    if wait_for not in WAIT_FOR_CONDITIONS:
        choices = ", ".join(repr(choice) for choice in WAIT_FOR_CONDITIONS)
        raise ValueError(f"wait_for must be one of {choices}, got {wait_for!r}.")
    return wait_for


def check_source(
    get_source: Callable[[str], dict[str, Any]], source_id: str, wait_for: str
) -> tuple[bool, dict[str, Any] | None]:
    """Look a source up once and say whether ``wait_for`` holds.

    :param get_source: fetches one source, raising ``MetiNotFoundError`` on 404
    :param source_id: the METI source id
    :param wait_for: ``exists``, ``no_conflict`` (found and not in conflict), ``resolved``
        (not in conflict, or deleted: a conflict may be settled by withdrawing the source)
        or ``deleted``
    :return: ``(condition met, the source or None when it does not exist)``
    :raises MetiNotFoundError: waiting for ``no_conflict`` on a source that no longer exists
    """
    try:
        found: dict[str, Any] | MetiNotFoundError = get_source(source_id)
    except MetiNotFoundError as error:
        found = error
    return judge(source_id, wait_for, found)


async def acheck_source(
    get_source: Callable[[str], Awaitable[dict[str, Any]]], source_id: str, wait_for: str
) -> tuple[bool, dict[str, Any] | None]:
    """:func:`check_source` with a coroutine fetching the source."""
    try:
        found: dict[str, Any] | MetiNotFoundError = await get_source(source_id)
    except MetiNotFoundError as error:
        # Without its traceback: it would hold this frame, which holds the error, a cycle
        # left for the garbage collector on every check of a source that is not there.
        found = error.with_traceback(None)
    return judge(source_id, wait_for, found)


def judge(
    source_id: str, wait_for: str, found: dict[str, Any] | MetiNotFoundError
) -> tuple[bool, dict[str, Any] | None]:
    """Whether ``wait_for`` holds for a source as fetched (or the 404 that came instead)."""
    if isinstance(found, MetiNotFoundError):
        if wait_for in ("deleted", "resolved"):
            return True, None
        if wait_for == "no_conflict":
            raise MetiNotFoundError(
                f"source {source_id} does not exist (any more), so it can never become free "
                f"of conflicts: {found.message}",
                status_code=found.status_code,
                method=found.method,
                path=found.path,
            ) from None
        return False, None
    if wait_for == "deleted":
        return False, found
    if wait_for in ("no_conflict", "resolved"):
        return not in_conflict(found), found
    return True, found


def in_conflict(source: Mapping[str, Any]) -> bool:
    """True when METI flags the source as overlapping another one: the one definition.

    In conflict when the ``conflict`` flag is set, or when ``conflict_with`` names any
    partner (read by :func:`~airflow_provider_meti.replies.conflict_with_of`, so a string, a
    list with ``null`` entries or objects with an ``"id"`` all count as METI meant them).
    """
    flag = source.get("conflict")
    flagged = flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")
    return flagged or bool(conflict_with_of(source))
