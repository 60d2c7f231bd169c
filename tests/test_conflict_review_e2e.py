"""End to end: a person answers ``meti_conflict_review``'s questions through the REST API.

Real Airflow components (the stack of tests/test_airflow_e2e.py: API server, scheduler,
triggerer, DAG processor) run the example DAG against the emulator. The test reads the open
questions from ``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/hitlDetails`` and answers each
with ``PATCH .../taskInstances/{task_id}/{map_index}/hitlDetails``, as the Required Actions
page does: FIELD-008 "Withdraw ours", FIELD-007 "Keep both and wait".
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
import requests

from airflow_provider_meti._compat import AIRFLOW_VERSION, AIRFLOW_VERSION_TUPLE
from airflow_provider_meti.operators.conflict_review import WAIT, WITHDRAW
from tests import test_airflow_e2e as e2e
from tests.test_airflow_e2e import AirflowStack, api_get, api_token, wait_until

# The same stack of Airflow components as tests/test_airflow_e2e.py, one for this module.
stack = e2e.stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(420),
    pytest.mark.skipif(
        AIRFLOW_VERSION_TUPLE < (3, 3),
        reason=f"Airflow {AIRFLOW_VERSION}: the end-to-end review runs on 3.3, the reference line",
    ),
]

DAG_ID = "meti_conflict_review"
REVIEW_TASK = "review_conflict"
ANSWERS = {"FIELD-008": WITHDRAW, "FIELD-007": WAIT}


def questions(stack: AirflowStack, run_id: str) -> list[dict[str, Any]]:
    found = api_get(stack, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/hitlDetails")
    return list(found["hitl_details"]) if found else []


def answer(stack: AirflowStack, run_id: str, map_index: int, option: str) -> requests.Response:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{REVIEW_TASK}/{map_index}"
    return requests.patch(
        f"{stack.api_url}{path}/hitlDetails",
        json={"chosen_options": [option], "params_input": {}},
        headers={"Authorization": f"Bearer {api_token(stack)}"},
        timeout=30,
    )


def both_reviews_paused(stack: AirflowStack, run_id: str) -> bool:
    """True once both review tasks have paused for input.

    An answer that arrives while a task is still pausing (its question is already listed)
    races the pause: Airflow then runs the task again, and it asks again.
    """
    states = [
        state for (task, _), state in task_states(stack, run_id).items() if task == REVIEW_TASK
    ]
    return states == ["awaiting_input"] * 2


def pauses_seen_by_scheduler(stack: AirflowStack, run_id: str) -> bool:
    """True once the scheduler has processed the exit of both pausing worker processes.

    Airflow 3.3.2 answers a question by moving the task straight back to the queue, under
    the same try number. If the scheduler reads the pausing process's exit only after that,
    it takes the queued task for one killed externally and fails it (the review then asks
    again on retry). A person answers minutes later; this test answers at once, so it waits.
    """
    log = stack.log_path("scheduler").read_text(errors="replace")
    return all(paused_exit_seen(log, run_id, map_index) for map_index in (0, 1))


def paused_exit_seen(scheduler_log: str, run_id: str, map_index: int) -> bool:
    task = f"task_id={REVIEW_TASK}, run_id={run_id}, map_index={map_index},"
    return any(
        "TaskInstance Finished:" in line and task in line and "state=awaiting_input" in line
        for line in scheduler_log.splitlines()
    )


def run_state(stack: AirflowStack, run_id: str) -> str | None:
    rows = stack.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", DAG_ID, run_id)
    return rows[0][0] if rows else None


def task_states(stack: AirflowStack, run_id: str) -> dict[tuple[str, int], str]:
    rows = stack.query(
        "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
        DAG_ID,
        run_id,
    )
    return {(task_id, map_index): state for task_id, map_index, state in rows}


def test_answers_through_the_rest_api_withdraw_the_chosen_source(stack):
    run_id = f"e2e_review_{secrets.token_hex(4)}"
    conf = json.dumps({"poke_interval": 1, "sensor_timeout": 300})
    wait_until(lambda: api_get(stack, f"/api/v2/dags/{DAG_ID}"), "the DAG to be parsed", stack)
    stack.emulator.ledger.clear()
    assert stack.cli("dags", "unpause", DAG_ID).returncode == 0
    triggered = stack.cli("dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", conf)
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr

    asked = wait_until(
        lambda: (
            both_reviews_paused(stack, run_id)
            and pauses_seen_by_scheduler(stack, run_id)
            and len(found := questions(stack, run_id)) == 2
            and found
        ),
        "both review questions, their tasks paused and their pauses processed",
        stack,
    )
    for question in asked:
        (alt_id,) = [alt_id for alt_id in ANSWERS if alt_id in question["subject"]]
        assert f"**{alt_id}**" in question["body"]
        assert "demo-password" not in json.dumps(question)
        response = answer(stack, run_id, question["task_instance"]["map_index"], ANSWERS[alt_id])
        assert response.status_code == 200, response.text

    final = wait_until(
        lambda: run_state(stack, run_id) in ("success", "failed") and run_state(stack, run_id),
        "the run to finish",
        stack,
    )
    assert final == "success", f"{task_states(stack, run_id)}\n{stack.log_tails()}"
    by_alt_id = {source["alt_id"]: source for source in stack.emulator.ledger.all()}
    assert "FIELD-008" not in by_alt_id
    assert by_alt_id["FIELD-007"]["conflict"] is False
    ran = task_states(stack, run_id)
    assert sorted(state for (task, _), state in ran.items() if task == "withdraw_ours") == [
        "skipped",
        "success",
    ]
    answered = {q["subject"]: q for q in questions(stack, run_id)}
    assert all(q["response_received"] for q in answered.values())
    assert {q["chosen_options"][0] for q in answered.values()} == {WITHDRAW, WAIT}
    assert all(q["responded_by_user"]["name"] for q in answered.values())
