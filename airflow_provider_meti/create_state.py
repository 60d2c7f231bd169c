"""A create's progress, kept in Airflow's task state store so that a killed try's retry resumes.

Airflow 3.3 gives each task instance a store that outlives its tries
(``context["task_state_store"]``). While a create runs, it records there which features each
answer showed stored, and which features' POSTs are in flight. A later try of the same task
with the same input sends only what is missing, and looks up only the features whose POST was
in flight when the earlier try stopped: the one case where METI may hold a source the record
does not show.

What is kept (alt_ids and METI ids only, never a secret):

- ``meti_create``: ``{"version", "input", "try", "sizes", "in_flight"}``: a fingerprint of
  the input and of the account it goes to, the try that wrote it (its number and the task's
  ``max_tries``), how many ids each page holds, and the alt_ids whose POST is in flight (at
  most ``batch_size`` x ``max_workers``);
- ``meti_create.stored.<n>``: ``{alt_id: id}``, each page at most ``PAGE_BYTES`` of JSON.

For 10,000 features with 20-character alt_ids and METI's 17-character ids that is about 110
pages of at most 4 KiB (under 0.5 MiB in all); the head holds one small number per page plus
the alt_ids in flight (with v2's defaults, 100 x 4 = 400 of them: about 10 KiB). Each answer
rewrites one page and the head: no value grows with the size of the create.

A record is only trusted by the try right after the one that wrote it, with the same input,
account and ``max_tries``: a cleared task (Airflow raises ``max_tries``), a try in between that
kept no record, or a record missing any page falls back to looking every feature up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from airflow_provider_meti.create import Resume

HEAD_KEY = "meti_create"
PAGE_KEY = "meti_create.stored.{}"
PAGE_BYTES = 4096
VERSION = 2

log = logging.getLogger(__name__)


class StateStore(Protocol):
    """What this module uses of Airflow's ``TaskStateStoreAccessor``."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


def input_fingerprint(
    features: Sequence[Mapping[str, Any]],
    source_fields: Mapping[str, Any],
    *,
    account: Sequence[Any],
) -> str:
    """A digest of what a create sends and where (``account``: API version, base URL, source
    routes, login; no secret): a record is only reused for the same."""
    digest = hashlib.sha256()
    header = [VERSION, list(account), dict(source_fields)]
    digest.update(_canonical(header))
    for feature in features:
        digest.update(b"\n")
        digest.update(_canonical(feature))
    return digest.hexdigest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


