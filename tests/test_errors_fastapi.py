"""FastAPI's error bodies (#23.4): ``{"detail": "text"}`` and ``{"detail": [{loc, msg,
type}]}`` become ``MetiApiError``s in the server's words, with the items in ``details``; a
403 names the missing scope when the server says which; none is retried."""

from __future__ import annotations

import json
import pickle

import pytest

from airflow_provider_meti.exceptions import MetiApiError
from tests.test_gate_budget import PASSWORD, PATHS, SOURCE, scripted, settings_for, url_of  # noqa: F401

ITEMS = [
    {
        "loc": ["body", "feature_collection", "features", 3, "geometry"],
        "msg": "Geometry is not valid",
        "type": "value_error",
    },
    {
        "loc": ["body", "feature_collection", "features", 5, "properties", "start_at"],
        "msg": "Input should be a valid datetime",
        "type": "datetime_parsing",
    },
]


def answering(status: int, payload: object, headers: dict[str, str] | None = None):
    def script(request) -> None:
        if request.command == "POST":
            request.reply_json(200, {"token": "tok-fastapi", "expires_in": 3600})
            return
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        body = json.dumps(payload).encode()
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return script


def failure(scripted, get_source, status, payload, headers=None) -> tuple[MetiApiError, dict]:  # noqa: F811
    server = scripted(answering(status, payload, headers))
    settings, auth = settings_for(url_of(server), max_retries=3)
    with pytest.raises(MetiApiError) as raised:
        get_source(settings, auth)
    return raised.value, dict(server.seen)


@pytest.mark.parametrize("get_source", PATHS)
def test_a_detail_text_is_quoted(scripted, get_source):  # noqa: F811
    error, seen = failure(scripted, get_source, 409, {"detail": "Source is locked"})
    assert error.status_code == 409
    assert "Source is locked" in str(error)
    assert error.details == []
    assert seen["GET /sources/"] == 1  # never retried


@pytest.mark.parametrize("get_source", PATHS)
def test_a_validation_error_quotes_each_item_and_keeps_them(scripted, get_source):  # noqa: F811
    error, seen = failure(scripted, get_source, 422, {"detail": ITEMS})
    assert error.status_code == 422
    message = str(error)
    assert "body.feature_collection.features.3.geometry: Geometry is not valid" in message
    assert "features.5.properties.start_at: Input should be a valid datetime" in message
    assert error.details == ITEMS
    assert seen["GET /sources/"] == 1


@pytest.mark.parametrize("get_source", PATHS)
def test_a_validation_error_echoing_the_password_is_redacted_everywhere(scripted, get_source):  # noqa: F811
    items = [
        {
            "loc": ["body", "password"],
            "msg": f"bad value {PASSWORD}",
            "type": "x",
            "input": PASSWORD,
        }
    ]
    error, _ = failure(scripted, get_source, 422, {"detail": items})
    assert PASSWORD not in str(error) and PASSWORD not in repr(error.details)


@pytest.mark.parametrize("get_source", PATHS)
def test_a_403_names_the_missing_scope_from_www_authenticate(scripted, get_source):  # noqa: F811
    header = {"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="sources:write"'}
    error, seen = failure(scripted, get_source, 403, {"detail": "Not enough permissions"}, header)
    assert error.status_code == 403
    assert "Not enough permissions" in str(error)
    assert "missing scope: sources:write" in str(error)
    assert seen["GET /sources/"] == 1


@pytest.mark.parametrize("get_source", PATHS)
def test_a_403_names_the_missing_scope_from_the_body(scripted, get_source):  # noqa: F811
    body = {"detail": "Forbidden", "required_scope": "sources:delete"}
    error, _ = failure(scripted, get_source, 403, body)
    assert "missing scope: sources:delete" in str(error)


@pytest.mark.parametrize("get_source", PATHS)
def test_the_v1_status_and_message_form_still_reads(scripted, get_source):  # noqa: F811
    error, _ = failure(scripted, get_source, 400, {"status": "error", "message": "bad id"})
    assert error.status_code == 400 and "bad id" in str(error)


def test_details_survive_pickling():
    error = MetiApiError("invalid", status_code=422, method="POST", path="/sources", details=ITEMS)
    copy = pickle.loads(pickle.dumps(error))
    assert copy.details == ITEMS and str(copy) == str(error)
