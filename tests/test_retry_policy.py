"""The provider's retry policy (Airflow 3.3, AIP-105): what a failed METI task does next.

The decisions are checked against errors that real calls raise, against the emulator or a
scripted server on 127.0.0.1; on Airflow 3.3 also that every operator and sensor carries the
policy unless told otherwise, and that Airflow's own task runner follows it.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_meti import retry_policy
from airflow_provider_meti._compat import AIRFLOW_VERSION, RETRY_POLICY_AVAILABLE
from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiBudgetError,
    MetiConnectionError,
    MetiNotFoundError,
    MetiPartialCreateError,
    MetiValidationError,
)
from airflow_provider_meti.hooks.meti import MetiHook, MetiHookMixin
from airflow_provider_meti.retry_policy import decide, default_retry_policy
from airflow_provider_meti.sensors.meti import MetiSourceSensor
from airflow_provider_meti.triggers.meti import MetiSourceTrigger
from tests import airflow_compat
from tests import test_example_dags as example_dags
from tests.airflow_context import make_context, trigger_events
from tests.api_versions import SECRETS, v2_only
from tests.features import collection, square_feature
from tests.test_create_and_delete_safety import listing_without_alt_ids  # noqa: F401 (fixture)
from tests.test_errors_fastapi import answering
from tests.test_gate_budget import (  # noqa: F401 (scripted is a fixture)
    PASSWORD,
    get_source_sync,
    scripted,
    settings_for,
    url_of,
)

needs_retry_policies = pytest.mark.skipif(
    not RETRY_POLICY_AVAILABLE,
    reason=f"Airflow {AIRFLOW_VERSION} has no retry policies (they came with 3.3)",
)
airflow_db = example_dags.airflow_db

BODY_TEXT = "server-words-never-quoted"
"""Put into error replies: a reason quoting it would quote whatever the server sent."""


def failure_of(call) -> BaseException:
    with pytest.raises(BaseException) as raised:
        call()
    return raised.value


def assert_quotes_nothing(reason: str | None) -> None:
    assert reason
    for secret in (*SECRETS, PASSWORD, BODY_TEXT):
        assert secret not in reason


# --- decisions on errors from real calls (every Airflow line) ---------------------------------


@pytest.fixture
def hook(meti_connection) -> MetiHook:
    """A hook whose calls give up at the first failure (no HTTP-level retries)."""
    meti_connection(extra={"max_retries": 0})
    return MetiHook()


def test_a_missing_source_fails_at_once(hook, emulator):
    error = failure_of(lambda: hook.get_source("src_missing"))
    assert isinstance(error, MetiNotFoundError)
    verdict = decide(error)
    assert verdict.action == "fail"
    assert "MetiNotFoundError" in verdict.reason and "HTTP 404" in verdict.reason
    assert_quotes_nothing(verdict.reason)


@v2_only
def test_a_scope_the_client_lacks_fails_at_once(meti_connection):
    meti_connection(extra={"scope": "read:sources", "max_retries": 0})
    error = failure_of(lambda: MetiHook().delete_source("src_any"))
    assert getattr(error, "status_code", None) == 403
    verdict = decide(error)
    assert verdict.action == "fail" and "HTTP 403" in verdict.reason
    assert_quotes_nothing(verdict.reason)


def test_refused_credentials_fail_at_once(meti_connection):
    meti_connection(password="not-the-password", extra={"max_retries": 0})
    error = failure_of(lambda: MetiHook().get_source("src_any"))
    verdict = decide(error)
    assert (type(error).__name__, verdict.action) == ("MetiAuthError", "fail")
    assert_quotes_nothing(verdict.reason)


def test_an_unusable_connection_fails_at_once(meti_connection):
    meti_connection(extra={"api_version": 7})
    error = failure_of(lambda: MetiHook().get_source("src_any"))
    assert (type(error).__name__, decide(error).action) == ("MetiConfigError", "fail")


def test_invalid_input_fails_at_once(hook, emulator):
    invalid = {"type": "FeatureCollection", "features": [{"type": "Feature"}]}
    error = failure_of(lambda: hook.create_sources(invalid))
    assert (type(error).__name__, decide(error).action) == ("MetiValidationError", "fail")
    assert emulator.ledger.count() == 0


def test_a_429_is_retried_after_the_servers_retry_after(hook, emulator):
    emulator.set_faults(1.0, ["429"], retry_after=2)
    error = failure_of(lambda: hook.get_source("src_any"))
    verdict = decide(error)
    assert (verdict.action, verdict.retry_after) == ("retry", 2.0)
    assert "HTTP 429" in verdict.reason
    assert_quotes_nothing(verdict.reason)


def test_a_503_without_retry_after_is_retried_after_the_tasks_retry_delay(hook, emulator):
    emulator.set_faults(1.0, ["503"])
    verdict = decide(failure_of(lambda: hook.get_source("src_any")))
    assert (verdict.action, verdict.retry_after) == ("retry", None)


def test_no_response_is_retried(hook, emulator):
    emulator.set_faults(1.0, ["drop"])
    error = failure_of(lambda: hook.get_source("src_any"))
    assert isinstance(error, MetiConnectionError)
    assert decide(error).action == "retry"


def test_a_create_stopped_part_way_is_decided_by_what_stopped_it(hook, emulator):
    emulator.set_faults(1.0, ["500"], methods=["POST"], skip=1)
    features = collection(*(square_feature(f"F{index}", x=index) for index in range(3)))
    error = failure_of(lambda: MetiHook(max_workers=1).create_sources(features, batch_size=1))
    assert isinstance(error, MetiPartialCreateError) and error.created
    verdict = decide(error)
    assert verdict.action == "retry"
    assert "MetiPartialCreateError, caused by MetiApiError" in verdict.reason


def test_a_create_the_listing_cannot_confirm_fails_at_once(
    meti_connection,
    emulator,
    listing_without_alt_ids,  # noqa: F811
):
    # Another try would repeat the same lookup and still not know: someone must look.
    meti_connection(extra={"max_retries": 2})
    emulator.ledger.seed(3)
    emulator.set_faults(rate=1.0, kinds=["stored_then_drop"], methods=["POST"], count=1)
    error = failure_of(lambda: MetiHook().create_sources(collection(square_feature("F-000"))))
    assert isinstance(error, MetiPartialCreateError) and error.unconfirmed == ["F-000"]
    verdict = decide(error)
    assert verdict.action == "fail" and "check them in METI" in verdict.reason
    assert "F-000" not in verdict.reason


def test_a_missing_input_file_gets_airflows_standard_logic(hook, tmp_path, emulator):
    # The file may be written by an upstream task or a mount that is back by the next try.
    from airflow_provider_meti.operators.meti import MetiCreateSourcesOperator

    def registering(path: Path) -> BaseException:
        task = MetiCreateSourcesOperator(task_id="register", feature_collection=str(path))
        return failure_of(lambda: task.execute(make_context()))

    missing = registering(tmp_path / "not-there-yet.geojson")
    assert isinstance(missing, MetiValidationError) and "file not found" in str(missing)
    assert decide(missing).action == "default"
    (tmp_path / "a-folder.geojson").mkdir()
    assert decide(registering(tmp_path / "a-folder.geojson")).action == "default"
    (tmp_path / "not-json.geojson").write_text("not json")
    assert decide(registering(tmp_path / "not-json.geojson")).action == "fail"
    assert emulator.ledger.count() == 0


def test_a_deferred_sensors_error_is_decided_as_in_poke(meti_connection, emulator):
    # The trigger's error event carries what the policy reads, so the resumed task raises an
    # error of the same kind as poke would have.
    meti_connection(extra={"max_retries": 0})
    sensor = MetiSourceSensor(task_id="wait", source_id="src_gone", wait_for="no_conflict")
    in_poke = failure_of(lambda: sensor.poke({}))
    (event,) = trigger_events(MetiSourceTrigger("meti_default", "src_gone", "no_conflict", 0.05))
    resumed = failure_of(lambda: sensor.execute_complete({}, event.payload))
    assert (type(resumed), resumed.status_code) == (type(in_poke), 404)
    assert decide(resumed) == decide(in_poke)
    assert decide(resumed).action == "fail"


@v2_only
def test_a_deferred_sensors_403_fails_at_once(meti_connection, emulator):
    meti_connection(extra={"scope": "write:sources", "max_retries": 0})
    (source,) = emulator.ledger.create(collection(square_feature("F1")))
    sensor = MetiSourceSensor(task_id="wait", source_id=source["id"], wait_for="exists")
    (event,) = trigger_events(MetiSourceTrigger("meti_default", source["id"], "exists", 0.05))
    resumed = failure_of(lambda: sensor.execute_complete({}, event.payload))
    assert getattr(resumed, "status_code", None) == 403
    assert decide(resumed).action == "fail"
    assert_quotes_nothing(decide(resumed).reason)


@pytest.mark.parametrize("status", [400, 409, 410, 413, 422])
def test_a_request_refused_as_it_is_fails_at_once(scripted, status):  # noqa: F811
    error = scripted_failure(scripted, status)
    verdict = decide(error)
    assert verdict.action == "fail" and f"HTTP {status}" in verdict.reason
    assert_quotes_nothing(verdict.reason)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_not_now_statuses_are_retried(scripted, status):  # noqa: F811
    verdict = decide(scripted_failure(scripted, status))
    assert verdict.action == "retry" and f"HTTP {status}" in verdict.reason
    assert_quotes_nothing(verdict.reason)


def test_a_503_with_retry_after_is_retried_after_it(scripted):  # noqa: F811
    error = scripted_failure(scripted, 503, {"Retry-After": "7"})
    assert (decide(error).action, decide(error).retry_after) == ("retry", 7.0)


def test_a_401_after_the_renewal_and_replay_fails_at_once(scripted):  # noqa: F811
    error = scripted_failure(scripted, 401)
    verdict = decide(error)
    assert (type(error).__name__, verdict.action) == ("MetiAuthError", "fail")
    assert_quotes_nothing(verdict.reason)


def scripted_failure(scripted, status: int, headers: dict[str, str] | None = None):  # noqa: F811
    """What a get_source raises when the server answers ``status`` to it."""
    body = {"message": f"{BODY_TEXT} {PASSWORD}", "detail": f"{BODY_TEXT} {PASSWORD}"}
    server = scripted(answering(status, body, headers))
    settings, auth = settings_for(url_of(server), max_retries=0)
    return failure_of(lambda: get_source_sync(settings, auth))


def test_a_spent_retry_budget_is_decided_by_its_last_failure():
    last = MetiApiError("x", status_code=503, method="GET", path="/sources", retry_after=3)
    assert decide(MetiBudgetError("GET /sources", "out of attempts", last)).retry_after == 3
    gone = MetiNotFoundError("x", status_code=404, method="GET", path="/sources/s")
    assert decide(MetiBudgetError("GET /sources/s", "deadline", gone)).action == "fail"
    assert decide(MetiBudgetError("GET /sources", "deadline passed")).action == "retry"


def test_a_meti_error_raised_from_decides_for_the_error_it_caused():
    from airflow_provider_meti._compat import AirflowException

    try:
        try:
            raise MetiNotFoundError("x", status_code=404, method="GET", path="/sources/s")
        except MetiNotFoundError as missing:
            raise AirflowException("could not read the source") from missing
    except AirflowException as wrapped:
        verdict = decide(wrapped)
    assert verdict.action == "fail"
    assert "AirflowException, caused by MetiNotFoundError" in verdict.reason


def test_a_cycle_of_causes_ends():
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert decide(first).action == "default"


@pytest.mark.parametrize(
    "error",
    [
        ValueError("not METI's"),
        MetiApiError("expected a JSON body", status_code=None, method="GET", path="/sources"),
        MetiPartialCreateError(KeyboardInterrupt(), [{"id": "src_1", "alt_id": "A"}], 2),
    ],
    ids=["not-meti", "unusable-reply", "create-interrupted"],
)
def test_anything_else_gets_airflows_standard_logic(error):
    assert decide(error).action == "default"


# --- the policy and the operators on Airflow 3.3 ---------------------------------------------

OPERATOR_ARGUMENTS: dict[str, dict[str, Any]] = {
    "MetiOperator": {"endpoint": "/sources"},
    "MetiCreateSourcesOperator": {"feature_collection": collection(square_feature("F1"))},
    "MetiGetSourceOperator": {"source_id": "src_1"},
    "MetiListSourcesOperator": {},
    "MetiDeleteSourceOperator": {"source_id": "src_1"},
    "MetiSensor": {"endpoint": "/sources"},
    "MetiSourceSensor": {"source_id": "src_1"},
    "MetiConflictReviewOperator": {
        "source_id": "src_1",
        "withdraw_task_id": "withdraw",
        "wait_task_id": "wait",
    },
}
"""The fewest arguments each provider operator and sensor takes."""


def provider_operators() -> list[type]:
    """Every class in the provider's operator and sensor modules that has the mixin."""
    for module in ("operators.meti", "operators.conflict_review", "sensors.meti"):
        importlib.import_module(f"airflow_provider_meti.{module}")
    found, pending = [], list(MetiHookMixin.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("airflow_provider_meti."):
            found.append(cls)
            pending.extend(cls.__subclasses__())
    from airflow_provider_meti._compat import HITL_AVAILABLE

    return sorted(
        (c for c in found if HITL_AVAILABLE or c.__name__ != "MetiConflictReviewOperator"),
        key=lambda c: c.__name__,
    )


def build(cls: type, task_id: str = "task", **kwargs: Any) -> Any:
    return cls(task_id=task_id, **OPERATOR_ARGUMENTS[cls.__name__], **kwargs)


@pytest.fixture
def other_policy() -> Any:
    from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

    return ExceptionRetryPolicy(rules=[RetryRule(exception=ValueError, action=RetryAction.FAIL)])


def test_every_provider_operator_has_its_arguments_here():
    assert {cls.__name__ for cls in provider_operators()} <= set(OPERATOR_ARGUMENTS)


@needs_retry_policies
def test_the_policy_turns_verdicts_into_airflows_decisions():
    from airflow.sdk import RetryAction

    policy = default_retry_policy()
    throttled = MetiApiError("x", status_code=429, method="GET", path="/sources", retry_after=4)
    retry = policy.evaluate(throttled, try_number=1, max_tries=3)
    assert (retry.action, retry.retry_delay) == (RetryAction.RETRY, timedelta(seconds=4))
    gone = MetiNotFoundError("x", status_code=404, method="GET", path="/sources/s")
    fail = policy.evaluate(gone, try_number=1, max_tries=3)
    assert fail.action == RetryAction.FAIL and "HTTP 404" in fail.reason
    assert policy.evaluate(ValueError(), try_number=1, max_tries=3).action == RetryAction.DEFAULT


@needs_retry_policies
def test_a_retry_after_is_followed_no_longer_than_the_tasks_max_retry_delay():
    from airflow.sdk import BaseOperator

    policy = default_retry_policy()
    month = MetiApiError("x", status_code=503, method="GET", path="/sources", retry_after=2.6e6)
    capped = BaseOperator(task_id="capped", max_retry_delay=timedelta(minutes=5))
    uncapped = BaseOperator(task_id="uncapped")

    def delay(task) -> timedelta:
        return policy.evaluate(month, try_number=1, max_tries=3, context={"task": task}).retry_delay

    assert delay(capped) == timedelta(minutes=5)
    assert delay(uncapped) == retry_policy.MAX_RETRY_AFTER == timedelta(hours=1)
    assert policy.evaluate(month, try_number=1, max_tries=3).retry_delay == timedelta(hours=1)


@needs_retry_policies
def test_the_policy_serializes_to_its_type_name_and_back():
    policy = default_retry_policy()
    data = policy.serialize()
    assert data == {"__type": "airflow_provider_meti.retry_policy.MetiRetryPolicy"}
    assert json.loads(json.dumps(data)) == data
    assert retry_policy.MetiRetryPolicy.deserialize(data) == policy
    with pytest.raises(ValueError, match="MetiRetryPolicy"):
        retry_policy.MetiRetryPolicy.deserialize({"__type": "ExceptionRetryPolicy"})


@needs_retry_policies
@pytest.mark.parametrize("cls", provider_operators(), ids=lambda cls: cls.__name__)
def test_each_operator_and_sensor_carries_the_policy(cls):
    task = build(cls)
    assert task.retry_policy == default_retry_policy()
    assert task.has_retry_policy


@needs_retry_policies
@pytest.mark.parametrize("cls", provider_operators(), ids=lambda cls: cls.__name__)
def test_a_policy_or_none_given_to_the_operator_wins(cls, other_policy):
    assert build(cls, retry_policy=other_policy).retry_policy is other_policy
    assert build(cls, retry_policy=None).retry_policy is None


@needs_retry_policies
def test_the_operators_default_args_win(other_policy):
    from airflow_provider_meti.operators.meti import MetiGetSourceOperator

    task = build(MetiGetSourceOperator, default_args={"retry_policy": other_policy})
    assert task.retry_policy is other_policy
    assert build(MetiGetSourceOperator, default_args={"retry_policy": None}).retry_policy is None
    assert build(MetiGetSourceOperator, default_args={"retries": 2}).retry_policy is not None


@needs_retry_policies
def test_the_dags_and_task_groups_default_args_win(other_policy):
    from airflow.sdk import DAG, TaskGroup

    from airflow_provider_meti.operators.meti import MetiGetSourceOperator
    from airflow_provider_meti.sensors.meti import MetiSourceSensor

    with DAG("retry_policy_defaults", schedule=None, default_args={"retry_policy": other_policy}):
        from_dag = build(MetiSourceSensor, "from_dag")
        chosen = build(MetiGetSourceOperator, "chosen", retry_policy=default_retry_policy())
        with TaskGroup("group", default_args={"retry_policy": None}):
            from_group = build(MetiGetSourceOperator, "from_group")
    assert from_dag.retry_policy is other_policy
    assert chosen.retry_policy == default_retry_policy()  # given on purpose: it wins
    assert from_group.retry_policy is None


@needs_retry_policies
def test_mapped_operators_carry_the_policy_and_respect_overrides(other_policy):
    from airflow.sdk import DAG

    from airflow_provider_meti.operators.meti import MetiGetSourceOperator

    with DAG("retry_policy_mapped", schedule=None) as dag:
        plain = MetiGetSourceOperator.partial(task_id="plain").expand(source_id=["a", "b"])
        off = MetiGetSourceOperator.partial(task_id="off", retry_policy=None).expand(
            source_id=["a"]
        )
    with DAG("retry_policy_mapped_dag", schedule=None, default_args={"retry_policy": other_policy}):
        from_dag = MetiGetSourceOperator.partial(task_id="from_dag").expand(source_id=["a"])
    assert plain.retry_policy == default_retry_policy()
    assert plain.unmap({"source_id": "a"}).retry_policy == default_retry_policy()
    assert off.retry_policy is None and off.unmap({"source_id": "a"}).retry_policy is None
    assert from_dag.unmap({"source_id": "a"}).retry_policy is other_policy

    from airflow.serialization.serialized_objects import DagSerialization

    tasks = {
        task["__var"]["task_id"]: task["__var"]
        for task in DagSerialization.serialize_dag(dag)["tasks"]
    }
    assert tasks["plain"]["partial_kwargs"].get("has_retry_policy") is True
    assert "has_retry_policy" not in tasks["off"]["partial_kwargs"]


# --- Airflow's task runner follows it (3.3) ---------------------------------------------------

DAG_FILE = """
from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_meti.operators.meti import MetiGetSourceOperator

with DAG("{dag_id}", schedule=None, catchup=False):
    # A retry_delay of an hour: only the policy's decisions let the run end within the test.
    for task_id, source_id in (("missing", "src_missing"), ("throttled", "{source_id}")):
        MetiGetSourceOperator(
            task_id=task_id, source_id=source_id, retries=3, retry_delay=timedelta(hours=1)
        )
"""


@pytest.fixture
def dags_folder(tmp_path, monkeypatch) -> Path:
    """A DAGs folder of this test's own: ``dag.test()`` runs only DAGs found there."""
    from airflow import settings

    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(tmp_path))
    return tmp_path


