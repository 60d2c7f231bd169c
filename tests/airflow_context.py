"""A small stand-in for the task instance and context Airflow hands to execute()."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

METI_EMAIL = "demo@meti.local"
METI_PASSWORD = "demo-password"
METI_CLIENT_ID = "demo-client"
METI_CLIENT_SECRET = "demo-client-secret"


@dataclass
class FakeTaskInstance:
    """What the METI operators and Airflow's sensor loop read from ``context["ti"]``."""

    try_number: int = 1
    max_tries: int = 5
    first_reschedule_date: datetime | None = None

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return self.first_reschedule_date


def make_context(**ti_fields: Any) -> dict[str, Any]:
    """A context with a fake ``ti`` and empty ``params``."""
    return {"ti": FakeTaskInstance(**ti_fields), "params": {}}


def trigger_events(trigger: Any, timeout: float = 20.0) -> list[Any]:
    """Every event ``trigger.run()`` yields, driven on a fresh event loop."""

    async def collect() -> list[Any]:
        return [event async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(collect(), timeout))
