"""Airflow cluster policy for the topology run: a retry waits seconds, not the DAGs' 30 s.

The run kills a worker on purpose, and the tasks it ran are retried; with the example DAGs'
own delay each retry would idle for half a minute. Every other setting of the DAGs stays.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

RETRY_DELAY = timedelta(seconds=2)


def task_policy(task: Any) -> None:
    task.retry_delay = RETRY_DELAY
