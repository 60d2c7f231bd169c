"""The example DAG ``meti_conflict_review``: run with ``dag.test()``, answered from outside.

``dag.test()`` leaves a human-in-the-loop task waiting until its answer appears in the
metadata database, as the Required Actions page or the REST API would record it; a
background thread here records the answers the same way. (The end-to-end test answers
through the real API server: tests/test_conflict_review_e2e.py.) Before Airflow 3.1 the DAG
file defines no DAG and says why.
"""

from __future__ import annotations

import logging
import runpy
import threading
import time
from typing import Any

import pytest

from airflow_provider_meti._compat import AIRFLOW_VERSION, AIRFLOW_VERSION_TUPLE
from airflow_provider_meti.operators.conflict_review import (
    HITL_AVAILABLE,
    HITL_UNAVAILABLE_REASON,
    WAIT,
    WITHDRAW,
)
from tests import test_example_dags as example_dags
from tests.test_example_dags import EXAMPLE_DAGS, states

# The example DAG tests' fixtures: a migrated database, the DagBag and dag.test() runs.
airflow_db = example_dags.airflow_db
dag_bag = example_dags.dag_bag
example_dags_folder = example_dags.example_dags_folder
run_dag = example_dags.run_dag

DAG_ID = "meti_conflict_review"
REVIEW_TASK = "review_conflict"
ANSWER_LIMIT = 120.0
RESUME_GRACE = 2.0
"""Seconds an answered task may stay parked before the reviewer resumes it again."""
ANSWERS = {"FIELD-007": WAIT, "FIELD-008": WITHDRAW}


def answer_when_asked(emulator, answers: dict[str, str]) -> dict[str, Any]:
    """In the background: answer each review of the run by the alt_id its question names,
    until ``outcome["stop"]`` is set (or ``ANSWER_LIMIT`` has passed)."""
    outcome: dict[str, Any] = {"answered": {}, "stop": threading.Event()}
    # Import and map Airflow's models here first: a thread that imports them while dag.test()
    # imports others can deadlock on the import lock and SQLAlchemy's mapper registry.
    import airflow.api.common.trigger_dag  # noqa: F401
    from airflow.models import import_all_models

    import_all_models()
    parked_questions()

    def answer_all() -> None:
        deadline = time.monotonic() + ANSWER_LIMIT
        while time.monotonic() < deadline and not outcome["stop"].is_set():
            for ti_id, subject, responded_at in parked_questions():
                alt_id = next((a for a in answers if a in subject), None)
                if alt_id is None:
                    continue
                if responded_at is None:  # asked, or asked again after a lost answer
                    record_answer(ti_id, answers[alt_id])
                    outcome["answered"][alt_id] = answers[alt_id]
                elif _seconds_since(responded_at) > RESUME_GRACE:
                    resume(ti_id)  # answered, but the task parked after the answer came
            outcome["stop"].wait(0.2)

    thread = threading.Thread(target=answer_all, name="reviewer", daemon=True)
    thread.start()
    outcome["thread"] = thread
    return outcome


def parked_questions() -> list[tuple[Any, str, Any]]:
    """``(ti_id, subject, responded_at)`` of every question whose task is parked for input.

    An answer that arrives while the task is still pausing races the pause: the task can
    then park after the answer was recorded (it waits for a resume that came too early), or
    run again and ask again. The reviewer resumes the first and answers the second.
    """
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        details = (
            session.query(HITLDetail)
            .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
            .filter(TaskInstance.state == "awaiting_input")
            .all()
        )
        return [(detail.ti_id, detail.subject, detail.responded_at) for detail in details]


def _seconds_since(moment: Any) -> float:
    from airflow.utils import timezone

    return (timezone.utcnow() - timezone.coerce_datetime(moment)).total_seconds()


