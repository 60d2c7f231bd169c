"""Creating many sources: batches in parallel, and no duplicate after a lost answer.

METI never de-duplicates, so a POST whose answer was lost is not simply sent again: the
listing is read first, and only the features it does not show are re-sent. When anything
fails, the error names every source that was stored (``MetiPartialCreateError``).

Batches are grouped into lanes: batches holding features that overlap in space and time
(``lanes.overlap_lanes``) share a lane and are sent one after another, since METI's ledger
does not flag two overlapping features stored by concurrent transactions. Lanes run in
parallel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_provider_meti.exceptions import MetiApiError, MetiPartialCreateError
from airflow_provider_meti.lanes import Groups
from airflow_provider_meti.replies import same_window, shows_compared_fields
from airflow_provider_meti.retries import (
    CallBudget,
    CallCancelled,
    mark_final,
    may_have_been_processed,
)

# How often a thread waiting for parallel creates returns to Python to run signal handlers.
INTERRUPT_CHECK_SECONDS = 0.1

Created = dict[str, dict[str, str]]  # {alt_id: {"id", "alt_id"}}


@dataclass
class Batch:
    """The features of one POST and the descriptive fields it carries (v2).

    :param features: validated features
    :param fields: the request's top-level descriptive fields (empty on v1)
    """

    features: list[dict[str, Any]]
    fields: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]

    def without(self, alt_ids: Mapping[str, Any]) -> Batch:
        """This batch without the features whose ``id`` is in ``alt_ids``."""
        return Batch([f for f in self.features if f["id"] not in alt_ids], self.fields)


class CreateProgress(Protocol):
    """Told what a create is about to send and what it has stored, as it happens; a
    durable record of it lets a later try resume (``create_state.TaskStateProgress``)."""

    def sending(self, alt_ids: Sequence[str]) -> None:
        """These features' POST is about to start: from now on their outcome is in doubt."""

    def stored(self, created: Mapping[str, dict[str, str]]) -> None:
        """These features are stored in METI (``{alt_id: {"id", "alt_id"}}``)."""

    def not_stored(self, alt_ids: Sequence[str]) -> None:
        """These features' POST failed in a way that shows METI stored none of them."""


@dataclass(frozen=True)
class Resume:
    """What an earlier try of the same create recorded.

    :param recorded: ``{alt_id: {"id", "alt_id"}}`` of the features it saw stored
    :param in_doubt: alt_ids of the features whose POST was in flight when it stopped
    """

    recorded: Mapping[str, dict[str, str]]
    in_doubt: Sequence[str] = ()


class NoProgress:
    """Keeps no record: a create that cannot resume beyond looking features up."""

    def sending(self, alt_ids: Sequence[str]) -> None:
        pass

    def stored(self, created: Mapping[str, dict[str, str]]) -> None:
        pass

    def not_stored(self, alt_ids: Sequence[str]) -> None:
        pass


PostBatch = Callable[[Batch, CallBudget], Created]
LookUp = Callable[
    [Sequence[Mapping[str, Any]], Callable[[], CallBudget]], tuple[Created, list[str]]
]


def find_stored(
    features: Sequence[Mapping[str, Any]], pages: Iterable[list[dict[str, Any]]]
) -> tuple[Created, list[str]]:
    """Which ``features`` the listing ``pages`` show, and which it can neither confirm nor
    rule out (sources listed without ``alt_id``, ``start_at`` or ``end_at``).

    Stops reading pages once every feature is found.
    """
    wanted = {feature["id"]: feature for feature in features}
    existing: Created = {}
    provable = True
    for page in pages:
        for source in page:
            if not shows_compared_fields(source):
                provable = False
                continue
            alt_id = source["alt_id"]
            feature = wanted.get(alt_id)
            if feature is not None and alt_id not in existing and same_window(feature, source):
                existing[alt_id] = {"id": source["id"], "alt_id": alt_id}
        if len(existing) == len(wanted):
            return existing, []
    unconfirmed = [] if provable else [alt_id for alt_id in wanted if alt_id not in existing]
    return existing, unconfirmed


