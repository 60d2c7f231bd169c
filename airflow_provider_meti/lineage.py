"""Hook-level lineage: tell Airflow what a ``MetiHook`` read from or changed in METI.

Reported through the hook lineage collector of ``apache-airflow-providers-common-compat``
(``airflow.providers.common.compat.lineage.hook``), which works on every supported Airflow
line. Without that package nothing is reported and nothing fails. Airflow keeps what is
reported only while a lineage reader (such as the OpenLineage provider) is installed.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_meti.assets import meti_sources_uri

log = logging.getLogger(__name__)


def _collector() -> Any | None:
    if _no_lineage_reader():
        return None
    try:
        from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector
    except ImportError:
        return None
    return get_hook_lineage_collector()


def _no_lineage_reader() -> bool:
    """True when Airflow (3.2 and newer) says no hook lineage reader is installed.

    Its collector would then record nothing, and building one scans every installed provider
    (about 20 ms, once per task process). The plugins this asks about are loaded anyway when
    a task starts. Older lines: False, and the collector itself decides.
    """
    try:
        from airflow.sdk import plugins_manager

        readers = plugins_manager.get_hook_lineage_readers_plugins
    except (ImportError, AttributeError):
        return False
    return not readers()


def report_read(hook: Any, base_url: str) -> None:
    """Record METI's sources at ``base_url`` as an input of ``hook``'s task.

    :param hook: the hook that read (the lineage context)
    :param base_url: the METI API base URL
    """
    _report("add_input_asset", hook, base_url)


def report_write(hook: Any, base_url: str) -> None:
    """Record METI's sources at ``base_url`` as an output of ``hook``'s task.

    :param hook: the hook that created or deleted sources (the lineage context)
    :param base_url: the METI API base URL
    """
    _report("add_output_asset", hook, base_url)


def _report(method: str, hook: Any, base_url: str) -> None:
    # Lineage is a by-product: a collector that fails must never fail the task's real work.
    try:
        collector = _collector()
        if collector is not None:
            getattr(collector, method)(context=hook, uri=meti_sources_uri(base_url))
    except Exception:
        log.debug("Hook lineage for %s not recorded", base_url, exc_info=True)
