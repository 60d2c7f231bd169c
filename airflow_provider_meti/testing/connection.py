"""``MetiTestConnection``: an Airflow connection to the emulator, defined in the environment."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_meti.testing.emulator import MetiTestEmulator


def env_var_name(conn_id: str) -> str:
    """The variable Airflow reads a connection from: ``AIRFLOW_CONN_<CONN_ID>``."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def connection_spec(
    emulator: MetiTestEmulator, api_version: int = 1, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A METI connection to ``emulator`` in Airflow's JSON form (as a dict).

    :param api_version: 1 (email/password) or 2 (OAuth2 client credentials)
    :param extra: merged into the extras the API version needs
    """
    fields = emulator.connection_fields(api_version)
    extras = {**fields.pop("extra"), **(extra or {})}
    spec: dict[str, Any] = {"conn_type": "meti", **fields}
    if extras:
        spec["extra"] = extras
    return spec


@dataclass(frozen=True)
class MetiTestConnection:
    """What the ``meti_connection`` fixture defined.

    :param conn_id: the connection id, e.g. ``meti_default``
    :param env_var: the environment variable holding it, e.g. ``AIRFLOW_CONN_METI_DEFAULT``
    :param api_version: the METI API generation it speaks (1 or 2)
    :param emulator: the emulator it points at
    :param spec: the connection in Airflow's JSON form, as a dict (it holds the password)
    """

    conn_id: str
    env_var: str
    api_version: int
    emulator: MetiTestEmulator
    spec: dict[str, Any] = field(repr=False)

    @property
    def json(self) -> str:
        """The value of :attr:`env_var`."""
        return json.dumps(self.spec)