class BatchCreator:
    """Sends batches of features, one retry budget each, on up to ``max_workers`` threads.

    :param post: POSTs one batch within a budget; returns what it created
    :param look_up: reads which features are stored (after an answer was lost)
    :param new_budget: a fresh budget for one batch, stopped by the given cancel event
    :param total: features in the whole collection (for the error's count)
    :param already: features known to exist before this run
    :param progress: told before each POST and after each answer (or lookup) is read
    :param post_path: the path the POSTs go to: a failure of another request made for them
        (the token's) leaves nothing in doubt
    """

    def __init__(
        self,
        *,
        post: PostBatch,
        look_up: LookUp,
        new_budget: Callable[[threading.Event], CallBudget],
        total: int,
        already: Mapping[str, dict[str, str]],
        progress: CreateProgress | None = None,
        post_path: str | None = None,
    ) -> None:
        self._post = post
        self._post_path = post_path
        self._progress = progress or NoProgress()
        self._look_up = look_up
        self._new_budget = new_budget
        self._total = total
        self._already = already
        self._created: Created = {}
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._failure: BaseException | None = None  # the first batch's to fail, in time
        self._in_doubt: list[str] = []  # answer lost, lookup cut short: stored or not

    def run(self, lanes: list[list[Batch]], max_workers: int) -> Created:
        """Create every lane's batches, each lane's in order; return
        ``{alt_id: {"id", "alt_id"}}`` for what was created.

        Even with one worker the POSTs run on a worker thread, so that an interrupt of the
        calling thread never abandons a POST in flight: no further POST starts, POSTs in
        flight are waited for, and ``MetiPartialCreateError`` lists what was stored.
        """
        if not lanes:
            return self._created
        workers = max(1, min(max_workers, len(lanes)))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="meti-create")
        try:
            futures = [pool.submit(self._create_lane, lane) for lane in lanes]
            _wait_interruptibly(futures)
        except BaseException as interrupt:  # a task timeout or SIGTERM in this thread
            self._cancelled.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise self._report(interrupt) from interrupt
        self._cancelled.set()  # after a failure: stop the other batches' retries, start no more
        pool.shutdown(wait=True, cancel_futures=True)
        failure = self._failure
        if failure is not None:
            raise self._report(failure) from failure
        return self._created

    def _record(self, result: Mapping[str, dict[str, str]]) -> None:
        with self._lock:
            self._created.update(result)
        if result:
            self._progress.stored(result)

    def _report(self, error: BaseException) -> BaseException:
        with self._lock:
            so_far = {**self._already, **self._created}
            in_doubt = [alt_id for alt_id in self._in_doubt if alt_id not in so_far]
        return partial_error(error, so_far, self._total, in_doubt=in_doubt)

    def _create_lane(self, lane: list[Batch]) -> None:
        try:
            for batch in lane:
                if self._cancelled.is_set():
                    return
                self._create_batch(batch, self._new_budget(self._cancelled))
        except BaseException as error:
            # The first failure is the cause; a batch stopped because of it (cancelled, or
            # its retry cut short) is not.
            with self._lock:
                if self._failure is None and not isinstance(error, CallCancelled):
                    self._failure = error
            # Stop here, not only once the calling thread wakes: meanwhile this worker
            # would take the next lane and send it.
            self._cancelled.set()
            raise

    def _answer_may_be_lost(self, error: MetiApiError) -> bool:
        """Whether the POST itself may have been stored: not when the failure is of the
        token request sent before it, nor a refusal."""
        if self._post_path is not None and error.path != self._post_path:
            return False
        return may_have_been_processed(error)

    def _create_batch(self, batch: Batch, budget: CallBudget) -> None:
        """POST one batch; after an ambiguous failure, look up what it stored first."""
        pending = batch
        outcome_unknown: MetiApiError | None = None

        def attempt() -> None:
            nonlocal pending, outcome_unknown
            if outcome_unknown is not None:
                existing, unconfirmed = self._look_up(pending.features, lambda: budget)
                self._record(existing)
                if unconfirmed:
                    outcome_unknown = None  # every feature is now found or named unconfirmed
                    raise mark_final(unconfirmed_error(existing, unconfirmed, len(batch)))
                pending = pending.without(existing)
                outcome_unknown = None
                if not pending:
                    return
            alt_ids = [feature["id"] for feature in pending.features]
            self._progress.sending(alt_ids)
            try:
                self._record(self._post(pending, budget))
            except CallCancelled:
                self._progress.not_stored(alt_ids)
                raise
            except MetiApiError as error:
                outcome_unknown = error if self._answer_may_be_lost(error) else None
                if outcome_unknown is None:
                    self._progress.not_stored(alt_ids)
                raise

        try:
            budget.run(f"POST /sources [{batch[0]['id']}]", attempt)
        except BaseException:
            # Stopped (cancelled, out of budget, the lookup failed) before the listing showed
            # what the lost answer stored: the error must still name these features.
            if outcome_unknown is not None:
                with self._lock:
                    self._in_doubt.extend(feature["id"] for feature in pending.features)
            raise