@needs_retry_policies
@v2_only  # its source paths tell the two tasks' requests apart, for the fault plan
@pytest.mark.timeout(240)
def test_airflows_task_runner_fails_a_404_at_once_and_retries_a_429_after_retry_after(
    airflow_db, dags_folder, meti_connection, emulator
):
    meti_connection(extra={"max_retries": 0})
    (source,) = emulator.ledger.create(collection(square_feature("F1")))
    emulator.set_faults(1.0, ["429"], retry_after=0, paths=[f"/sources/{source['id']}"], count=1)
    dag_id = f"meti_retry_policy_{dags_folder.name}"
    dag_file = dags_folder / "retry_policy_dag.py"
    dag_file.write_text(DAG_FILE.format(dag_id=dag_id, source_id=source["id"]))
    dag = airflow_compat.dag_bag(str(dags_folder)).dags[dag_id]

    run = airflow_compat.run_dag_test(dag)

    tries = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert tries == {"missing": ("failed", 1), "throttled": ("success", 2)}
    requests = emulator.stats()["requests"]
    assert requests["GET /sources/src_missing"] == 1
    assert requests[f"GET /sources/{source['id']}"] == 2
    first_try = throttled_first_try(run)
    # The try Airflow archived when it set the task up for retry: with the policy's delay.
    assert first_try.retry_delay_override == 0
    assert "HTTP 429" in first_try.retry_reason


