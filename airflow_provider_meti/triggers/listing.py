"""One complete listing of the matching sources through the asyncio client, or an error.

Pages are read as the sync client reads them (``limit``/``offset`` until an empty page or the
reply's ``total``), each with its own retry budget. Only what a snapshot needs is kept of each
source. A listing that ends before the ``total`` the server announced, or a server that
ignores ``offset``, raises :class:`IncompleteListingError`: a cut-short listing must never
read as "sources removed".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_meti.conditions import in_conflict
from airflow_provider_meti.exceptions import MetiApiError
from airflow_provider_meti.replies import conflict_with_of, unwrap_page
from airflow_provider_meti.triggers.snapshots import Listing

if TYPE_CHECKING:
    from airflow_provider_meti.aio.client import AsyncMetiClient

PAGE_SIZE = 1000
LIST_FILTERS: tuple[str, ...] = (
    "id",
    "alt_id",
    "methodology",
    "steward_id",
    "project_id",
    "outcome_reporting_year",
)
"""The query parameters METI documents for ``GET /sources``."""


class IncompleteListingError(MetiApiError):
    """The listing ended before every matching source was read."""


def check_filters(filters: Mapping[str, Any] | None) -> dict[str, str | int]:
    """``filters`` with unset values dropped and keys sorted; only documented filters.

    :raises ValueError: an undocumented filter (METI would ignore it and the watcher would
        watch every source), or a value that is not text or a whole number
    """
    checked: dict[str, str | int] = {}
    for key in sorted(filters or {}):
        value = (filters or {})[key]
        if key not in LIST_FILTERS:
            raise ValueError(
                f"filters: {key!r} is not a METI listing filter; use {', '.join(LIST_FILTERS)}."
            )
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"filters: {key!r} must be text or a whole number, got {value!r}.")
        checked[key] = value
    return checked


def utc_now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


async def list_sources(
    client: AsyncMetiClient,
    filters: Mapping[str, Any],
    *,
    page_size: int = PAGE_SIZE,
    now: Callable[[], str] = utc_now_text,
) -> Listing:
    """Every source matching ``filters``, read to the end.

    :raises MetiError: a page failed after the client's retries
    :raises IncompleteListingError: the listing ended short of its ``total``
    """
    flags: dict[str, bool] = {}
    partners: dict[str, tuple[str, ...]] = {}
    path = client.api.sources_path
    offset = 0
    previous_first: dict[str, Any] | None = None
    while True:
        params = {**filters, "limit": page_size, "offset": offset}
        page, total = unwrap_page(await client.request("GET", path, params=params))
        first = page[0] if page else None
        if first is not None and first == previous_first:
            raise IncompleteListingError(
                f"the server returned the same page for offset {offset} as for the one before",
                method="GET",
                path=path,
            )
        previous_first = first
        for source in page:
            source_id = source.get("id")
            if not isinstance(source_id, str) or not source_id:
                continue  # nothing to follow it by
            conflict = in_conflict(source)
            flags[source_id] = conflict
            if conflict:
                partners[source_id] = tuple(conflict_with_of(source))
        offset += len(page)
        if not page or (total is not None and offset >= total):
            break
    if total is not None and offset < total:
        raise IncompleteListingError(
            f"the listing ended after {offset} of the {total} sources it announced",
            method="GET",
            path=path,
        )
    return Listing(flags=flags, partners=partners, polled_at=now())