def lanes_of_batches(
    batches: Sequence[Batch], lane_of_feature: Mapping[str, int]
) -> list[list[Batch]]:
    """``batches`` grouped so that batches sharing a feature lane share a lane, in order.

    :param batches: the batches of one create, in the order they are to be sent
    :param lane_of_feature: each feature's overlap lane, by ``alt_id``
    """
    groups = Groups(len(batches))
    first_batch_of_lane: dict[int, int] = {}
    for index, batch in enumerate(batches):
        for feature in batch.features:
            lane = lane_of_feature[feature["id"]]
            groups.join(index, first_batch_of_lane.setdefault(lane, index))
    return [[batches[index] for index in group] for group in groups.groups()]


def partial_error(
    error: BaseException,
    created: Mapping[str, dict[str, str]],
    total: int,
    *,
    in_doubt: Sequence[str] = (),
) -> BaseException:
    """``error`` as a ``MetiPartialCreateError`` listing ``created`` and ``in_doubt``, when
    either holds anything."""
    if isinstance(error, MetiPartialCreateError):
        return MetiPartialCreateError(
            error.cause,
            list(created.values()),
            total,
            unconfirmed=error.unconfirmed,
            in_doubt=[*error.in_doubt, *in_doubt],
        )
    if not created and not in_doubt:
        return error
    return MetiPartialCreateError(error, list(created.values()), total, in_doubt=in_doubt)


def unconfirmed_error(
    found: Mapping[str, dict[str, str]], unconfirmed: list[str], total: int
) -> MetiPartialCreateError:
    """The error for features whose fate the listing cannot show."""
    cause = MetiApiError(
        "a create's answer was lost, and METI's listing shows no alt_id, start_at or end_at "
        "for some sources, so it cannot show whether these features were stored; they were "
        "not sent again",
        method="GET",
        path="/sources",
    )
    return MetiPartialCreateError(cause, list(found.values()), total, unconfirmed=unconfirmed)


def _wait_interruptibly(futures: Sequence[Future[None]]) -> None:
    """Wait until every future is done or one failed, returning to Python now and then.

    A process-directed signal (SIGALRM of a task timeout, SIGTERM) may land on a worker
    thread; the main thread runs its handler only between bytecodes, so it must not block
    in one long wait, or the handler would run only after every batch had been sent.
    """
    pending: set[Future[None]] = set(futures)
    while pending:
        done, pending = wait(pending, timeout=INTERRUPT_CHECK_SECONDS, return_when=FIRST_EXCEPTION)
        if any(not future.cancelled() and future.exception() is not None for future in done):
            return
