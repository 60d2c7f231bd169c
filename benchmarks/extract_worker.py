"""One extract in a fresh process, for section 3: ``python -m benchmarks.extract_worker``.

Arguments: variant (see ``EXTRACTS``), base URL, page size, output path, result path. The
result (JSON) holds wall and CPU seconds of the extract alone, the source count, the
output's size and digest, and the resident set size after the imports and at its peak.

Peak RSS is the kernel's high-water mark (``VmHWM``), reset after the imports: ``ru_maxrss``
cannot be reset, and in a child process it starts at the parent's RSS (inherited across
fork and exec), which hides everything a small extract allocates. It is read, and reset, once
more as the first page is requested, so that the peak of the set-up and the peak of the
paging are told apart: for the provider the set-up is the connection lookup and the client
(with the host token cache's scrypt key derivation, 8 MiB), and its token request falls in
the first page's; the loops fetch their token in the set-up. The wall and CPU seconds from
that moment to the end are the paging's (``paging_wall``, ``paging_cpu``).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.airflow_env import define_meti_connection, task_context


def _memory_kib(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` of this process; ``ru_maxrss`` where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak_rss() -> None:
    """Start the high-water mark afresh (Linux >= 4.0); harmless where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def _extract_with_provider(base_url: str, page_size: int, output: Path) -> int:
    from airflow_provider_meti.operators.meti import MetiListSourcesOperator

    operator = MetiListSourcesOperator(
        task_id="extract",
        meti_conn_id=define_meti_connection(base_url),
        page_size=page_size,
        output_path=str(output),
    )
    return int(operator.execute(task_context())["count"])


def _extract_with_limit(base_url: str, page_size: int, output: Path) -> int:
    from benchmarks.limit_client import LimitClient, write_ndjson

    client = LimitClient(base_url)
    with output.open("w", encoding="utf-8") as handle:
        return write_ndjson(client.pages(page_size), handle)


def _extract_tight(base_url: str, page_size: int, output: Path) -> int:
    from benchmarks.limit_client import TightClient, write_ndjson_tight

    with output.open("wb") as handle:
        return write_ndjson_tight(TightClient(base_url).pages(page_size), handle)


def _extract_msgspec_loop(base_url: str, page_size: int, output: Path) -> int:
    from benchmarks.limit_client import TightClient, write_ndjson_msgspec

    with output.open("wb") as handle:
        return write_ndjson_msgspec(TightClient(base_url).pages(page_size), handle)


def _serve_only(base_url: str, page_size: int, output: Path) -> int:
    from benchmarks.limit_client import TightClient, read_only

    output.write_bytes(b"")
    return read_only(TightClient(base_url), page_size)


class _FirstPageMark:
    """Reads and resets the RSS high-water mark as the first page is requested.

    Wraps the methods the extracts get their pages from (the hook's, the loops'), in this
    process only: a generator's body runs at its first ``next()``, i.e. just before the
    first request for a page.
    """

    def __init__(self) -> None:
        self.setup_peak_kib: int | None = None
        self.started: float | None = None
        self.started_cpu = 0.0

    def install(self, variant: str) -> None:
        if variant.startswith("provider"):
            from airflow_provider_meti.hooks.meti import MetiHook

            for name in ("iter_source_pages", "iter_raw_source_pages"):
                self._wrap(MetiHook, name)
        else:
            from benchmarks.limit_client import LimitClient, TightClient

            self._wrap(LimitClient, "pages")
            self._wrap(TightClient, "page_bodies")

    def _wrap(self, owner: type, name: str) -> None:
        method = getattr(owner, name, None)
        if method is None:  # an older provider (benchmarks.extract_compare runs one)
            return

        def marked(*args: Any, **kwargs: Any) -> Any:
            return self._marked(method(*args, **kwargs))

        setattr(owner, name, marked)

    def _marked(self, pages: Any) -> Any:
        if self.setup_peak_kib is None:
            self.setup_peak_kib = _memory_kib("VmHWM")
            _reset_peak_rss()
            self.started, self.started_cpu = time.perf_counter(), time.process_time()
        yield from pages


