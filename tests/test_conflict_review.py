"""MetiConflictReviewOperator: the question it asks, and what each answer leads to.

The operator runs against the emulator. Asking writes the question through Airflow's
``upsert_hitl_detail`` (recorded here instead of sent to a task supervisor); answers arrive
as the events Airflow hands to ``execute_complete``: a person's answer, or the default the
scheduler (3.3) or the HITL trigger (3.1, 3.2) applies on timeout.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_meti import geojson
from airflow_provider_meti._compat import (
    AIRFLOW_VERSION,
    HITL_AVAILABLE,
    AirflowException,
    AirflowFailException,
    import_first,
)
from airflow_provider_meti.hooks.meti import MetiHook
from airflow_provider_meti.operators.conflict_review import (
    FAIL,
    WAIT,
    WITHDRAW,
    MetiConflictReviewOperator,
    ReviewedSource,
    render_review_body,
)
from airflow_provider_meti.operators.meti import MetiDeleteSourceOperator
from airflow_provider_meti.sensors.meti import MetiSourceSensor
from tests.api_versions import SECRETS

FIELDS_FILE = Path(__file__).resolve().parents[1] / "example_dags" / "data" / "fields.geojson"
OURS, THEIRS = "FIELD-008", "FIELD-007"
needs_hitl = pytest.mark.skipif(
    not HITL_AVAILABLE,
    reason=f"Airflow {AIRFLOW_VERSION} has no human-in-the-loop operators (3.1 and newer)",
)


# --- fixtures and helpers --------------------------------------------------------------------


def overlapping_fields() -> dict[str, Any]:
    """The two sample fields that overlap, FIELD-007 first (METI's order matters little here)."""
    collection = geojson.load_feature_collection(FIELDS_FILE)
    features = [f for f in collection["features"] if f["id"] in (THEIRS, OURS)]
    return {"type": "FeatureCollection", "features": features}


@pytest.fixture
def conflict(emulator, meti_connection) -> dict[str, str]:
    """Both overlapping fields stored in METI; returns their METI ids by alt_id."""
    return {item["alt_id"]: item["id"] for item in emulator.ledger.create(overlapping_fields())}


@pytest.fixture
def asked(monkeypatch) -> list[dict[str, Any]]:
    """Every question the operator writes, instead of sending it to a task supervisor."""
    from airflow.providers.standard.operators import hitl

    questions: list[dict[str, Any]] = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **detail: questions.append(detail))
    return questions


class RecordingTaskInstance:
    """The parts of a task instance that branching reads and writes."""

    def __init__(self, task: Any, map_index: int = -1) -> None:
        self.task = task
        self.map_index = map_index
        self.try_number = 1
        self.id = "0190d7a8-0000-7000-8000-000000000000"
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def review_dag(source_id: str, *, group: str | None = None, **review: Any) -> Any:
    """A DAG: review → withdraw (delete ours) or wait (sensor, resolved)."""
    from airflow_provider_meti._compat import DAG

    task_group = import_first("TaskGroup", "airflow.sdk", "airflow.utils.task_group")
    with DAG("conflict_review_test", schedule=None, start_date=datetime(2025, 1, 1)) as dag:
        with task_group(group) if group else _nothing():
            operator = MetiConflictReviewOperator(
                task_id="review",
                source_id=source_id,
                withdraw_task_id="withdraw",
                wait_task_id="wait",
                **review,
            )
            withdraw = MetiDeleteSourceOperator(task_id="withdraw", source_id=source_id)
            wait = MetiSourceSensor(
                task_id="wait", source_id=source_id, wait_for="resolved", deferrable=False
            )
            operator >> [withdraw, wait]
    return dag


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def table_rows(body: str, source_id: str) -> list[str]:
    return [line for line in body.splitlines() if line.startswith("|") and source_id in line]


def context_for(task: Any, map_index: int = -1) -> dict[str, Any]:
    return {"ti": RecordingTaskInstance(task, map_index), "params": {}}


def answer(option: str, *, by: str | None = "reviewer") -> dict[str, Any]:
    """The event Airflow hands ``execute_complete``: a person's answer, or (by=None) a default."""
    return {
        "chosen_options": [option],
        "params_input": {},
        "responded_at": datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc),
        "responded_by_user": {"id": by, "name": by} if by else None,
        "timedout": by is None,
    }


def branch(task: Any, event: dict[str, Any], map_index: int = -1) -> tuple[Any, set[str]]:
    """Run ``execute_complete``; return what it followed and which task ids it skipped."""
    skipped_error = import_first(
        "DownstreamTasksSkipped", "airflow.sdk.exceptions", "airflow.exceptions"
    )
    context = context_for(task, map_index)
    try:
        followed = task.execute_complete(context, event)
    except skipped_error as skipped:  # unmapped tasks skip their other branches at once
        return None, {task_id for task_id, _ in skipped.tasks}
    # Mapped tasks leave the skipping to the scheduler, through this XCom.
    branch_xcom = context["ti"].xcoms["skipmixin_key"]
    downstream = set(task.downstream_task_ids)
    return followed, downstream - set(branch_xcom["followed"])