def throttled_first_try(run) -> Any:
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        history = session.scalars(
            select(TaskInstanceHistory).where(
                TaskInstanceHistory.dag_id == run.dag_id,
                TaskInstanceHistory.run_id == run.run_id,
                TaskInstanceHistory.task_id == "throttled",
                TaskInstanceHistory.try_number == 1,
            )
        ).one()
        session.expunge(history)
        return history


# --- older Airflow lines ----------------------------------------------------------------------


def test_the_module_imports_and_decides_on_every_line():
    # In a fresh interpreter: what this one imported earlier proves nothing about the import.
    script = (
        "import json; from airflow_provider_meti import retry_policy as m; "
        "print(json.dumps([m.decide(ValueError()).action, hasattr(m, 'MetiRetryPolicy'), "
        "m.default_retry_policy() is not None]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last_line = result.stdout.strip().splitlines()[-1]
    assert json.loads(last_line) == ["default", RETRY_POLICY_AVAILABLE, RETRY_POLICY_AVAILABLE]


@pytest.mark.skipif(
    RETRY_POLICY_AVAILABLE,
    reason=f"Airflow {AIRFLOW_VERSION} has retry policies: the operators carry one here",
)
@pytest.mark.parametrize("cls", provider_operators(), ids=lambda cls: cls.__name__)
def test_before_retry_policies_the_operators_get_none_and_construct_as_before(cls):
    assert "__init__" not in vars(MetiHookMixin)
    task = build(cls)
    assert getattr(task, "retry_policy", None) is None
    assert task.task_id == "task"
