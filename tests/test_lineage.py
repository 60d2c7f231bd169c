"""Lineage: the ``meti://`` asset scheme and what ``MetiHook`` reports to hook lineage."""

from __future__ import annotations

import importlib
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest

from airflow_provider_meti import get_provider_info
from airflow_provider_meti._compat import asset
from airflow_provider_meti.assets import (
    convert_asset_to_openlineage,
    create_asset,
    meti_sources_uri,
    sanitize_uri,
)
from airflow_provider_meti.hooks.meti import MetiHook
from tests.features import APITEST2

# The asset scheme


def normalised(uri: str) -> str:
    return urlunsplit(sanitize_uri(urlsplit(uri)))


def test_the_normaliser_lower_cases_the_host_and_keeps_port_and_path():
    assert normalised("meti://API.Meti.Millpont.COM/sources") == (
        "meti://api.meti.millpont.com/sources"
    )
    assert (
        normalised("meti://Gateway:8443/meti/api/sources") == "meti://gateway:8443/meti/api/sources"
    )
    assert normalised("meti://user@Host/sources") == "meti://host/sources"


@pytest.mark.parametrize("uri", ["meti:///sources", "meti:sources", "meti://:8443/sources"])
def test_the_normaliser_refuses_a_uri_without_a_host(uri):
    with pytest.raises(ValueError, match="needs a host"):
        normalised(uri)


def test_airflow_normalises_meti_assets_with_the_providers_handler():
    # Proves the "asset-uris" entry (Airflow 2.11: "dataset-uris") is found and loaded.
    assert asset("meti://API.Millpont.com/sources").uri == "meti://api.millpont.com/sources"


def test_the_uri_of_a_base_url():
    assert meti_sources_uri("https://API.meti.millpont.com") == (
        "meti://api.meti.millpont.com/sources"
    )
    assert meti_sources_uri("http://127.0.0.1:8765/meti/api/") == (
        "meti://127.0.0.1:8765/meti/api/sources"
    )


def test_the_factory_makes_the_asset_of_a_base_url():
    made = create_asset(base_url="https://api.millpont.com", extra={"team": "etl"})
    assert made.uri == "meti://api.millpont.com/sources"
    assert made.extra == {"team": "etl"}


def test_the_provider_registers_handler_factory_and_converter():
    (entry,) = get_provider_info()["asset-uris"]
    assert entry["schemes"] == ["meti"]
    for key in ("handler", "factory", "to_openlineage_converter"):
        module, _, name = entry[key].rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))


def test_the_openlineage_converter():
    pytest.importorskip("openlineage.client", reason="needs openlineage-python (dev extra)")
    dataset = convert_asset_to_openlineage(asset("meti://api.millpont.com/sources"), None)
    assert (dataset.namespace, dataset.name) == ("meti://api.millpont.com", "sources")


# Hook-level lineage


@pytest.fixture
def collector(monkeypatch):
    """A fresh, recording hook lineage collector in place of Airflow's process-wide one.

    Airflow hands out a collector that records nothing unless a lineage reader (such as the
    OpenLineage provider) is installed; the compat layer looks the function up each call.
    """
    pytest.importorskip(
        "airflow.providers.common.compat.lineage.hook",
        reason="hook lineage needs apache-airflow-providers-common-compat",
    )
    for name in ("airflow.sdk.lineage", "airflow.lineage.hook"):  # the compat layer's order
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "HookLineageCollector"):
            break
    fresh = module.HookLineageCollector()
    monkeypatch.setattr(module, "get_hook_lineage_collector", lambda: fresh)
    # And a lineage reader "installed", which Airflow 3.2+ checks before collecting at all.
    plugins = sys.modules.get("airflow.sdk.plugins_manager") or _import(
        "airflow.sdk.plugins_manager"
    )
    if plugins is not None and hasattr(plugins, "get_hook_lineage_readers_plugins"):
        monkeypatch.setattr(plugins, "get_hook_lineage_readers_plugins", lambda: [object])
    from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

    return get_hook_lineage_collector()


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def collected_uris(collector) -> tuple[list[str], list[str]]:
    lineage = collector.collected_assets
    return (
        [info.asset.uri for info in lineage.inputs],
        [info.asset.uri for info in lineage.outputs],
    )


def test_listing_reports_meti_as_an_input(meti_connection, emulator, collector):
    emulator.ledger.seed(3)
    hook = MetiHook()
    assert len(list(hook.iter_sources())) == 3
    assert sum(len(page) for page in hook.iter_source_pages(page_size=2)) == 3

    uri = f"meti://{urlsplit(emulator.url).netloc}/sources"
    assert collected_uris(collector) == ([uri], [])
    (info,) = collector.collected_assets.inputs
    assert info.context is hook and info.count == 2  # one entry for the hook, two calls


def test_creating_and_deleting_report_meti_as_an_output(meti_connection, emulator, collector):
    hook = MetiHook()
    (created,) = hook.create_sources({"type": "FeatureCollection", "features": [APITEST2]})
    hook.delete_source(created["id"])

    uri = f"meti://{urlsplit(emulator.url).netloc}/sources"
    assert collected_uris(collector) == ([], [uri])
    (info,) = collector.collected_assets.outputs
    assert info.count == 2 and info.context is hook


def test_a_failed_create_reports_nothing(meti_connection, emulator, collector):
    from airflow_provider_meti.exceptions import MetiError

    meti_connection(extra={"max_retries": 0})
    emulator.set_faults(rate=1.0, kinds=["500"], methods=["POST"])
    with pytest.raises(MetiError):
        MetiHook().create_sources({"type": "FeatureCollection", "features": [APITEST2]})
    assert collected_uris(collector) == ([], [])


def test_without_common_compat_the_hook_works_and_reports_nothing(
    meti_connection, emulator, monkeypatch
):
    monkeypatch.setitem(sys.modules, "airflow.providers.common.compat.lineage.hook", None)
    emulator.ledger.seed(2)
    assert len(list(MetiHook().iter_sources())) == 2


def test_without_a_lineage_reader_no_collector_is_built(meti_connection, emulator, monkeypatch):
    plugins = _import("airflow.sdk.plugins_manager")
    if plugins is None or not hasattr(plugins, "get_hook_lineage_readers_plugins"):
        pytest.skip("Airflow 3.2+ tells whether a hook lineage reader is installed")
    from airflow_provider_meti import lineage

    monkeypatch.setattr(plugins, "get_hook_lineage_readers_plugins", lambda: [])
    assert lineage._collector() is None
    emulator.ledger.seed(1)
    assert len(list(MetiHook().iter_sources())) == 1


def test_a_failing_collector_never_fails_the_hook(meti_connection, emulator, monkeypatch):
    from airflow_provider_meti import lineage

    def broken():
        raise RuntimeError("collector trouble")

    monkeypatch.setattr(lineage, "_collector", broken)
    emulator.ledger.seed(2)
    assert len(list(MetiHook().iter_sources())) == 2
