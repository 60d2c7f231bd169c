"""Test helpers for users of the provider: a pytest plugin around the local METI emulator.

Installing the provider registers the plugin (entry point ``pytest11``, name ``meti``), so a
test only has to ask for a fixture::

    def test_register_fields(meti_connection):
        ...  # AIRFLOW_CONN_METI_DEFAULT points at a fresh emulator on 127.0.0.1

Fixtures: ``meti_emulator``, ``meti_emulator_session`` and ``meti_connection`` (see
:mod:`airflow_provider_meti.testing.pytest_plugin`); marker: ``@pytest.mark.meti(...)``.
Disable the plugin with ``pytest -p no:meti``.

:class:`MetiTestEmulator` and :class:`MetiTestConnection`, the objects the fixtures return,
are imported on first use only, so that loading the plugin imports neither the emulator nor
Airflow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_meti.testing.connection import MetiTestConnection
    from airflow_provider_meti.testing.emulator import MetiTestEmulator

_LAZY = {
    "MetiTestConnection": "airflow_provider_meti.testing.connection",
    "MetiTestEmulator": "airflow_provider_meti.testing.emulator",
}

__all__ = ["MetiTestConnection", "MetiTestEmulator"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