class _CollectorClock:
    """The collector's time and collections, through ``gc.callbacks`` (removed on stop)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1


EXTRACTS = {
    "provider": _extract_with_provider,
    # The same operator writing GeoParquet: the output path's .parquet suffix chooses it.
    "provider_parquet": _extract_with_provider,
    "limit": _extract_with_limit,  # the naive loop
    "tight": _extract_tight,
    "msgspec_loop": _extract_msgspec_loop,
    "serve_only": _serve_only,
    "limit_bare": _extract_with_limit,  # the same loop in a process without Airflow
    # With tracemalloc: the peak of Python's own heap, which allocator noise cannot blur
    # (but slower, so these runs are not timed).
    "provider_traced": _extract_with_provider,
    "provider_parquet_traced": _extract_with_provider,
    "limit_traced": _extract_with_limit,
}


def _import_everything(variant: str) -> None:
    import benchmarks.limit_client  # noqa: F401

    if variant == "limit_bare":
        return
    # Both loops run where a task runs: in a process holding Airflow's task runner (which
    # the first connection lookup would otherwise import, billing the extract for it).
    # Airflow's connection lookup imports its secrets cache on first use: Airflow's cost,
    # paid by any task that reads a connection, so loaded here too.
    import airflow.sdk.execution_time.cache
    import airflow.sdk.execution_time.supervisor
    import airflow.sdk.execution_time.task_runner  # noqa: F401
    from airflow.sdk.listener import get_listener_manager

    # The task runner loads the listener plugins as a task starts (on_starting), before
    # execute(): the hook's lineage check asks about those plugins, so load them here too.
    get_listener_manager()

    # The provider's client loads on first use (so that DAG parsing skips it): an import too,
    # excluded like every other (section 5 reports its cost).
    import airflow_provider_meti.client
    import airflow_provider_meti.operators.meti

    if "parquet" in variant:  # pyarrow and shapely: imports too, so excluded likewise
        import airflow_provider_meti.outputs.parquet  # noqa: F401

        # pyarrow imports pandas, where installed, on its first conversion of a Python list
        # (here it is, for the tests' geopandas): an import again, not the extract's cost.
        with contextlib.suppress(ImportError):
            import pandas  # noqa: F401
    from benchmarks.airflow_env import quiet_task_logs

    quiet_task_logs()


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _provider_module() -> str | None:
    """Where the provider was imported from (``extract_compare`` runs an older tree's)."""
    module = sys.modules.get("airflow_provider_meti")
    return getattr(module, "__file__", None)


def main(argv: list[str]) -> int:
    variant, base_url, page_size, output, result = argv
    _import_everything(variant)
    first_page = _FirstPageMark()
    first_page.install(variant)
    gc.collect()
    _reset_peak_rss()
    rss_before = _memory_kib("VmRSS")
    traced = variant.endswith("_traced")
    if traced:
        tracemalloc.start()
    collector = _CollectorClock()
    gc.callbacks.append(collector)
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        count = EXTRACTS[variant](base_url, int(page_size), Path(output))
    finally:
        ended, ended_cpu = time.perf_counter(), time.process_time()
        wall, cpu = ended - wall, ended_cpu - cpu
        gc.callbacks.remove(collector)
    python_peak = tracemalloc.get_traced_memory()[1] // 1024 if traced else None
    paging_peak = _memory_kib("VmHWM")
    setup_peak = first_page.setup_peak_kib or rss_before
    measured: dict[str, Any] = {
        "python_heap_peak_kib": python_peak,
        "variant": variant,
        "count": count,
        "wall": wall,
        "paging_wall": ended - first_page.started if first_page.started else wall,
        "cpu": cpu,
        "paging_cpu": ended_cpu - first_page.started_cpu if first_page.started else cpu,
        "gc_seconds": collector.seconds,
        "gc_collections": collector.collections,
        "rss_after_imports_kib": rss_before,
        "rss_peak_kib": max(setup_peak, paging_peak),
        "rss_setup_peak_kib": setup_peak,
        "rss_paging_peak_kib": paging_peak,
        "bytes": Path(output).stat().st_size,
        "sha256": _digest(Path(output)),
        "provider_module": _provider_module(),
    }
    Path(result).write_text(json.dumps(measured), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
