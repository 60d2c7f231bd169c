"""The two METI API generations the ``meti_connection`` fixture speaks.

Every test that uses ``meti_connection`` runs once per generation (ids ``v1`` and ``v2``).
A test that only makes sense for one of them says so with ``v1_only`` or ``v2_only``.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_meti.emulator import MetiEmulator
from tests.airflow_context import METI_CLIENT_ID, METI_CLIENT_SECRET, METI_EMAIL, METI_PASSWORD

API_VERSIONS = (1, 2)
API_VERSION_IDS = tuple(f"v{number}" for number in API_VERSIONS)
SECRETS = (METI_PASSWORD, METI_CLIENT_SECRET)
"""The demo credentials' secrets, for asserting that none of them leaks."""

v1_only = pytest.mark.parametrize("meti_api_version", [1], ids=["v1"], indirect=True)
v2_only = pytest.mark.parametrize("meti_api_version", [2], ids=["v2"], indirect=True)


def connection_fields(emulator: MetiEmulator, api_version: int) -> dict[str, Any]:
    """Login, password and extras of the emulator's demo credentials for ``api_version``.

    :param emulator: the running emulator
    :param api_version: 1 (email/password) or 2 (OAuth2 client credentials)
    """
    if api_version == 1:
        return {"login": METI_EMAIL, "password": METI_PASSWORD, "extra": {}}
    return {
        "login": METI_CLIENT_ID,
        "password": METI_CLIENT_SECRET,
        "extra": {"api_version": 2, "token_url": emulator.token_url},
    }


def add_credentials(emulator: MetiEmulator, api_version: int, login: str, secret: str) -> None:
    """Register a v1 user or a v2 client with the emulator, in its default account."""
    if api_version == 1:
        emulator.add_user(login, secret)
    else:
        emulator.add_client(login, secret)


def token_request(api_version: int) -> str:
    """The emulator's ``"METHOD /path"`` key of a token request for ``api_version``."""
    return "POST /token" if api_version == 1 else "POST /oauth/token"