def ask(task: Any, asked: list[dict[str, Any]], task_context: dict[str, Any]) -> dict[str, Any]:
    """Run ``execute`` until it waits for the answer; return the question it wrote."""
    ti = RecordingTaskInstance(task)
    context = {**task_context, "ti": ti, "task_instance": ti, "task": task}
    with pytest.raises(BaseException) as waiting:  # TaskAwaitingInput (3.3) or TaskDeferred
        task.execute(context)
    assert type(waiting.value).__name__ in ("TaskAwaitingInput", "TaskDeferred"), waiting.value
    (question,) = asked
    return question


# --- older Airflow lines ---------------------------------------------------------------------


@pytest.mark.skipif(HITL_AVAILABLE, reason=f"Airflow {AIRFLOW_VERSION} has HITL operators")
def test_before_airflow_3_1_building_the_operator_names_the_version():
    with pytest.raises(AirflowException, match=r"needs Airflow 3\.1 or newer.*" + AIRFLOW_VERSION):
        MetiConflictReviewOperator(
            task_id="review", source_id="src_x", withdraw_task_id="a", wait_task_id="b"
        )


# --- the question ----------------------------------------------------------------------------


@needs_hitl
def test_question_shows_both_sources_and_which_is_ours(conflict, emulator, asked, task_context):
    dag = review_dag(conflict[OURS], assigned_users=[{"id": "ana", "name": "Ana"}])

    question = ask(dag.get_task("review"), asked, task_context)

    ours, theirs = (emulator.ledger.get(conflict[alt_id]) for alt_id in (OURS, THEIRS))
    body = question["body"]
    assert question["subject"] == f"METI conflict: {OURS} ({conflict[OURS]})"
    assert question["options"] == [WITHDRAW, WAIT]
    assert question["defaults"] == [WAIT]
    assert question["assigned_users"] == [{"id": "ana", "name": "Ana"}]
    rows = [line for line in body.splitlines() if line.startswith("| **ours**")]
    assert len(rows) == 1 and OURS in rows[0] and conflict[OURS] in rows[0]
    for source in (ours, theirs):
        (row,) = table_rows(body, source["id"])
        assert source["alt_id"] in row
        assert source["start_at"] in row and source["end_at"] in row
        assert f"{source['hectares']:,.2f}" in row
        assert f"{100 * source['percent_overlap']:.1f} %" in row
    assert f"delete **{OURS}** (`{conflict[OURS]}`)" in body
    assert f"Without an answer before the deadline: **{WAIT}**" in body


@needs_hitl
def test_question_never_shows_a_secret(conflict, asked, task_context, meti_connection):
    question = ask(review_dag(conflict[OURS]).get_task("review"), asked, task_context)

    token = MetiHook().get_token()
    text = json.dumps(question, default=str)
    assert token not in text
    assert not [secret for secret in SECRETS if secret in text]


@needs_hitl
def test_a_partner_this_account_cannot_read_is_shown_by_id(
    emulator, meti_connection, asked, task_context
):
    (theirs,) = emulator.ledger.create(
        {"type": "FeatureCollection", "features": overlapping_fields()["features"][:1]},
        account_id="acct_neighbour",
    )
    (ours,) = emulator.ledger.create(
        {"type": "FeatureCollection", "features": overlapping_fields()["features"][1:]}
    )

    body = ask(review_dag(ours["id"]).get_task("review"), asked, task_context)["body"]

    (row,) = table_rows(body, theirs["id"])
    assert "a source of another account" in row
    assert f"`{ours['id']}`" in body


@needs_hitl
@pytest.mark.parametrize("state", ["withdrawn", "resolved"])
def test_a_settled_conflict_asks_nobody_and_follows_wait(
    conflict, emulator, asked, task_context, state
):
    emulator.ledger.delete(conflict[OURS if state == "withdrawn" else THEIRS])
    task = review_dag(conflict[OURS]).get_task("review")

    _, skipped = branch_from_execute(task, task_context)

    assert asked == []
    assert skipped == {"withdraw"}


def branch_from_execute(task: Any, task_context: dict[str, Any]) -> tuple[Any, set[str]]:
    skipped_error = import_first(
        "DownstreamTasksSkipped", "airflow.sdk.exceptions", "airflow.exceptions"
    )
    try:
        return task.execute({**task_context, "ti": RecordingTaskInstance(task)}), set()
    except skipped_error as skipped:
        return None, {task_id for task_id, _ in skipped.tasks}


