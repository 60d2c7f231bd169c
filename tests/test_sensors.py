"""The METI sensors in poke, reschedule and deferrable mode, against the emulator."""

from __future__ import annotations

import importlib
import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_meti._compat import (
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from airflow_provider_meti.api import api_version
from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiAuthError,
    MetiError,
    MetiNotFoundError,
)
from airflow_provider_meti.sensors.meti import (
    DEFERRAL_TIMEOUT_GRACE,
    MetiSensor,
    MetiSourceSensor,
)
from airflow_provider_meti.triggers.meti import MetiSourceTrigger
from tests.airflow_compat import reschedule_with_stand_in_ti
from tests.airflow_context import make_context
from tests.api_versions import SECRETS
from tests.features import collection, square_feature

MISSING_ID = "src_0000000000000"
FAST = {"poke_interval": 0.05, "timeout": 10}


def create(emulator, *features) -> list[str]:
    return [source["id"] for source in emulator.ledger.create(collection(*features))]


def later(seconds: float, action) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()), daemon=True)
    thread.start()
    return thread


def import_classpath(classpath: str) -> type:
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


def missing_source_request(meti_api_version: int) -> dict:
    """``endpoint`` and ``request_params`` for a source that does not exist, as the API
    version addresses one source."""
    endpoint, params = api_version(meti_api_version).source_route(MISSING_ID)
    return {"endpoint": endpoint, "request_params": params or None}


def source_sensor(**kwargs) -> MetiSourceSensor:
    kwargs.setdefault("deferrable", False)
    return MetiSourceSensor(task_id="wait", **{**FAST, **kwargs})


# MetiSensor


def test_generic_sensor_treats_404_as_not_yet(meti_connection, meti_api_version, task_context):
    sensor = MetiSensor(task_id="s", **missing_source_request(meti_api_version))
    assert sensor.poke(task_context) is False


def test_generic_sensor_applies_the_response_check(meti_connection, emulator, task_context):
    emulator.ledger.seed(2)
    sensor = MetiSensor(
        task_id="s", endpoint="/sources", response_check=lambda body: len(body) >= 3
    )
    assert sensor.poke(task_context) is False
    emulator.ledger.seed(1)
    assert sensor.poke(task_context) is True


def test_generic_sensor_times_out_and_soft_fail_skips(
    meti_connection, meti_api_version, task_context
):
    kwargs = missing_source_request(meti_api_version)
    sensor = MetiSensor(task_id="s", poke_interval=0.05, timeout=0.2, **kwargs)
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute(task_context)
    soft = MetiSensor(task_id="s", poke_interval=0.05, timeout=0.2, soft_fail=True, **kwargs)
    with pytest.raises(AirflowSkipException):
        soft.execute(task_context)


def test_an_auth_error_fails_even_with_soft_fail(meti_connection, task_context):
    meti_connection(password="not-the-password")
    sensor = MetiSensor(task_id="s", endpoint="/sources", soft_fail=True, **FAST)
    with pytest.raises(MetiAuthError) as raised:
        sensor.execute(task_context)
    assert "not-the-password" not in str(raised.value)


def test_other_4xx_fail_even_with_soft_fail(meti_connection, meti_api_version, task_context):
    sensor = MetiSensor(
        task_id="s", endpoint="/sources", request_params={"limit": "lots"}, soft_fail=True, **FAST
    )
    with pytest.raises(MetiApiError) as raised:
        sensor.execute(task_context)
    # v1 answers a malformed query 400; v2 (FastAPI) answers 422.
    assert raised.value.status_code == (400 if meti_api_version == 1 else 422)


def test_server_errors_after_retries_fail_even_with_soft_fail(
    meti_connection, emulator, task_context
):
    meti_connection(extra={"max_retries": 1})
    emulator.set_faults(rate=1.0, kinds=["500"])
    sensor = MetiSensor(task_id="s", endpoint="/sources", soft_fail=True, **FAST)
    with pytest.raises(MetiApiError) as raised:
        sensor.execute(task_context)
    assert raised.value.status_code == 500


# MetiSourceSensor: poke mode


def test_exists_returns_the_source(meti_connection, emulator, task_context):
    (source_id,) = create(emulator, square_feature("A"))
    assert source_sensor(source_id=source_id).execute(task_context)["alt_id"] == "A"


def test_exists_waits_until_the_source_appears(meti_connection, emulator, task_context):
    (source_id,) = create(emulator, square_feature("A"))
    emulator.ledger.clear()  # restarts the id generator: the same create brings the same id
    later(0.3, lambda: create(emulator, square_feature("A")))
    source = source_sensor(source_id=source_id).execute(task_context)
    assert source["id"] == source_id


def test_deleted_returns_once_the_source_is_gone(meti_connection, emulator, task_context):
    (source_id,) = create(emulator, square_feature("A"))
    later(0.2, lambda: emulator.ledger.delete(source_id))
    assert source_sensor(source_id=source_id, wait_for="deleted").execute(task_context) is None


def test_no_conflict_is_released_by_deleting_the_other_source(
    meti_connection, emulator, task_context
):
    first, second = create(emulator, square_feature("A"), square_feature("B", y=0.1))
    assert emulator.ledger.get(first)["conflict"] is True
    later(0.3, lambda: emulator.ledger.delete(second))
    started = time.monotonic()
    source = source_sensor(source_id=first, wait_for="no_conflict").execute(task_context)
    assert source["id"] == first and source["conflict"] is False
    assert time.monotonic() - started >= 0.25


