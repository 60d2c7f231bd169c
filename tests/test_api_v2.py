"""METI API v2: OAuth2 client credentials, path-style routes, batched creates, delete by alt_id
and account scoping; the emulator's token endpoint; and v1 left exactly as it was."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from airflow_provider_meti.api import API_V1, API_V2, api_version
from airflow_provider_meti.auth import DEFAULT_AUDIENCE
from airflow_provider_meti.client import ClientSettings, MetiClient
from airflow_provider_meti.emulator import MetiEmulator
from airflow_provider_meti.emulator.credentials import jwt_claims
from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiAuthError,
    MetiConfigError,
    MetiNotFoundError,
)
from airflow_provider_meti.hooks.meti import MetiHook, client_settings_from_connection
from airflow_provider_meti.operators.meti import MetiDeleteSourceOperator
from airflow_provider_meti.retries import RetryPolicy
from tests.airflow_context import (
    METI_CLIENT_ID,
    METI_CLIENT_SECRET,
    METI_EMAIL,
    METI_PASSWORD,
    make_context,
)
from tests.api_versions import v1_only, v2_only
from tests.features import collection, square_feature

REPO_ROOT = Path(__file__).resolve().parents[1]
TENANT_TOKEN_URL = "https://tenant.test/oauth/token"
API_BASE = API_V2.default_base_url
FAST_RETRY = RetryPolicy(max_retries=2, max_retry_time=10, initial_wait=0.01, max_wait=0.02)
NO_RETRY = RetryPolicy(max_retries=0)
OTHER_ACCOUNT = "acct_other"


def v2_client(
    emulator: MetiEmulator,
    client_id: str = METI_CLIENT_ID,
    client_secret: str = METI_CLIENT_SECRET,
    **token_options: Any,
) -> MetiClient:
    """A v2 client of the emulator, as a v2 connection would build it."""
    token_source = API_V2.token_source(
        emulator.url, client_id, client_secret, token_url=emulator.token_url, **token_options
    )
    settings = ClientSettings(base_url=emulator.url, timeout=5, retry=FAST_RETRY)
    return MetiClient(settings, token_source, api=API_V2)


def requests_seen(emulator: MetiEmulator) -> dict[str, int]:
    return emulator.stats()["requests"]


def oauth_token(emulator: MetiEmulator, **body: str) -> requests.Response:
    fields = {
        "grant_type": "client_credentials",
        "client_id": METI_CLIENT_ID,
        "client_secret": METI_CLIENT_SECRET,
        "audience": DEFAULT_AUDIENCE,
    }
    return requests.post(emulator.token_url, json={**fields, **body}, timeout=10)


class Connection:
    """Just the fields ``client_settings_from_connection`` reads."""

    def __init__(self, **fields: Any) -> None:
        self.host = fields.get("host", "")
        self.port = None
        self.schema = None
        self.login = fields.get("login", "client")
        self.password = fields.get("password", "secret")
        self.extra_dejson = fields.get("extra", {})


# --- the token request ----------------------------------------------------------------------


@responses.activate
def test_token_request_is_an_oauth2_client_credentials_grant():
    responses.add(
        responses.POST,
        TENANT_TOKEN_URL,
        json={
            "access_token": "tok-v2-abc",
            "expires_in": 86400,
            "token_type": "Bearer",
            "scope": "read:sources write:sources delete:sources",
        },
    )
    responses.add(responses.GET, f"{API_BASE}/sources/src_1", json={"id": "src_1"})
    token_source = API_V2.token_source(API_BASE, "cid", "csecret", token_url=TENANT_TOKEN_URL)
    with MetiClient(
        ClientSettings(base_url=API_BASE, retry=NO_RETRY), token_source, api=API_V2
    ) as client:
        assert client.get_source("src_1") == {"id": "src_1"}
    token_call, source_call = responses.calls
    assert json.loads(token_call.request.body) == {
        "client_id": "cid",
        "client_secret": "csecret",
        "audience": "https://api.meti.millpont.com",
        "grant_type": "client_credentials",
    }
    assert token_call.request.headers["Content-Type"] == "application/json"
    assert source_call.request.headers["Authorization"] == "Bearer tok-v2-abc"


@responses.activate
@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "access_denied", "error_description": "Unauthorized"}),
        (403, {"error": "access_denied", "error_description": "Service not found: https://x"}),
        (400, {"error": "invalid_request", "error_description": "Missing required parameter"}),
    ],
)
def test_auth0_errors_become_auth_errors_with_the_description_and_without_the_secret(status, body):
    responses.add(responses.POST, TENANT_TOKEN_URL, status=status, json=body)
    token_source = API_V2.token_source(API_BASE, "cid", "csecret", token_url=TENANT_TOKEN_URL)
    client = MetiClient(ClientSettings(base_url=API_BASE, retry=NO_RETRY), token_source, api=API_V2)
    with pytest.raises(MetiAuthError) as caught:
        client.get_token()
    assert body["error_description"] in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)
    assert "csecret" not in str(caught.value)
    assert len(responses.calls) == 1  # rejected credentials are not retried


def test_wrong_client_secret_against_the_emulator(emulator):
    with v2_client(emulator, client_secret="not-the-secret") as client:
        with pytest.raises(MetiAuthError, match=r"HTTP 401.*Unauthorized") as caught:
            client.get_token()
    assert "not-the-secret" not in str(caught.value)
    assert emulator.stats()["token_requests"] == 1


def test_wrong_audience_is_refused_by_the_emulator(emulator):
    with v2_client(emulator, audience="https://elsewhere.example") as client:
        with pytest.raises(
            MetiAuthError, match=re.escape("Service not found: https://elsewhere.example")
        ):
            client.get_token()


# --- connection settings --------------------------------------------------------------------


def test_a_v2_connection_without_token_url_names_the_missing_extra(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_METI_DEFAULT",
        json.dumps(
            {"conn_type": "meti", "login": "cid", "password": "cs", "extra": {"api_version": 2}}
        ),
    )
    with pytest.raises(MetiConfigError, match="token_url"):
        MetiHook().get_conn()
    ok, message = MetiHook().test_connection()
    assert not ok and "token_url" in message


def test_v2_defaults_host_and_audience():
    parts = client_settings_from_connection(
        Connection(extra={"api_version": "2", "token_url": TENANT_TOKEN_URL})
    )
    assert parts.api is API_V2
    assert parts.settings.base_url == "https://api.millpont.com"
    token_source = API_V2.token_source(
        parts.settings.base_url, "cid", "cs", token_url=parts.token_url
    )
    assert token_source.audience == "https://api.meti.millpont.com"  # type: ignore[attr-defined]


def test_v2_needs_a_client_id_and_secret():
    with pytest.raises(MetiConfigError, match="client id and client secret"):
        API_V2.token_source(API_BASE, "", "", token_url=TENANT_TOKEN_URL)


def test_v2_token_url_must_be_https_unless_loopback():
    with pytest.raises(MetiConfigError, match="token_url"):
        API_V2.token_source(API_BASE, "cid", "cs", token_url="http://tenant.example/oauth/token")


def test_v2_connection_in_uri_form(emulator, monkeypatch):
    host = emulator.url.removeprefix("http://")
    token_url = requests.utils.quote(emulator.token_url, safe="")
    monkeypatch.setenv(
        "AIRFLOW_CONN_METI_V2",
        f"meti://http://{METI_CLIENT_ID}:{METI_CLIENT_SECRET}@{host}"
        f"?api_version=2&token_url={token_url}",
    )
    hook = MetiHook("meti_v2")
    assert hook.test_connection()[0] is True
    assert hook.get_conn().api is API_V2
    assert "POST /oauth/token" in requests_seen(emulator)


# --- endpoints through the hook, v2 only ----------------------------------------------------


@v2_only
def test_v2_addresses_one_source_by_path(meti_connection, emulator):
    hook = MetiHook()
    (created,) = hook.create_sources(collection(square_feature("A")))
    source_id = created["id"]
    assert hook.get_source(source_id)["alt_id"] == "A"
    hook.delete_source(source_id)
    with pytest.raises(MetiNotFoundError):
        hook.get_source(source_id)
    seen = requests_seen(emulator)
    assert seen[f"GET /sources/{source_id}"] == 2
    assert seen[f"DELETE /sources/{source_id}"] == 1
    assert "GET /sources/" not in seen


@v2_only
def test_v2_creates_250_features_in_three_posts(meti_connection, emulator):
    features = [square_feature(f"F-{i:03}", x=i % 50, y=i // 50) for i in range(250)]
    created = MetiHook().create_sources(collection(*features), batch_size=100)
    assert [item["alt_id"] for item in created] == [feature["id"] for feature in features]
    assert requests_seen(emulator)["POST /sources"] == 3
    stored = {source["id"]: source["alt_id"] for source in emulator.ledger.all()}
    assert {item["id"]: item["alt_id"] for item in created} == stored


@v2_only
def test_v2_batch_size_defaults_to_100(meti_connection, emulator):
    features = [square_feature(f"F-{i:03}", x=i % 50, y=i // 50) for i in range(101)]
    MetiHook().create_sources(collection(*features))
    assert requests_seen(emulator)["POST /sources"] == 2


@v2_only
def test_v2_deletes_every_source_with_an_alt_id(meti_connection, emulator, task_context):
    hook = MetiHook()
    hook.create_sources(collection(square_feature("TWICE"), square_feature("KEEP", x=2)))
    hook.create_sources(collection(square_feature("TWICE", x=4)))
    hook.delete_source(alt_id="TWICE")
    assert [source["alt_id"] for source in emulator.ledger.all()] == ["KEEP"]
    assert requests_seen(emulator)["DELETE /sources"] == 1
    with pytest.raises(MetiNotFoundError):
        hook.delete_source(alt_id="TWICE")
    hook.delete_source(alt_id="TWICE", missing_ok=True)


@v2_only
def test_delete_operator_by_alt_id(meti_connection, emulator, task_context):
    emulator.ledger.create(collection(square_feature("GONE"), square_feature("STAYS", x=2)))
    operator = MetiDeleteSourceOperator(task_id="d", alt_id="{{ params.alt_id }}")
    operator.render_template_fields({**task_context, "params": {"alt_id": "GONE"}})
    operator.execute(task_context)
    assert [source["alt_id"] for source in emulator.ledger.all()] == ["STAYS"]
    with pytest.raises(MetiNotFoundError):  # missing_ok defaults to False
        operator.execute(task_context)
    operator.execute(make_context(try_number=2))  # a retried try: an earlier one deleted it


@v2_only
def test_v2_lists_with_the_documented_filters(meti_connection, emulator):
    emulator.ledger.seed(3, methodology="m1", steward_id="s1", project_id="p1")
    emulator.ledger.seed(2, methodology="m1", steward_id="s2", project_id="p1")
    emulator.ledger.seed(4, methodology="m2", project_id="p2", outcome_reporting_year=2024)
    hook = MetiHook()
    assert len(list(hook.iter_sources(methodology="m1", project_id="p1"))) == 5
    assert len(list(hook.iter_sources(steward_id="s2"))) == 2
    assert len(list(hook.iter_sources(outcome_reporting_year=2024, page_size=3))) == 4
    assert len(list(hook.iter_sources(page_size=4))) == 9


@v2_only
def test_an_expired_v2_token_is_renewed_and_the_request_replayed(meti_connection, emulator):
    hook = MetiHook()
    (created,) = hook.create_sources(collection(square_feature("A")))
    emulator.expire_all_tokens()
    assert hook.get_source(created["id"])["id"] == created["id"]
    assert emulator.stats()["tokens_issued"] == 2
    assert requests_seen(emulator)["POST /oauth/token"] == 2


# --- v1 stays exactly as it was -------------------------------------------------------------


@v1_only
def test_a_v1_connection_speaks_v1(meti_connection, emulator):
    hook = MetiHook()
    assert hook.get_conn().api is API_V1
    created = hook.create_sources(
        collection(*(square_feature(f"F-{i}", x=i) for i in range(3))), batch_size=100
    )
    hook.get_source(created[0]["id"])
    hook.delete_source(created[0]["id"])
    assert requests_seen(emulator) == {
        "POST /token": 1,
        "POST /sources": 3,  # one feature per POST, whatever batch_size asks
        "GET /sources/": 1,
        "DELETE /sources/": 1,
    }
    with pytest.raises(MetiConfigError, match="v1 cannot delete by alt_id"):
        hook.delete_source(alt_id="F-1")


@responses.activate
def test_v1_token_request_and_source_route_are_unchanged():
    responses.add(
        responses.POST,
        "https://api.meti.millpont.com/token",
        json={"token": "t1", "expires_in": 60},
    )
    responses.add(responses.GET, "https://api.meti.millpont.com/sources/", json={"id": "src_1"})
    parts = client_settings_from_connection(Connection(login="a@b.c", password="pw"))
    assert parts.api is API_V1
    token_source = API_V1.token_source(parts.settings.base_url, "a@b.c", "pw")
    settings = ClientSettings(base_url=parts.settings.base_url, retry=NO_RETRY)
    MetiClient(settings, token_source).get_source("src_1")
    token_call, source_call = responses.calls
    assert json.loads(token_call.request.body) == {"email": "a@b.c", "password": "pw"}
    assert source_call.request.url == "https://api.meti.millpont.com/sources/?id=src_1"


@pytest.mark.parametrize("number", [1, "1", 2, "2"])
def test_api_version_accepts_numbers_and_strings(number):
    assert api_version(number).number == int(number)


# --- accounts -------------------------------------------------------------------------------


def test_each_account_sees_only_its_own_sources(emulator):
    emulator.add_client("other-client", "other-secret", account_id=OTHER_ACCOUNT)
    emulator.add_user("v1@other.example", "v1-password", account_id="acct_v1")
    with v2_client(emulator) as mine, v2_client(emulator, "other-client", "other-secret") as theirs:
        (my_source,) = mine.create_sources(collection(square_feature("MINE")))
        (their_source,) = theirs.create_sources(collection(square_feature("THEIRS", x=3)))
        assert [s["alt_id"] for s in mine.iter_sources()] == ["MINE"]
        assert [s["alt_id"] for s in theirs.iter_sources()] == ["THEIRS"]
        with pytest.raises(MetiNotFoundError):
            mine.get_source(their_source["id"])
        with pytest.raises(MetiNotFoundError):
            mine.delete_source(their_source["id"])
        with pytest.raises(MetiNotFoundError):
            mine.delete_source(alt_id="THEIRS")
    assert emulator.ledger.account_of(my_source["id"]) == "acct_demo"
    assert emulator.ledger.account_of(their_source["id"]) == OTHER_ACCOUNT
    v1_token = requests.post(
        f"{emulator.url}/token",
        json={"email": "v1@other.example", "password": "v1-password"},
        timeout=10,
    ).json()["token"]
    listing = requests.get(
        f"{emulator.url}/sources", headers={"Authorization": f"Bearer {v1_token}"}, timeout=10
    )
    assert listing.json() == []


def test_conflicts_are_found_across_accounts(emulator):
    emulator.add_client("other-client", "other-secret", account_id=OTHER_ACCOUNT)
    with v2_client(emulator) as mine, v2_client(emulator, "other-client", "other-secret") as theirs:
        (my_source,) = mine.create_sources(collection(square_feature("MINE")))
        (their_source,) = theirs.create_sources(collection(square_feature("THEIRS", y=0.1)))
        assert mine.get_source(my_source["id"])["conflict_with"] == [their_source["id"]]


def test_v1_users_and_v2_clients_of_one_account_share_its_sources(emulator):
    emulator.ledger.create(collection(square_feature("STEERED")))
    with v2_client(emulator) as client:
        assert [s["alt_id"] for s in client.iter_sources()] == ["STEERED"]
    token = requests.post(
        f"{emulator.url}/token", json={"email": METI_EMAIL, "password": METI_PASSWORD}, timeout=10
    ).json()["token"]
    listing = requests.get(
        f"{emulator.url}/sources", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert [s["alt_id"] for s in listing.json()] == ["STEERED"]


def test_seeding_into_another_account(emulator):
    emulator.ledger.seed(3, account_id=OTHER_ACCOUNT)
    reply = requests.post(
        f"{emulator.url}/_emulator/seed", json={"count": 2, "account_id": OTHER_ACCOUNT}, timeout=10
    )
    assert reply.status_code == 201
    assert emulator.ledger.count(account_id=OTHER_ACCOUNT) == 5
    with v2_client(emulator) as client:
        assert list(client.iter_sources()) == []


# --- the emulator's token endpoint ----------------------------------------------------------


def test_the_emulator_issues_auth0_style_tokens_carrying_the_account(emulator):
    emulator.token_ttl = 120
    reply = oauth_token(emulator)
    assert reply.status_code == 200
    body = reply.json()
    assert body["expires_in"] == 120
    assert (body["token_type"], body["scope"]) == (
        "Bearer",
        "read:sources write:sources delete:sources",
    )
    claims = jwt_claims(body["access_token"])
    assert claims["account_id"] == "acct_demo"
    assert claims["aud"] == DEFAULT_AUDIENCE
    assert claims["sub"] == f"{METI_CLIENT_ID}@clients"
    assert claims["exp"] - claims["iat"] == 120


@pytest.mark.parametrize(
    ("body", "status", "error", "description"),
    [
        ({"client_secret": "wrong"}, 401, "access_denied", "Unauthorized"),
        ({"client_id": "nobody"}, 401, "access_denied", "Unauthorized"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", "password"),
        ({"client_id": ""}, 400, "invalid_request", "client_id"),
        ({"audience": ""}, 400, "invalid_request", "audience"),
        ({"grant_type": ""}, 400, "invalid_request", "grant_type"),
        ({"audience": "https://x.example"}, 403, "access_denied", "Service not found"),
    ],
)
def test_the_emulator_answers_token_errors_like_auth0(emulator, body, status, error, description):
    reply = oauth_token(emulator, **body)
    assert reply.status_code == status
    assert set(reply.json()) == {"error", "error_description"}
    assert reply.json()["error"] == error
    assert description in reply.json()["error_description"]
    assert emulator.stats()["tokens_issued"] == 0


def test_the_emulator_accepts_a_form_encoded_token_request(emulator):
    reply = requests.post(
        emulator.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": METI_CLIENT_ID,
            "client_secret": METI_CLIENT_SECRET,
            "audience": DEFAULT_AUDIENCE,
        },
        timeout=10,
    )
    assert reply.status_code == 200 and reply.json()["access_token"]


def test_a_body_that_is_not_json_is_an_invalid_request(emulator):
    reply = requests.post(emulator.token_url, data=b"{nope", timeout=10)
    assert (reply.status_code, reply.json()["error"]) == (400, "invalid_request")


def test_the_token_endpoint_answers_beside_a_base_path(prefixed_emulator):
    assert oauth_token(prefixed_emulator).status_code == 200
    with v2_client(prefixed_emulator) as client:
        client.get_token()


def test_the_emulator_audience_can_be_changed():
    with MetiEmulator(audience="https://api.example.test") as meti:
        assert oauth_token(meti).status_code == 403
        assert oauth_token(meti, audience="https://api.example.test").status_code == 200


def test_the_cli_takes_client_credentials():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_meti.emulator",
            "--port",
            "0",
            "--client-id",
            "cli-client",
            "--client-secret",
            "cli-secret",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        first = process.stdout.readline() if process.stdout else ""
        second = process.stdout.readline() if process.stdout else ""
        assert re.fullmatch(r"METI emulator serving on http://127\.0\.0\.1:\d+\n", first), first
        match = re.fullmatch(r"OAuth2 token endpoint \(API v2\): (\S+)\n", second)
        assert match, second
        body = {
            "grant_type": "client_credentials",
            "client_id": "cli-client",
            "client_secret": "cli-secret",
            "audience": DEFAULT_AUDIENCE,
        }
        assert requests.post(match.group(1), json=body, timeout=10).status_code == 200
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "cli-secret" not in stderr


# --- create responses the client accepts ------------------------------------------------------


def two_features() -> dict[str, Any]:
    return collection(square_feature("A"), square_feature("B", x=1))


BOTH_CREATED = [{"id": "src_A", "alt_id": "A"}, {"id": "src_B", "alt_id": "B"}]


def tenant_client() -> MetiClient:
    """A v2 client of the fake tenant and API that ``responses`` serves."""
    responses.add(responses.POST, TENANT_TOKEN_URL, json={"access_token": "t", "expires_in": 60})
    token_source = API_V2.token_source(API_BASE, "cid", "cs", token_url=TENANT_TOKEN_URL)
    return MetiClient(ClientSettings(base_url=API_BASE, retry=NO_RETRY), token_source, api=API_V2)


@responses.activate
@pytest.mark.parametrize(
    "body",
    [
        list(reversed(BOTH_CREATED)),
        {"data": BOTH_CREATED},
        {"sources": BOTH_CREATED},
        {"items": BOTH_CREATED},
        {"results": BOTH_CREATED, "total": 2},
    ],
)
def test_batch_create_responses_are_mapped_by_alt_id(body):
    client = tenant_client()
    responses.add(responses.POST, f"{API_BASE}/sources", status=201, json=body)
    assert client.create_sources(two_features()) == BOTH_CREATED


@responses.activate
@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"id": "src_A", "message": "Source created successfully."}, "unrecognised create"),
        ({"created": 2}, "unrecognised create"),
        ([{"id": "src_A", "alt_id": "A"}], "no source id for 1 feature"),
        ({"data": [{"id": "src_A"}, {"id": "src_B"}]}, "no source id for 2 feature"),
    ],
)
def test_other_batch_create_responses_fail_clearly(body, complaint):
    client = tenant_client()
    responses.add(responses.POST, f"{API_BASE}/sources", status=201, json=body)
    with pytest.raises(MetiApiError, match=complaint):
        client.create_sources(two_features())
