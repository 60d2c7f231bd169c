"""Hooks of one connection share one client and one token whatever their ``max_workers``
(#25.11), and a non-integer ``max_retries`` is a ``MetiConfigError`` naming the extra."""

from __future__ import annotations

import pytest

from airflow_provider_meti.exceptions import MetiConfigError
from airflow_provider_meti.hooks.meti import MetiHook
from tests.api_versions import token_request


def test_hooks_with_and_without_max_workers_share_one_token(
    meti_connection, emulator, meti_api_version
):
    meti_connection()
    hooks = [MetiHook(max_workers=workers) for workers in (None, 8, None, 8, 2, None)]

    for hook in hooks:
        hook.get_token()

    assert len({id(hook.get_conn()) for hook in hooks}) == 1
    assert emulator.stats()["requests"].get(token_request(meti_api_version), 0) == 1


def test_a_hooks_max_workers_still_refuses_a_bad_value(meti_connection):
    meti_connection()
    with pytest.raises(MetiConfigError, match="max_workers"):
        MetiHook(max_workers=0).get_conn()


@pytest.mark.parametrize("value", ["²", "٣", "3.5", "-1", "abc", " ", True, 2.5])
def test_a_max_retries_that_is_no_integer_is_a_config_error_naming_it(meti_connection, value):
    meti_connection(extra={"max_retries": value})
    with pytest.raises(MetiConfigError, match="'max_retries'"):
        MetiHook().get_conn()


@pytest.mark.parametrize(("value", "read"), [("3", 3), (" 7 ", 7), (0, 0), (12, 12)])
def test_a_max_retries_in_ascii_digits_is_read(meti_connection, value, read):
    meti_connection(extra={"max_retries": value})
    assert MetiHook().get_conn().settings.retry.max_retries == read