def test_no_conflict_on_a_missing_source_fails_even_with_soft_fail(meti_connection, task_context):
    sensor = source_sensor(source_id=MISSING_ID, wait_for="no_conflict", soft_fail=True)
    with pytest.raises(MetiNotFoundError, match="can never become free of conflicts"):
        sensor.execute(task_context)


def test_poke_mode_timeout_and_soft_fail(meti_connection, task_context):
    with pytest.raises(AirflowSensorTimeout):
        source_sensor(source_id=MISSING_ID, timeout=0.2).execute(task_context)
    with pytest.raises(AirflowSkipException):
        source_sensor(source_id=MISSING_ID, timeout=0.2, soft_fail=True).execute(task_context)


def test_unknown_condition_is_refused():
    with pytest.raises(ValueError, match="wait_for"):
        MetiSourceSensor(task_id="s", source_id="src_1", wait_for="gone")


# MetiSourceSensor: reschedule mode


@reschedule_with_stand_in_ti
def test_reschedule_mode_frees_the_slot_while_waiting(meti_connection, emulator):
    sensor = source_sensor(source_id=MISSING_ID, mode="reschedule", poke_interval=60)
    before = datetime.now(timezone.utc)
    with pytest.raises(AirflowRescheduleException) as raised:
        sensor.execute(make_context())
    assert raised.value.reschedule_date >= before + timedelta(seconds=59)


@reschedule_with_stand_in_ti
def test_reschedule_mode_returns_the_source_when_it_exists(meti_connection, emulator):
    (source_id,) = create(emulator, square_feature("A"))
    sensor = source_sensor(source_id=source_id, mode="reschedule")
    assert sensor.execute(make_context())["id"] == source_id


@reschedule_with_stand_in_ti
def test_reschedule_mode_counts_the_timeout_from_the_first_poke(meti_connection):
    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    context = make_context(first_reschedule_date=an_hour_ago)
    sensor = source_sensor(source_id=MISSING_ID, mode="reschedule", timeout=1800)
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute(context)
    soft = source_sensor(source_id=MISSING_ID, mode="reschedule", timeout=1800, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        soft.execute(context)


# MetiSourceSensor: deferrable mode


def test_deferrable_sensor_defers_with_a_plain_serializable_trigger(
    meti_connection, emulator, task_context
):
    sensor = source_sensor(source_id=MISSING_ID, deferrable=True, timeout=600, poke_interval=30)
    started = time.time()
    with pytest.raises(TaskDeferred) as raised:
        sensor.execute(task_context)
    deferred = raised.value
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout == timedelta(seconds=600 + DEFERRAL_TIMEOUT_GRACE)

    classpath, kwargs = deferred.trigger.serialize()
    rebuilt = import_classpath(classpath)(**kwargs)
    assert isinstance(rebuilt, MetiSourceTrigger)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["source_id"] == MISSING_ID and kwargs["poll_interval"] == 30
    assert started + 600 <= kwargs["deadline"] <= time.time() + 600

    text = json.dumps(kwargs)
    token = sensor.hook.get_token()
    assert token not in text
    assert not any(secret in text for secret in SECRETS)


def test_deferrable_sensor_does_not_defer_when_already_satisfied(
    meti_connection, emulator, task_context
):
    (source_id,) = create(emulator, square_feature("A"))
    sensor = source_sensor(source_id=source_id, deferrable=True)
    assert sensor.execute(task_context)["id"] == source_id


def test_deferrable_defaults_to_airflows_setting(monkeypatch):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "true")
    assert MetiSourceSensor(task_id="s", source_id="src_1").deferrable is True
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")
    assert MetiSourceSensor(task_id="s", source_id="src_1").deferrable is False


def resume(sensor: MetiSourceSensor, event: dict):
    return sensor.resume_execution("execute_complete", {"event": event}, make_context())


def test_resuming_with_success_returns_the_source():
    sensor = source_sensor(source_id="src_1", deferrable=True)
    event = {"status": "success", "message": "ok", "source": {"id": "src_1"}}
    assert resume(sensor, event) == {"id": "src_1"}


@pytest.mark.parametrize(
    ("soft_fail", "expected"), [(False, AirflowSensorTimeout), (True, AirflowSkipException)]
)
def test_resuming_after_a_timeout_fails_or_skips(soft_fail, expected):
    sensor = source_sensor(source_id="src_1", deferrable=True, soft_fail=soft_fail)
    with pytest.raises(expected) as raised:
        resume(sensor, {"status": "timeout", "message": "Source src_1 was still not found"})
    assert "still not found" in str(raised.value) + str(raised.value.__cause__)


def test_airflows_own_deferral_timeout_is_a_timeout_too():
    sensor = source_sensor(source_id="src_1", deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("__fail__", {"error": "Trigger/execution timeout"}, {})


@pytest.mark.parametrize(
    ("error", "expected"), [("MetiAuthError", MetiAuthError), ("MetiApiError", MetiError)]
)
def test_resuming_with_an_error_fails_even_with_soft_fail(error, expected):
    sensor = source_sensor(source_id="src_1", deferrable=True, soft_fail=True)
    event = {"status": "error", "message": "Waiting failed: HTTP 403", "error": error}
    with pytest.raises(expected, match="HTTP 403"):
        resume(sensor, event)