def resume(ti_id: Any) -> None:
    """Resume a parked task whose answer is recorded, as the API server does on an answer."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.get(TaskInstance, ti_id)
        if ti.state == "awaiting_input":
            _submit_answer(ti, session.get(HITLDetail, ti_id), session)


def record_answer(ti_id: Any, option: str) -> None:
    """What the API server does on PATCH .../hitlDetails, minus the HTTP and the auth."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils import timezone
    from airflow.utils.session import create_session

    with create_session() as session:
        detail = session.get(HITLDetail, ti_id)
        detail.chosen_options = [option]
        detail.params_input = {}
        detail.responded_by = {"id": "reviewer", "name": "reviewer"}
        detail.responded_at = timezone.utcnow()
        ti = session.get(TaskInstance, ti_id)
        if ti.state == "awaiting_input":  # 3.3 parks the task: resume it as the API server does
            _submit_answer(ti, detail, session)


def _submit_answer(ti: Any, detail: Any, session: Any) -> None:
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent

    handle_event_submit(
        TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session
    )


@pytest.mark.skipif(
    AIRFLOW_VERSION_TUPLE < (3, 3),
    reason=HITL_UNAVAILABLE_REASON
    or (
        f"Airflow {AIRFLOW_VERSION}'s dag.test() runs the HITL trigger in-process, where it "
        "cannot read the recorded answer ('NoneType' has no 'response_received'); 3.3 parks "
        "the task without a trigger"
    ),
)
# The thread method: a stuck run of this test once outlived the signal method's alarm by
# twenty minutes (dag.test()'s wait was never interrupted); a thread ends the worker instead.
@pytest.mark.timeout(300, method="thread")
def test_each_answer_withdraws_or_waits(run_dag, emulator):
    reviewer = answer_when_asked(emulator, ANSWERS)

    # Reschedule mode: dag.test() runs a deferred sensor's trigger inline, blocking the run,
    # so a "wait" could never see the "withdraw" of the other review run after it.
    conf = {"poke_interval": 1, "sensor_timeout": 120, "deferrable": False}
    try:
        dag_run = run_dag(DAG_ID, run_conf=conf)
    finally:
        reviewer["stop"].set()

    reviewer["thread"].join(timeout=5)
    assert reviewer["answered"] == ANSWERS
    assert dag_run.state == "success", states(dag_run)
    by_alt_id = {s["alt_id"]: s for s in emulator.ledger.all()}
    assert "FIELD-008" not in by_alt_id  # withdrawn, as answered
    assert by_alt_id["FIELD-007"]["conflict"] is False  # kept, and now free of conflicts
    assert len(by_alt_id) == 11
    ran = states(dag_run)
    # Registration order: FIELD-007 is map index 0, FIELD-008 map index 1.
    assert ran[("withdraw_ours", 0)] == "skipped" and ran[("withdraw_ours", 1)] == "success"
    assert ran[("wait_for_resolution", 0)] == "success"
    assert ran[("wait_for_resolution", 1)] == "skipped"


@pytest.mark.skipif(not HITL_AVAILABLE, reason=HITL_UNAVAILABLE_REASON)
def test_the_dag_maps_one_review_per_conflict_and_branches_to_both(dag_bag):
    dag = dag_bag.dags[DAG_ID]

    review = dag.get_task(REVIEW_TASK)
    assert review.downstream_task_ids == {"withdraw_ours", "wait_for_resolution"}
    assert review.partial_kwargs["withdraw_task_id"] == "withdraw_ours"
    assert review.partial_kwargs["wait_task_id"] == "wait_for_resolution"


@pytest.mark.skipif(HITL_AVAILABLE, reason=f"Airflow {AIRFLOW_VERSION} has HITL operators")
def test_before_airflow_3_1_the_file_defines_no_dag_and_says_why(dag_bag, caplog):
    assert DAG_ID not in dag_bag.dag_ids
    assert dag_bag.import_errors == {}

    with caplog.at_level(logging.WARNING):
        namespace = runpy.run_path(str(EXAMPLE_DAGS / f"{DAG_ID}.py"))

    assert "meti_conflict_review is not defined" in caplog.text
    assert f"Airflow {AIRFLOW_VERSION} has no human-in-the-loop operators" in caplog.text
    assert not any(type(value).__name__ == "DAG" for value in namespace.values())
