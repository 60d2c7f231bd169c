"""A deferred sensor's timeout holds while a check is waiting (#25.6): a token endpoint
that never answers cannot keep a trigger past its deadline."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from airflow_provider_meti._compat import BaseHook, Connection
from airflow_provider_meti.triggers.meti import MetiSourceTrigger
from tests.test_gate_budget import SOURCE, scripted, url_of  # noqa: F401

TRIGGERS = 8


def test_triggers_time_out_while_the_token_endpoint_hangs(scripted, monkeypatch):  # noqa: F811
    release, asked = threading.Event(), threading.Event()

    def hang(request) -> None:
        asked.set()
        release.wait(120)
        request.reply_json(503, {"message": "token service down"})

    server = scripted(hang)
    connection = {
        "conn_type": "meti",
        "host": url_of(server),
        "login": "a@b.c",
        "password": "pw-trigger-deadline",
        # A budget far longer than the sensor's timeout: only the deadline can end the wait.
        "extra": {"timeout": 100, "max_retry_time": 300},
    }
    monkeypatch.setenv("AIRFLOW_CONN_METI_HANGING", json.dumps(connection))
    # Read once, before the deadline starts: on Airflow 3.1 a loaded machine took more than
    # the deadline for eight lookups, and the triggers then timed out before asking METI.
    # That timeout has its own test below; this one is about the token endpoint.
    looked_up = BaseHook.get_connection("meti_hanging")

    async def read_connection(conn_id: str) -> Connection:
        assert conn_id == "meti_hanging"
        return looked_up

    monkeypatch.setattr("airflow_provider_meti.triggers.meti.aget_connection", read_connection)
    deadline = time.time() + 2

    async def main() -> list[dict]:
        triggers = [
            MetiSourceTrigger(
                meti_conn_id="meti_hanging", source_id=SOURCE, poll_interval=5, deadline=deadline
            )
            for _ in range(TRIGGERS)
        ]

        async def first_event(trigger: MetiSourceTrigger) -> dict:
            async for event in trigger.run():
                return event.payload
            raise AssertionError("no event")

        # Far below the 100 s request timeout the triggers used to wait out.
        return await asyncio.wait_for(asyncio.gather(*map(first_event, triggers)), 60)

    try:
        events = asyncio.run(main())
    finally:
        release.set()

    assert [event["status"] for event in events] == ["timeout"] * TRIGGERS
    assert all("before METI answered" in event["message"] for event in events)
    assert asked.wait(5)
    assert server.seen["POST /token"] == 1  # one renewal, asked for and shared by every trigger


def test_a_trigger_times_out_while_its_connection_lookup_hangs(monkeypatch):
    looked_up = asyncio.Event()

    async def hanging_lookup(conn_id: str):
        looked_up.set()
        await asyncio.Event().wait()  # a secrets backend that never answers

    monkeypatch.setattr("airflow_provider_meti.triggers.meti.aget_connection", hanging_lookup)
    trigger = MetiSourceTrigger(
        meti_conn_id="meti_behind_a_hanging_vault", source_id=SOURCE, deadline=time.time() + 0.2
    )

    async def main() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(main(), 60))
    assert looked_up.is_set()
    assert event["status"] == "timeout"
    assert "connection 'meti_behind_a_hanging_vault' could be read" in event["message"]
    assert f"to check source {SOURCE}" in event["message"]
