"""The METI docs' pattern, as users copy it: ``requests.get`` per call and a global token.

Each call opens a new TCP connection (no session), and the token is renewed when
``time.time()`` passes its expiry. There is no lock: threads that see an expired token at the
same moment each ask for a new one.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from benchmarks.emulator_process import EMAIL, PASSWORD

BASE_URL = ""
TOKEN: str | None = None
TOKEN_EXPIRES_AT = 0.0


def configure(base_url: str) -> None:
    """Point the snippet at ``base_url`` and forget the token (a fresh script run)."""
    global BASE_URL, TOKEN, TOKEN_EXPIRES_AT
    BASE_URL, TOKEN, TOKEN_EXPIRES_AT = base_url, None, 0.0


def get_token() -> str:
    global TOKEN, TOKEN_EXPIRES_AT
    if TOKEN is None or time.time() > TOKEN_EXPIRES_AT - 60:
        response = requests.post(
            f"{BASE_URL}/token", json={"email": EMAIL, "password": PASSWORD}, timeout=30
        )
        response.raise_for_status()
        body = response.json()
        TOKEN = body["token"]
        TOKEN_EXPIRES_AT = time.time() + body["expires_in"]
    return TOKEN


def get_source(source_id: str) -> Any:
    response = requests.get(
        f"{BASE_URL}/sources/",
        params={"id": source_id},
        headers={"Authorization": f"Bearer {get_token()}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()
