"""The peer: ``apache-airflow-providers-http``'s ``HttpHook`` with a bearer header.

The token comes from one ``POST /token`` through the same hook; every call then passes the
header to ``run()`` or ``run_with_advanced_retry()``, as the HTTP provider's docs show.
"""

from __future__ import annotations

from typing import Any

import requests
import tenacity

from benchmarks.emulator_process import EMAIL, PASSWORD

# The retry arguments of the HTTP provider's documentation.
RETRY_ARGS = {
    "wait": tenacity.wait_exponential(),
    "stop": tenacity.stop_after_attempt(10),
    "retry": tenacity.retry_if_exception_type(requests.exceptions.ConnectionError),
}


class PeerHttpHook:
    """``HttpHook`` calls for one source, with and without tenacity retries."""

    def __init__(self, http_conn_id: str) -> None:
        from airflow.providers.http.hooks.http import HttpHook

        token_hook = HttpHook(method="POST", http_conn_id=http_conn_id)
        body = {"email": EMAIL, "password": PASSWORD}
        token = token_hook.run("/token", json=body).json()["token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        self.hook = HttpHook(method="GET", http_conn_id=http_conn_id)

    def get_source(self, source_id: str) -> Any:
        return self.hook.run("/sources/", data={"id": source_id}, headers=self.headers).json()

    def get_source_with_retry(self, source_id: str) -> Any:
        response = self.hook.run_with_advanced_retry(
            RETRY_ARGS, "/sources/", data={"id": source_id}, headers=self.headers
        )
        return response.json()
