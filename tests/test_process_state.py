"""Library code changes no process-wide state: the garbage collector, warning filters, signal
handlers, logging configuration."""

from __future__ import annotations

import ast
import gc
import threading
from pathlib import Path
from typing import Any

from tests.test_retry_budget import FakeTime, make_client

PACKAGE = Path(__file__).resolve().parent.parent / "airflow_provider_meti"
# The emulator's command line is a program, not library code: it may set up logging and
# handle SIGTERM for itself.
PROGRAMS = {PACKAGE / "emulator" / "cli.py"}
PROCESS_WIDE_CALLS = {
    ("gc", "disable"),
    ("gc", "enable"),
    ("gc", "freeze"),
    ("gc", "set_threshold"),
    ("warnings", "filterwarnings"),
    ("warnings", "simplefilter"),
    ("warnings", "resetwarnings"),
    ("signal", "signal"),
    ("logging", "basicConfig"),
    ("logging", "disable"),
    ("sys", "setswitchinterval"),
    ("socket", "setdefaulttimeout"),
}


def process_wide_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and (owner.id, node.func.attr) in PROCESS_WIDE_CALLS:
                found.append(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} {owner.id}.{node.func.attr}"
                )
    return found


def test_no_library_module_calls_a_process_wide_switch():
    modules = sorted(set(PACKAGE.rglob("*.py")) - PROGRAMS)
    assert len(modules) > 20
    assert [call for path in modules for call in process_wide_calls(path)] == []


def test_the_checker_sees_such_calls():
    sample = PACKAGE / "emulator" / "cli.py"
    assert any("signal.signal" in call for call in process_wide_calls(sample))


def test_decoding_never_touches_the_garbage_collector(emulator, monkeypatch):
    def refuse(*_: Any) -> None:
        raise AssertionError("library code switched the process-wide garbage collector")

    monkeypatch.setattr(gc, "disable", refuse)
    monkeypatch.setattr(gc, "enable", refuse)
    emulator.ledger.seed(60)
    errors: list[BaseException] = []
    with make_client(emulator, 1, FakeTime()) as client:

        def list_all() -> None:
            try:
                assert len(list(client.iter_sources(page_size=7))) == 60
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=list_all) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert gc.isenabled()
