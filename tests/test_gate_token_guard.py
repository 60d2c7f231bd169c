"""MetiOperator's token guard (#25.4): an endpoint is resolved against the base URL as
requests will send it, then compared with the token URL(s)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_meti._http import request_url, resolved_target, same_resource
from airflow_provider_meti.exceptions import MetiConfigError
from airflow_provider_meti.operators.meti import MetiOperator

BASE = "http://127.0.0.1:8765/meti/api"


@pytest.mark.parametrize(
    ("endpoint", "sent_to"),
    [
        ("/../api/token", "http://127.0.0.1:8765/meti/api/token"),
        ("/sources/../token", "http://127.0.0.1:8765/meti/api/token"),
        ("/./token", "http://127.0.0.1:8765/meti/api/token"),
        ("/../../token", "http://127.0.0.1:8765/token"),
        ("/sources?x=1", "http://127.0.0.1:8765/meti/api/sources?x=1"),
    ],
)
def test_request_url_resolves_dot_segments_as_requests_sends_them(endpoint, sent_to):
    assert request_url(BASE, endpoint) == sent_to


@pytest.mark.parametrize(
    "spelling",
    [
        "http://127.0.0.1:8765/meti/api/token",
        "http://127.0.0.1:8765/meti//api///token/",
        "http://127.0.0.1:8765/meti/api%2Ftoken",
        "http://127.0.0.1:8765/meti/api/%2e/token",
        "http://127.0.0.1:8765/meti/api/x/%2E%2E/token",
        "http://127.0.0.1:8765/Meti/API/%74oken?x=1#f",
    ],
)
def test_spellings_of_one_resource_compare_equal(spelling):
    assert same_resource(spelling, "http://127.0.0.1:8765/meti/api/token")


def test_another_origin_or_path_is_another_resource():
    token = "http://127.0.0.1:8765/meti/api/token"
    assert not same_resource("http://127.0.0.1:8766/meti/api/token", token)
    assert not same_resource("http://127.0.0.1:8765/meti/api/tokens", token)
    assert resolved_target("https://h/a")[0] == ("https", "h", 443)


@pytest.mark.parametrize(
    "endpoint",
    ["/../api/token", "/sources/../token", "//token", "/%2e%2e/api/token", "/x/..%2Ftoken"],
)
def test_the_operator_refuses_a_token_endpoint_behind_a_base_path(
    endpoint, prefixed_emulator, monkeypatch, task_context
):
    from airflow_provider_meti.hooks import meti as meti_hooks

    monkeypatch.setattr(meti_hooks, "_clients", {})
    base = prefixed_emulator.url.rstrip("/")
    if not base.endswith("/meti/api"):
        base += "/meti/api"
    monkeypatch.setenv(
        "AIRFLOW_CONN_METI_PREFIXED",
        json.dumps(
            {
                "conn_type": "meti",
                "host": base,
                "login": "demo@millpont.com",
                "password": "wrong-but-never-sent",
            }
        ),
    )
    operator = MetiOperator(
        task_id="t", endpoint=endpoint, method="POST", meti_conn_id="meti_prefixed"
    )
    with pytest.raises(MetiConfigError, match="XCom"):
        operator.execute(task_context)
    assert prefixed_emulator.stats()["requests"] == {}
