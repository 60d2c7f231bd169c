"""Memory after each page of one NDJSON extract: ``python -m benchmarks.extract_pages``.

Runs the provider's extract (``MetiListSourcesOperator`` to NDJSON) in a fresh process and
reads, after each page is written: the RSS over the RSS after the imports, glibc's heap
(``mallinfo2``: the main heap's size, what is in use and free in it, the mmapped blocks),
the resident part of the ``[heap]`` mapping and of the anonymous mappings (where pymalloc's
arenas live) from ``/proc/self/smaps``, the output buffer's length and allocation, and with
``--traced`` the peak of Python's own heap during the page (``tracemalloc``, slower). With
``--before`` the other tree's provider is imported (as in ``extract_compare``). Linux only.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

KIB = 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _malloc_state() -> dict[str, int]:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return {
        "heap_kib": info.arena // KIB,
        "heap_in_use_kib": info.uordblks // KIB,
        "heap_free_kib": info.fordblks // KIB,
        "mmapped_blocks": info.hblks,
        "mmapped_kib": info.hblkhd // KIB,
    }


def _resident() -> dict[str, int]:
    """Resident KiB of the ``[heap]`` mapping and of anonymous mappings."""
    heap = anonymous = 0
    kind = ""
    with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
        for line in smaps:
            fields = line.split()
            if fields and "-" in fields[0] and not fields[0].endswith(":"):
                kind = "heap" if fields[-1] == "[heap]" else "anon" if len(fields) == 5 else ""
            elif fields and fields[0] == "Rss:":
                if kind == "heap":
                    heap += int(fields[1])
                elif kind == "anon":
                    anonymous += int(fields[1])
    return {"heap_rss_kib": heap, "anon_rss_kib": anonymous}


def _child(base_url: str, output: Path, traced: bool) -> None:
    from benchmarks import extract_worker as worker

    worker._import_everything("provider")
    import airflow_provider_meti.outputs.raw_features as raw_features

    rows: list[dict[str, Any]] = []
    encode = raw_features.encode_raw_features

    def probed(sources: Any, buffer: bytearray, separator: bytes) -> None:
        encode(sources, buffer, separator)
        row = {
            "rss_kib": worker._memory_kib("VmRSS"),
            "buffer_len": len(buffer),
            "buffer_alloc": sys.getsizeof(buffer),
            **_malloc_state(),
            **_resident(),
        }
        if traced:
            row["python_peak_kib"] = tracemalloc.get_traced_memory()[1] // KIB
            tracemalloc.reset_peak()
        rows.append(row)

    raw_features.encode_raw_features = probed  # looked up by name on each page
    gc.collect()
    after_imports = worker._memory_kib("VmRSS")
    if traced:
        tracemalloc.start()
    worker._extract_with_provider(base_url, 1000, output)
    module = sys.modules["airflow_provider_meti"].__file__
    print(json.dumps({"after_imports_kib": after_imports, "rows": rows, "provider": module}))


def _report(measured: dict[str, Any]) -> str:
    base = measured["after_imports_kib"]
    rows = measured["rows"]
    lines = [
        f"provider: {measured['provider']}",
        "",
        "| page | RSS growth MiB | [heap] resident MiB | anonymous resident MiB | glibc heap "
        "MiB (in use / free) | mmapped blocks (MiB) | output buffer MB (allocated) "
        "| Python heap peak MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first = rows[0]
    shown = sorted({0, 1, 2, 3, 5, 10, 20, 50, len(rows) - 1} & set(range(len(rows))))
    for index in shown:
        row = rows[index]
        peak = row.get("python_peak_kib")
        lines.append(
            f"| {index + 1} | {(row['rss_kib'] - base) / KIB:.2f} "
            f"| +{(row['heap_rss_kib'] - first['heap_rss_kib']) / KIB:.2f} "
            f"| +{(row['anon_rss_kib'] - first['anon_rss_kib']) / KIB:.2f} "
            f"| {row['heap_kib'] / KIB:.1f} ({row['heap_in_use_kib'] / KIB:.1f} / "
            f"{row['heap_free_kib'] / KIB:.1f}) "
            f"| {row['mmapped_blocks']} ({row['mmapped_kib'] / KIB:.1f}) "
            f"| {row['buffer_len'] / 1e6:.2f} ({row['buffer_alloc'] / 1e6:.2f}) "
            f"| {'' if peak is None else f'{peak / KIB:.2f}'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.extract_pages", description=__doc__)
    parser.add_argument("--sources", type=int, default=100_000)
    parser.add_argument("--traced", action="store_true", help="Python's heap peak per page too")
    parser.add_argument("--before", type=Path, help="another checkout of the provider")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], Path(args.child[1]), args.traced)
        return 0
    from benchmarks.emulator_process import EmulatorProcess
    from benchmarks.extract import _warm_emulator
    from benchmarks.extract_compare import _environment

    with EmulatorProcess() as emulator, tempfile.TemporaryDirectory(prefix="meti-pages-") as tmp:
        emulator.fresh(sources=args.sources)
        _warm_emulator(emulator)
        before = args.before.resolve() if args.before else None
        command = [sys.executable, "-m", "benchmarks.extract_pages"]
        command += ["--child", emulator.url, f"{tmp}/out.ndjson"]
        command += ["--traced"] if args.traced else []
        # Not from the repository: "-m" puts the working directory first on sys.path.
        out = subprocess.run(
            command,
            env=_environment(before, Path(tmp)),
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    print(_report(json.loads(out.strip().splitlines()[-1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
