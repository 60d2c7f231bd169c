"""A local METI API server (v1 and v2) for development, demos and tests; standard library only.

``MetiEmulator`` runs it on a background thread; ``python -m airflow_provider_meti.emulator``
(or the ``meti-emulator`` script) runs it in the foreground.
"""

from __future__ import annotations

from airflow_provider_meti.emulator.app import MetiEmulator
from airflow_provider_meti.emulator.faults import FAULT_KINDS, FaultPlan
from airflow_provider_meti.emulator.ledger import Ledger, SourceFilter

__all__ = ["FAULT_KINDS", "FaultPlan", "Ledger", "MetiEmulator", "SourceFilter"]
