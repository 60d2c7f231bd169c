"""The connection form offers every extra the provider reads."""

from __future__ import annotations

import ast
import inspect

from airflow_provider_meti import connection, get_provider_info


def extras_read_by_the_provider() -> set[str]:
    """Every extra name ``settings_from_connection`` and its helpers read, found in the code."""
    tree = ast.parse(inspect.getsource(connection))
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        called = (
            function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        )
        reads_extra = (
            called == "get"
            and isinstance(function, ast.Attribute)
            and (getattr(function.value, "id", "") == "extras")
        )
        if reads_extra or called.endswith("_extra"):
            for argument in node.args:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    names.add(argument.value)
                    break
    return names


def test_every_extra_the_provider_reads_is_on_the_connection_form():
    read = extras_read_by_the_provider()
    on_form = set(get_provider_info()["connection-types"][0]["conn-fields"])
    assert {"max_retry_time", "token_refresh_margin", "verify", "token_url"} <= read
    assert read - on_form == set()


def test_the_connection_form_offers_nothing_the_provider_ignores():
    on_form = set(get_provider_info()["connection-types"][0]["conn-fields"])
    assert on_form - extras_read_by_the_provider() == set()
