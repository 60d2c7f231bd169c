"""MetiSourceTrigger: waits in the triggerer until a METI source reaches a state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow_provider_meti._compat import (
    BaseTrigger,
    TriggerEvent,
    aconnection_extras,
    aget_connection,
)
from airflow_provider_meti.aio.within import within
from airflow_provider_meti.conditions import (
    CONDITION_TEXT,
    WaitFor,
    acheck_source,
    check_wait_for,
)
from airflow_provider_meti.error_events import error_cause
from airflow_provider_meti.exceptions import MetiApiError, MetiError
from airflow_provider_meti.retries import is_retryable

if TYPE_CHECKING:  # the client (and aiohttp) loads when the trigger runs, not at DAG parse
    from airflow_provider_meti.aio.client import AsyncMetiClient
    from airflow_provider_meti.connection import ConnectionSettings


class MetiSourceTrigger(BaseTrigger):
    """Polls one METI source until a condition holds or a deadline passes.

    Fires exactly one event: ``{"status": "success", "message", "source"}`` (``source`` is
    None for ``deleted``), ``{"status": "timeout", "message"}`` once ``deadline`` has passed,
    or ``{"status": "error", "message", "error"}`` for failures that waiting cannot cure
    (rejected credentials, a 4xx, a source gone while waiting for ``no_conflict``).
    Retryable API failures that outlast the client's own retries are logged and polled again.

    Checks run on the triggerer's event loop through the asyncio client: no thread per check,
    and cancelling the trigger cancels its request. All triggers of one connection on the
    loop share one session and one token.

    :param meti_conn_id: the Airflow connection id
    :param source_id: the METI source id (``src_...``)
    :param wait_for: ``exists``, ``no_conflict`` or ``deleted``
    :param poll_interval: seconds between two checks
    :param deadline: epoch seconds after which the trigger gives up; None waits forever
    """

    def __init__(
        self,
        meti_conn_id: str,
        source_id: str,
        wait_for: WaitFor | str = "exists",
        poll_interval: float = 300.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.meti_conn_id = meti_conn_id
        self.source_id = source_id
        self.wait_for = check_wait_for(wait_for)
        self.poll_interval = float(poll_interval)
        self.deadline = None if deadline is None else float(deadline)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and plain keyword arguments: ids, condition and timing, never a secret."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "meti_conn_id": self.meti_conn_id,
                "source_id": self.source_id,
                "wait_for": self.wait_for,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the condition holds, the deadline passes or an error ends the wait."""
        from airflow_provider_meti.aio.shared import shared_client

        try:
            # The timeout holds while a secrets backend is slow to answer, too.
            found, parts = await within(self._connection_settings(), self._remaining())
            if not found:
                message = (
                    f"The sensor's timeout ran out before connection {self.meti_conn_id!r} "
                    f"could be read to check source {self.source_id} (the connection lookup "
                    "did not finish in time); METI was not asked."
                )
                yield TriggerEvent({"status": "timeout", "message": message})
                return
            assert parts is not None
            parts.token_source()  # refuses unusable credentials before anything is shared
        except Exception as error:  # e.g. an unknown conn_id: an event, not a crashed trigger
            yield TriggerEvent(self._error(error))
            return
        async with shared_client(self.meti_conn_id, parts) as client:
            outcome = await self._poll(client)
        yield TriggerEvent(outcome)

    async def _connection_settings(self) -> ConnectionSettings:
        from airflow_provider_meti.connection import settings_from_connection

        connection = await aget_connection(self.meti_conn_id)
        extras = await aconnection_extras(connection)
        return settings_from_connection(connection, extras=extras)

    async def _poll(self, client: AsyncMetiClient) -> dict[str, Any]:
        answered = False  # whether any check got METI's answer
        while True:
            remaining = self._remaining()
            if remaining is None:
                outcome = await self._check(client)
            else:
                # The timeout holds while a check waits too (a token endpoint that is down,
                # a slow reply): cancelling a check cancels its request and hands any token
                # renewal it started to the next caller.
                finished, outcome = await within(self._check(client), remaining)
                if not finished:
                    return self._timeout(unanswered=not answered)
            if outcome is not None:
                return outcome
            answered = answered or self._answered
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                return self._timeout()
            delay = self.poll_interval if remaining is None else min(self.poll_interval, remaining)
            await asyncio.sleep(delay)

    async def _check(self, client: AsyncMetiClient) -> dict[str, Any] | None:
        """The final event when this check ends the wait, None to keep polling.

        Sets ``_answered`` when METI answered (the condition does not hold yet).
        """
        self._answered = False
        try:
            done, source = await acheck_source(client.get_source, self.source_id, self.wait_for)
        except MetiApiError as error:
            if not is_retryable(error):
                return self._error(error)
            self.log.warning("Checking %s failed, will check again: %s", self.source_id, error)
            return None
        except MetiError as error:
            return self._error(error)
        except Exception as error:
            self.log.exception("Checking %s failed", self.source_id)
            return self._error(error)
        if done:
            return self._success(source)
        self._answered = True
        self.log.info("Source %s: not %s yet", self.source_id, self._condition_text())
        return None

    def _remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def _condition_text(self) -> str:
        return CONDITION_TEXT[self.wait_for]

    def _success(self, source: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "status": "success",
            "message": f"Source {self.source_id} is {self._condition_text()}.",
            "source": source,
        }

    def _timeout(self, *, unanswered: bool = False) -> dict[str, Any]:
        if unanswered:
            message = (
                f"The sensor's timeout ran out before METI answered a check of source "
                f"{self.source_id}."
            )
        else:
            message = (
                f"Source {self.source_id} was still not {self._condition_text()} when the "
                "sensor's timeout ran out."
            )
        return {"status": "timeout", "message": message}

    def _error(self, error: BaseException) -> dict[str, Any]:
        event: dict[str, Any] = {
            "status": "error",
            "message": f"Waiting for source {self.source_id} failed: {error}",
            "error": type(error).__name__,
        }
        cause = error_cause(error)
        if cause is not None:
            event["cause"] = cause
        return event
