"""A create's progress, kept in Airflow's task state store so that a killed try's retry resumes.

Airflow 3.3 gives each task instance a store that outlives its tries
(``context["task_state_store"]``). While a create runs, it records there which features each
answer showed stored, and which features' POSTs are in flight. A later try of the same task
with the same input sends only what is missing, and looks up only the features whose POST was
in flight when the earlier try stopped: the one case where METI may hold a source the record
does not show.

What is kept (alt_ids and METI ids only, never a secret):

- ``meti_create``: ``{"version", "input", "pages", "in_flight"}``: a fingerprint of the input,
  how many pages of ids follow, and the alt_ids whose POST is in flight (at most
  ``max_workers`` batches);
- ``meti_create.stored.<n>``: ``{alt_id: id}``, each page at most ``PAGE_BYTES`` of JSON.

For 10,000 features with 20-character alt_ids and METI's 36-character ids that is about 160
pages of at most 4 KiB (0.6 MiB in all) plus the head, and each answer rewrites one page and
the head: no value grows with the size of the create.
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
VERSION = 1

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
    api_number: int,
    base_url: str,
) -> str:
    """A digest of what a create sends and where: a record is only reused for the same."""
    digest = hashlib.sha256()
    header = [VERSION, api_number, base_url, dict(source_fields)]
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

    def __init__(self, store: StateStore, fingerprint: str) -> None:
        self._store = store
        self._input = fingerprint
        self._lock = threading.Lock()
        self._pages: list[dict[str, str]] = []
        self._last_page_bytes = 2
        self._recorded: set[str] = set()
        self._in_flight: dict[str, None] = {}
        self._pages_to_clear = 0

    @classmethod
    def open(cls, store: StateStore, fingerprint: str) -> tuple[TaskStateProgress, Resume | None]:
        """Start recording; return what an earlier try of the same input recorded, if any."""
        progress = cls(store, fingerprint)
        head = store.get(HEAD_KEY)
        resume = None
        if _readable(head) and head["input"] == fingerprint:
            resume = progress._adopt(head)
        elif head is not None:
            log.warning(
                "The METI create's record in the task state store is for another input (or "
                "unreadable); it is not used, and features an earlier try stored are looked up"
            )
            if _readable(head):
                progress._pages_to_clear = head["pages"]
        with progress._lock:
            progress._write_head()
        return progress, resume

    def _adopt(self, head: Mapping[str, Any]) -> Resume:
        recorded: dict[str, dict[str, str]] = {}
        for number in range(head["pages"]):
            page = self._store.get(PAGE_KEY.format(number))
            page = dict(page) if isinstance(page, dict) else {}
            self._pages.append(page)
            for alt_id, source_id in page.items():
                recorded[alt_id] = {"id": source_id, "alt_id": alt_id}
        self._recorded = set(recorded)
        self._pages_to_clear = len(self._pages)
        if self._pages:
            self._last_page_bytes = len(json.dumps(self._pages[-1]))
        self._in_flight = dict.fromkeys(head["in_flight"])
        return Resume(recorded, list(head["in_flight"]))

    def sending(self, alt_ids: Sequence[str]) -> None:
        with self._lock:
            self._in_flight.update(dict.fromkeys(alt_ids))
            self._write_head()

    def stored(self, created: Mapping[str, dict[str, str]]) -> None:
        with self._lock:
            touched: set[int] = set()
            for alt_id, ids in created.items():
                if alt_id not in self._recorded:
                    touched.add(self._append(alt_id, ids["id"]))
                self._in_flight.pop(alt_id, None)
            for number in sorted(touched):
                self._store.set(PAGE_KEY.format(number), self._pages[number])
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
                "pages": len(self._pages),
                "in_flight": list(self._in_flight),
            },
        )


def _readable(head: Any) -> bool:
    return (
        isinstance(head, dict)
        and head.get("version") == VERSION
        and isinstance(head.get("input"), str)
        and isinstance(head.get("pages"), int)
        and isinstance(head.get("in_flight"), list)
    )
