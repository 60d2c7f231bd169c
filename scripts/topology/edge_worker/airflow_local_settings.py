"""``airflow_local_settings`` of the topology's edge workers only (on their PYTHONPATH alone).

Every ``airflow`` command first writes an audit row to the metadata database's ``log`` table
(``airflow.utils.cli_action_loggers.default_action_log``), ``airflow edge worker`` included.
A remote worker has no database: the write can only fail with a warning, and in the topology
run it would spring the tripwire that proves the workers never reach the database. Removing
that one callback is what a deployment of remote workers does; nothing else changes.
"""

from __future__ import annotations

from airflow.utils import cli_action_loggers

__all__: list[str] = []  # Airflow copies every public name of this module into its settings

_callbacks = getattr(cli_action_loggers, "__pre_exec_callbacks")  # a module-private name
if cli_action_loggers.default_action_log in _callbacks:
    _callbacks.remove(cli_action_loggers.default_action_log)
