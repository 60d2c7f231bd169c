"""The example DAGs import only the provider's public modules.

People copy example DAGs into their own projects; a private module (any path component
starting with ``_``, such as ``airflow_provider_meti._compat``) may change without notice.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

EXAMPLE_DAGS = Path(__file__).resolve().parents[1] / "example_dags"
PACKAGE = "airflow_provider_meti"


def imported_modules(tree: ast.AST) -> list[str]:
    """Every module an ``import`` names, and for ``from m import n`` both ``m`` and ``m.n``.

    ``m.n`` is included because ``from airflow_provider_meti import _compat`` imports a
    private module by its attribute name.
    """
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a relative import: an example DAG has no package to be relative to
                modules.append("." * node.level + (node.module or ""))
                continue
            module = node.module or ""
            modules.append(module)
            modules.extend(f"{module}.{alias.name}" for alias in node.names)
    return modules


def private_provider_modules(source: str) -> list[str]:
    """The provider modules ``source`` imports whose path has a component starting with ``_``."""
    found = []
    for module in imported_modules(ast.parse(source)):
        parts = module.split(".")
        if module.startswith(".") or (
            parts[0] == PACKAGE and any(part.startswith("_") for part in parts)
        ):
            found.append(module)
    return found


def example_dag_files() -> list[Path]:
    return sorted(EXAMPLE_DAGS.glob("*.py"))


def test_there_are_example_dags_to_check():
    assert len(example_dag_files()) >= 3


@pytest.mark.parametrize("path", example_dag_files(), ids=lambda path: path.name)
def test_example_dag_imports_no_private_provider_module(path):
    assert private_provider_modules(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "from airflow_provider_meti._compat import dag",
        "import airflow_provider_meti._compat",
        "from airflow_provider_meti import _compat",
        "from airflow_provider_meti._http import join_url",
        "from airflow_provider_meti.operators._internal import x",
        "from .helpers import x",
        "def f():\n    from airflow_provider_meti._compat import task\n",
        "try:\n    import x\nexcept ImportError:\n    import airflow_provider_meti._compat\n",
    ],
)
def test_private_imports_are_found(source):
    assert private_provider_modules(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "from airflow.sdk import dag, task",
        "from airflow_provider_meti.operators.meti import MetiOperator",
        "from airflow_provider_meti.hooks.meti import MetiHook",
        "import airflow_provider_meti",
        "from airflow.models.param import Param",
        "from airflow.sdk.definitions._internal import x",  # not the provider's business
    ],
)
def test_public_imports_pass(source):
    assert private_provider_modules(source) == []
