"""Sensors that wait for METI: any endpoint, or one source reaching a state.

Only a timeout is ever soft: with ``soft_fail=True`` a sensor that runs out of time is
skipped, but rejected credentials, a 4xx other than the awaited 404 and server errors that
outlast the client's retries fail the task. They are raised as ``MetiError``s, which
Airflow's sensor machinery never turns into skips (it does so for ``AirflowFailException``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow_provider_meti._compat import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    default_deferrable,
)
from airflow_provider_meti.conditions import WaitFor, check_source, check_wait_for
from airflow_provider_meti.error_events import error_from_event
from airflow_provider_meti.exceptions import MetiNotFoundError
from airflow_provider_meti.hooks.meti import MetiHook, MetiHookMixin
from airflow_provider_meti.triggers.meti import MetiSourceTrigger

# Airflow's own deferral timeout is a safety net behind the trigger's deadline, so that the
# trigger normally reports the timeout itself, with its clearer message.
DEFERRAL_TIMEOUT_GRACE = 60.0


class MetiSensor(MetiHookMixin, BaseSensorOperator):
    """Waits until a GET on a METI endpoint succeeds (and ``response_check`` agrees).

    A 404 means "not yet"; every other error fails the task (see the module docstring).

    :param endpoint: path relative to the connection's base URL, e.g. ``/sources``
    :param request_params: query parameters (``params`` is taken by Airflow for Jinja params)
    :param response_check: called with the parsed JSON; return True when done
    :param meti_conn_id: the Airflow connection id
    """

    template_fields: Sequence[str] = ("endpoint", "request_params", "meti_conn_id")

    def __init__(
        self,
        *,
        endpoint: str,
        request_params: Mapping[str, Any] | None = None,
        response_check: Callable[[Any], bool] | None = None,
        meti_conn_id: str = MetiHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.request_params = request_params
        self.response_check = response_check
        self.meti_conn_id = meti_conn_id

    def poke(self, context: Context) -> bool:
        """One GET: False on 404 or when ``response_check`` says not yet."""
        self.log.info("Poking METI: GET %s", self.endpoint)
        try:
            body = self.hook.request("GET", self.endpoint, params=self.request_params)
        except MetiNotFoundError:
            self.log.info("GET %s: 404, not there yet", self.endpoint)
            return False
        if self.response_check is None:
            return True
        return bool(self.response_check(body))


class MetiSourceSensor(MetiHookMixin, BaseSensorOperator):
    """Waits until a METI source exists, is free of conflicts, or is deleted.

    Works in ``poke``, ``reschedule`` and deferrable mode with the same meaning of
    ``timeout`` (seconds since the sensor first checked) and ``soft_fail`` (skip instead of
    fail on timeout only). Returns the source (None for ``deleted``), so it lands in XCom.

    :param source_id: the METI source id (``src_...``)
    :param wait_for: ``exists``; ``no_conflict``: found and not in conflict (fails if the
        source does not exist); ``resolved``: not in conflict, or withdrawn (deleted);
        ``deleted``: a 404
    :param poke_interval: seconds between checks
    :param deferrable: wait in the triggerer instead of a worker slot (default: Airflow's
        ``[operators] default_deferrable``)
    :param meti_conn_id: the Airflow connection id
    """

    template_fields: Sequence[str] = ("source_id", "meti_conn_id")

    def __init__(
        self,
        *,
        source_id: str,
        wait_for: WaitFor | str = "exists",
        poke_interval: timedelta | float = 300,
        deferrable: bool | None = None,
        meti_conn_id: str = MetiHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.source_id = source_id
        self.wait_for = check_wait_for(wait_for)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.meti_conn_id = meti_conn_id

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One lookup of the source; done when ``wait_for`` holds."""
        done, source = check_source(self.hook.get_source, self.source_id, self.wait_for)
        if done:
            self.log.info("Source %s: %s holds", self.source_id, self.wait_for)
            return PokeReturnValue(is_done=True, xcom_value=source)
        self.log.info("Source %s: waiting for %s", self.source_id, self.wait_for)
        return False

    def execute(self, context: Context) -> Any:
        """Poke or reschedule as usual; when deferrable, check once and then defer."""
        if not self.deferrable:
            return super().execute(context)
        started = time.time()
        first = self.poke(context)
        if first:
            return first.xcom_value if isinstance(first, PokeReturnValue) else None
        self.defer(
            trigger=MetiSourceTrigger(
                meti_conn_id=self.meti_conn_id,
                source_id=self.source_id,
                wait_for=self.wait_for,
                poll_interval=self.poke_interval,
                deadline=started + self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + DEFERRAL_TIMEOUT_GRACE),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: the source on success, else time out or fail."""
        status = event.get("status")
        message = event.get("message") or f"the trigger sent {event!r}"
        if status == "success":
            self.log.info(message)
            return event.get("source")
        if status == "timeout":
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        if getattr(self, "never_fail", False):
            raise AirflowSkipException(f"Skipping due to never_fail: {message}")
        self.log.error(message)
        raise error_from_event(event, message)