class TaskStateProgress:
    """Records a create's progress in ``store``; safe to call from the create's threads.

    Every write happens before the step it makes safe: the alt_ids of a POST are written as
    in flight before it starts, and leave that list only after their ids are written.
    """

    def __init__(self, store: StateStore, fingerprint: str, try_scope: Sequence[Any]) -> None:
        self._store = store
        self._input = fingerprint
        self._try = list(try_scope)
        self._lock = threading.Lock()
        self._pages: list[dict[str, str]] = []
        self._last_page_bytes = 2
        self._recorded: set[str] = set()
        self._in_flight: dict[str, None] = {}
        self._pages_to_clear = 0

    @classmethod
    def open(
        cls,
        store: StateStore,
        fingerprint: str,
        *,
        try_number: int,
        max_tries: int | None,
    ) -> tuple[TaskStateProgress, Resume | None]:
        """Start recording; return what the previous try of the same input recorded, if any.

        :param try_number: this try's number
        :param max_tries: the task instance's ``max_tries`` (Airflow raises it on a clear)
        """
        progress = cls(store, fingerprint, [try_number, max_tries])
        head = store.get(HEAD_KEY)
        resume = None
        if head is not None:
            previous = [try_number - 1, max_tries]
            resume, why_not = progress._adopt(head, previous)
            if resume is None:
                log.warning(
                    "The METI create's record in the task state store is not used (%s); "
                    "features an earlier try stored are looked up instead",
                    why_not,
                )
        with progress._lock:
            progress._write_head()
        return progress, resume

    def remove(self) -> None:
        """Delete a record an earlier try left, without recording (``durable=False``)."""
        head = self._store.get(HEAD_KEY)
        if head is None:
            return
        self._pages_to_clear = _page_count(head)
        self.clear()

    def _adopt(self, head: Any, previous: list[Any]) -> tuple[Resume | None, str]:
        self._pages_to_clear = _page_count(head)
        if not _readable(head):
            return None, "it is unreadable or of another version"
        if head["input"] != self._input:
            return None, "it is for another input or account"
        if head["try"] != previous:
            return (
                None,
                "it was not written by the previous try (a cleared task, or a try without it)",
            )
        pages: list[dict[str, str]] = []
        for number, size in enumerate(head["sizes"]):
            page = self._store.get(PAGE_KEY.format(number))
            if not isinstance(page, dict) or len(page) < size:
                return None, f"its page {number} is missing or incomplete"
            pages.append(dict(page))
        recorded: dict[str, dict[str, str]] = {}
        for page in pages:
            self._pages.append(page)
            for alt_id, source_id in page.items():
                recorded[alt_id] = {"id": source_id, "alt_id": alt_id}
        self._recorded = set(recorded)
        self._pages_to_clear = len(self._pages)
        if self._pages:
            self._last_page_bytes = len(json.dumps(self._pages[-1]))
        self._in_flight = dict.fromkeys(head["in_flight"])
        return Resume(recorded, list(head["in_flight"])), ""

    def sending(self, alt_ids: Sequence[str]) -> None:
        with self._lock:
            new = [alt_id for alt_id in alt_ids if alt_id not in self._in_flight]
            self._in_flight.update(dict.fromkeys(new))
            try:
                self._write_head()
            except BaseException:
                for alt_id in new:  # not sent: the POST does not start
                    self._in_flight.pop(alt_id, None)
                raise

    def stored(self, created: Mapping[str, dict[str, str]]) -> None:
        # What memory holds is what the next head write claims: it changes only once the
        # pages are written, so a failed write leaves the features in flight, not lost.
        with self._lock:
            added = [(a, ids["id"]) for a, ids in created.items() if a not in self._recorded]
            before = (len(self._pages), self._last_page_bytes)
            try:
                touched = {self._append(alt_id, source_id) for alt_id, source_id in added}
                for number in sorted(touched):
                    self._store.set(PAGE_KEY.format(number), self._pages[number])
            except BaseException:
                self._undo(added, *before)
                raise
            for alt_id in created:
                self._in_flight.pop(alt_id, None)
            self._write_head()

    def not_stored(self, alt_ids: Sequence[str]) -> None:
        with self._lock:
            for alt_id in alt_ids:
                self._in_flight.pop(alt_id, None)
            self._write_head()

    def clear(self) -> None:
        """Forget the record: the create succeeded, so no later try needs it."""
        with self._lock:
            self._store.delete(HEAD_KEY)
            for number in range(max(len(self._pages), self._pages_to_clear)):
                self._store.delete(PAGE_KEY.format(number))

    def _undo(self, added: Sequence[tuple[str, str]], pages: int, last_page_bytes: int) -> None:
        for alt_id, _ in added:
            self._recorded.discard(alt_id)
            for page in self._pages[max(pages - 1, 0) :]:
                page.pop(alt_id, None)
        del self._pages[pages:]
        self._last_page_bytes = last_page_bytes

    def _append(self, alt_id: str, source_id: str) -> int:
        # As Airflow measures a value: json.dumps with its default separators.
        entry_bytes = len(json.dumps(alt_id)) + len(json.dumps(source_id)) + 4
        if not self._pages or self._last_page_bytes + entry_bytes > PAGE_BYTES:
            self._pages.append({})
            self._last_page_bytes = 2
        self._pages[-1][alt_id] = source_id
        self._last_page_bytes += entry_bytes
        self._recorded.add(alt_id)
        return len(self._pages) - 1

    def _write_head(self) -> None:
        self._store.set(
            HEAD_KEY,
            {
                "version": VERSION,
                "input": self._input,
                "try": self._try,
                "sizes": [len(page) for page in self._pages],
                "in_flight": list(self._in_flight),
            },
        )


def _readable(head: Any) -> bool:
    return (
        isinstance(head, dict)
        and head.get("version") == VERSION
        and isinstance(head.get("input"), str)
        and isinstance(head.get("try"), list)
        and isinstance(head.get("sizes"), list)
        and all(isinstance(size, int) for size in head["sizes"])
        and isinstance(head.get("in_flight"), list)
    )


def _page_count(head: Any) -> int:
    """How many pages a head of any version (1 counted them, 2 sizes them) refers to."""
    if not isinstance(head, dict):
        return 0
    sizes, pages = head.get("sizes"), head.get("pages")
    if isinstance(sizes, list):
        return len(sizes)
    return pages if isinstance(pages, int) and pages >= 0 else 0
