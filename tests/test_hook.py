"""MetiHook: connections in every form Airflow offers, the form metadata, test_connection."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from airflow_provider_meti import get_provider_info
from airflow_provider_meti.exceptions import MetiConfigError
from airflow_provider_meti.hooks.meti import MetiHook
from tests.api_versions import SECRETS, add_credentials, token_request
from tests.features import collection, square_feature

SPECIAL_PASSWORD = "p@ss:w/rd %&?#x"
SPECIAL_EMAIL = "data+eng@example.com"


def set_json_connection(monkeypatch, conn_id: str = "meti_default", **fields) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "meti", **fields})
    )


def test_provider_info_validates_against_airflows_schema():
    import jsonschema
    from airflow.providers_manager import _create_provider_info_schema_validator

    info = get_provider_info()
    _create_provider_info_schema_validator().validate(info)
    assert info["package-name"] == "airflow-provider-meti"
    (conn_type,) = info["connection-types"]
    assert conn_type["hook-class-name"] == "airflow_provider_meti.hooks.meti.MetiHook"
    assert conn_type["connection-type"] == MetiHook.conn_type
    assert jsonschema  # the validator above is jsonschema's


def test_hook_form_metadata_matches_provider_info():
    behaviour = MetiHook.get_ui_field_behaviour()
    assert behaviour["hidden_fields"] == ["schema", "port"]
    assert behaviour["relabeling"]["login"].startswith("Email")
    assert behaviour["placeholders"]["host"] == "https://api.meti.millpont.com"


def test_json_connection_with_special_characters(meti_connection, meti_api_version, emulator):
    add_credentials(emulator, meti_api_version, SPECIAL_EMAIL, SPECIAL_PASSWORD)
    meti_connection(login=SPECIAL_EMAIL, password=SPECIAL_PASSWORD)
    hook = MetiHook()
    created = hook.create_sources(collection(square_feature("A")))
    assert hook.get_source(created[0]["id"])["alt_id"] == "A"


def test_uri_connection_with_percent_encoded_password(emulator, monkeypatch):
    emulator.add_user(SPECIAL_EMAIL, SPECIAL_PASSWORD)
    host = emulator.url.removeprefix("http://")
    uri = f"meti://http://{quote(SPECIAL_EMAIL, safe='')}:{quote(SPECIAL_PASSWORD, safe='')}@{host}"
    monkeypatch.setenv("AIRFLOW_CONN_METI_URI", uri)
    hook = MetiHook("meti_uri")
    assert hook.test_connection()[0] is True
    assert hook.get_conn().settings.base_url == emulator.url


def test_uri_connection_with_path_prefix(prefixed_emulator, monkeypatch):
    host = prefixed_emulator.url.removeprefix("http://")
    monkeypatch.setenv(
        "AIRFLOW_CONN_METI_PREFIXED",
        f"meti://http://demo%40meti.local:demo-password@{host}/meti/api",
    )
    hook = MetiHook("meti_prefixed")
    assert hook.get_conn().settings.base_url == prefixed_emulator.url + "/meti/api"
    assert hook.create_sources(collection(square_feature("A")))[0]["alt_id"] == "A"


def test_empty_host_means_the_real_service():
    from airflow_provider_meti.api import API_V1
    from airflow_provider_meti.hooks.meti import client_settings_from_connection

    class Conn:
        host = ""
        port = None
        schema = None
        login = "a"
        password = "b"
        extra_dejson: dict = {}

    parts = client_settings_from_connection(Conn())
    assert parts.settings.base_url == API_V1.default_base_url == "https://api.meti.millpont.com"


def test_extras_are_read_and_validated(meti_connection):
    meti_connection(
        extra={"timeout": "7.5", "max_retries": 2, "extra__meti__token_refresh_margin": 5}
    )
    client = MetiHook().get_conn()
    assert client.settings.timeout == 7.5
    assert client.settings.retry.max_retries == 2
    assert client.settings.token_refresh_margin == 5


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": "nan"}, "timeout"),
        ({"timeout": "inf"}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -5}, "timeout"),
        ({"max_retry_time": "inf"}, "max_retry_time"),
        ({"max_retry_time": "-inf"}, "max_retry_time"),
        ({"max_retry_time": "NaN"}, "max_retry_time"),
        ({"token_refresh_margin": "nan"}, "token_refresh_margin"),
        ({"timeout": True}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"api_version": 3}, "api_version"),
        ({"allow_insecure_http": "maybe"}, "allow_insecure_http"),
        ({"verify": "/no/such/ca.pem"}, "verify"),
    ],
)
def test_bad_extras_name_the_field(monkeypatch, extra, named):
    set_json_connection(
        monkeypatch, host="https://api.meti.millpont.com", login="a", password="b", extra=extra
    )
    with pytest.raises(MetiConfigError, match=named):
        MetiHook().get_conn()


def test_a_changed_connection_replaces_and_closes_its_old_client(meti_connection, emulator):
    old = MetiHook().get_conn()
    closed: list[str] = []
    old.close = lambda: closed.append("old")  # type: ignore[method-assign]
    meti_connection(extra={"timeout": 9})  # e.g. a rotated secret
    new = MetiHook().get_conn()
    assert new is not old and new.settings.timeout == 9
    assert closed == ["old"]
    assert MetiHook().get_conn() is new


def test_the_shared_clients_are_bounded_and_the_dropped_ones_closed(meti_connection, monkeypatch):
    from airflow_provider_meti.hooks import meti as meti_hooks

    assert meti_hooks.MAX_SHARED_CLIENTS == 32
    monkeypatch.setattr(meti_hooks, "MAX_SHARED_CLIENTS", 3)
    closed: list[str] = []
    clients = {}
    for name in ("a", "b", "c", "d", "e"):
        meti_connection(f"meti_{name}")
        client = clients[name] = MetiHook(f"meti_{name}").get_conn()
        client.close = lambda name=name: closed.append(name)  # type: ignore[method-assign]
        if name == "c":
            MetiHook("meti_a").get_conn()  # a used again: b is now the least recently used
    assert closed == ["b", "c"]
    assert len(meti_hooks._clients) == 3
    assert MetiHook("meti_a").get_conn() is clients["a"]


def test_hooks_of_one_connection_share_a_client_and_its_token(meti_connection, emulator):
    first, second = MetiHook(), MetiHook()
    assert first.get_conn() is second.get_conn()
    first.get_token()
    second.get_token()
    assert emulator.stats()["token_requests"] == 1


def test_test_connection_success_asks_only_for_a_token(meti_connection, meti_api_version, emulator):
    ok, message = MetiHook().test_connection()
    assert ok, message
    stats = emulator.stats()
    assert stats["token_requests"] == 1
    assert list(stats["requests"]) == [token_request(meti_api_version)]


def test_test_connection_failure_hides_the_password(meti_connection):
    meti_connection(password="s3cret-Wrong!")
    ok, message = MetiHook().test_connection()
    assert not ok
    assert "authentication failed" in message
    assert "s3cret-Wrong!" not in message


def test_new_tokens_are_registered_with_the_secret_masker(meti_connection):
    from tests.airflow_compat import redact

    token = MetiHook().get_token()
    assert token not in str(redact(f"Authorization: Bearer {token}"))


def test_hook_repr_and_errors_hold_no_secrets(meti_connection):
    hook = MetiHook()
    token = hook.get_token()
    for text in (repr(hook), repr(hook.get_conn())):
        assert token not in text
        assert not any(secret in text for secret in SECRETS)