def test_table_cells_cannot_break_the_table():
    source = {"id": "src_AAAAAAAAAAAAA", "alt_id": "a|b\n*c*", "hectares": 1.5}
    body = render_review_body(
        ReviewedSource("src_AAAAAAAAAAAAA", {**source, "conflict": True}),
        [ReviewedSource("src_BBBBBBBBBBBBB", None)],
        options=[WITHDRAW, WAIT],
        default_option=None,
    )

    rows = [line for line in body.splitlines() if line.startswith("| **ours**")]
    assert rows == [
        "| **ours** | a\\|b \\*c\\* | `src_AAAAAAAAAAAAA` | — | — | 1.50 | — |",
    ]
    assert "Without an answer before the deadline, this task fails." in body


# --- the answers -----------------------------------------------------------------------------


@needs_hitl
def test_withdraw_ours_follows_withdraw_which_deletes_only_ours(conflict, emulator, task_context):
    dag = review_dag(conflict[OURS])

    _, skipped = branch(dag.get_task("review"), answer(WITHDRAW))
    dag.get_task("withdraw").execute(task_context)

    assert skipped == {"wait"}
    assert emulator.ledger.get(conflict[OURS]) is None
    assert emulator.ledger.get(conflict[THEIRS])["conflict"] is False


@needs_hitl
def test_keep_both_follows_wait_which_deletes_nothing(conflict, emulator, task_context):
    dag = review_dag(conflict[OURS])
    sensor = dag.get_task("wait")

    _, skipped = branch(dag.get_task("review"), answer(WAIT))

    assert skipped == {"withdraw"}
    assert sensor.poke(task_context) is False  # still in conflict: keeps waiting
    emulator.ledger.delete(conflict[THEIRS])  # the other steward withdraws theirs
    assert sensor.poke(task_context).is_done
    assert emulator.ledger.get(conflict[OURS]) is not None


@needs_hitl
def test_a_mapped_review_branches_for_its_own_map_index(conflict):
    dag = review_dag(conflict[OURS])

    followed, skipped = branch(dag.get_task("review"), answer(WITHDRAW), map_index=3)

    assert followed == "withdraw"
    assert skipped == {"wait"}


@needs_hitl
def test_task_ids_inside_a_task_group_may_omit_the_prefix(conflict):
    dag = review_dag(conflict[OURS], group="conflict")

    followed, skipped = branch(dag.get_task("conflict.review"), answer(WAIT), map_index=0)

    assert followed == "conflict.wait"
    assert skipped == {"conflict.withdraw"}


@needs_hitl
def test_fail_the_run_fails_without_retries(conflict, emulator):
    dag = review_dag(conflict[OURS], allow_fail=True)

    with pytest.raises(AirflowFailException, match=f"{FAIL!r}.*{conflict[OURS]}"):
        dag.get_task("review").execute_complete(context_for(dag.get_task("review")), answer(FAIL))

    assert emulator.ledger.count() == 2


@needs_hitl
def test_fail_the_run_is_offered_only_when_allowed(conflict):
    assert FAIL not in review_dag(conflict[OURS]).get_task("review").options
    assert FAIL in review_dag(conflict[OURS], allow_fail=True).get_task("review").options


# --- nobody answers --------------------------------------------------------------------------


@needs_hitl
def test_by_default_nobody_answering_keeps_waiting(conflict):
    task = review_dag(conflict[OURS]).get_task("review")

    _, skipped = branch(task, answer(WAIT, by=None))

    assert task.defaults == [WAIT]
    assert task.response_timeout.days == 7
    assert skipped == {"withdraw"}


@needs_hitl
def test_the_default_on_timeout_is_configurable(conflict):
    task = review_dag(conflict[OURS], default_option=WITHDRAW).get_task("review")

    _, skipped = branch(task, answer(WITHDRAW, by=None))

    assert task.defaults == [WITHDRAW]
    assert skipped == {"wait"}


@needs_hitl
def test_without_a_default_the_timeout_fails_the_task(conflict):
    from airflow.providers.standard.exceptions import HITLTimeoutError

    task = review_dag(conflict[OURS], default_option=None).get_task("review")
    timeout = {"error": "The timeout has passed.", "error_type": "timeout"}

    with pytest.raises(HITLTimeoutError):
        task.execute_complete(context_for(task), timeout)


@needs_hitl
def test_a_default_must_be_one_of_the_options():
    with pytest.raises(ValueError, match="subset of options"):
        review_dag("src_x", default_option=FAIL)


# --- dynamic task mapping --------------------------------------------------------------------


@needs_hitl
def test_partial_expand_maps_one_question_per_source():
    from airflow_provider_meti._compat import DAG

    with DAG("mapped_review_test", schedule=None, start_date=datetime(2025, 1, 1)):
        mapped = MetiConflictReviewOperator.partial(
            task_id="review",
            withdraw_task_id="withdraw",
            wait_task_id="wait",
            assigned_users={"id": "ana", "name": "Ana"},
        ).expand(source_id=["src_A", "src_B"])

    assert mapped.expand_input.value == {"source_id": ["src_A", "src_B"]}
    assert mapped.partial_kwargs["withdraw_task_id"] == "withdraw"
    assert "source_id" in mapped.template_fields
