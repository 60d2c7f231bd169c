"""ProgressLog: how far a long listing has come, in the task log."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sized
from typing import Any, TypeVar

_Page = TypeVar("_Page", bound=Sized)


class ProgressLog:
    """Logs pages and sources seen, every 10 pages or every 5 seconds, whichever comes first."""

    def __init__(self, log: Any, *, every_pages: int = 10, every_seconds: float = 5.0) -> None:
        self._log = log
        self._every_pages = every_pages
        self._every_seconds = every_seconds

    def follow(self, pages: Iterable[_Page]) -> Iterator[_Page]:
        """Yield ``pages`` unchanged, logging progress along the way and a total at the end."""
        started = last_logged_at = time.monotonic()
        page_count = logged_pages = source_count = 0
        for page in pages:
            page_count += 1
            source_count += len(page)
            now = time.monotonic()
            if (
                page_count - logged_pages >= self._every_pages
                or now - last_logged_at >= self._every_seconds
            ):
                self._log.info("Fetched %d pages, %d sources so far", page_count, source_count)
                last_logged_at, logged_pages = now, page_count
            yield page
            del page  # not kept alive while the next page is fetched
        elapsed = time.monotonic() - started
        self._log.info("Fetched %d sources in %d pages (%.1f s)", source_count, page_count, elapsed)
