"""How the client reads odd or hostile server replies (cases the emulator does not produce)."""

from __future__ import annotations

import pytest
import responses

from airflow_provider_meti.api import API_V2
from airflow_provider_meti.auth import ClientCredentialsAuth, EmailPasswordAuth
from airflow_provider_meti.client import ClientSettings, MetiClient
from airflow_provider_meti.exceptions import MetiApiError, MetiAuthError
from airflow_provider_meti.retries import RetryPolicy

BASE = "https://meti.test"
PASSWORD = "hunter2-Secret"
NO_RETRY = RetryPolicy(max_retries=0)


def make_client(**settings) -> MetiClient:
    auth = EmailPasswordAuth(token_url=f"{BASE}/token", email="a@b.c", password=PASSWORD)
    settings.setdefault("retry", NO_RETRY)
    return MetiClient(ClientSettings(base_url=BASE, **settings), auth)


def token_reply(**body) -> None:
    responses.add(responses.POST, f"{BASE}/token", json=body)


@responses.activate
@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"expires_in": 3600}, "'token'"),
        ({"token": "", "expires_in": 3600}, "'token'"),
        ({"token": "t"}, "expires_in"),
        ({"token": "t", "expires_in": "3600"}, "expires_in"),
        ({"token": "t", "expires_in": -5}, "expires_in"),
        ({"token": "t", "expires_in": True}, "expires_in"),
    ],
)
def test_malformed_token_replies_raise_auth_errors(body, complaint):
    token_reply(**body)
    with pytest.raises(MetiAuthError, match=complaint):
        make_client().get_token()


@responses.activate
def test_token_reply_that_is_not_json():
    responses.add(
        responses.POST, f"{BASE}/token", body="<html>oops</html>", content_type="text/html"
    )
    with pytest.raises(MetiAuthError, match="not JSON"):
        make_client().get_token()


@responses.activate
def test_html_error_page_becomes_a_readable_api_error():
    token_reply(token="tok-123456", expires_in=3600)
    responses.add(
        responses.GET,
        f"{BASE}/sources/",
        status=502,
        body="<html><body><h1>502 Bad Gateway</h1></body></html>",
        content_type="text/html",
    )
    with pytest.raises(MetiApiError) as caught:
        make_client().get_source("src_1")
    assert caught.value.status_code == 502
    assert "text/html" in str(caught.value) and "Bad Gateway" in str(caught.value)


@responses.activate
def test_truncated_json_body_is_reported_not_raised_from_deep_inside():
    token_reply(token="tok-123456", expires_in=3600)
    responses.add(responses.GET, f"{BASE}/sources/", body='{"id": "src_1", "alt', status=200)
    with pytest.raises(MetiApiError, match="expected a JSON body"):
        make_client().get_source("src_1")


@responses.activate
def test_second_401_raises_auth_error_after_one_replay():
    token_reply(token="tok-first", expires_in=3600)
    token_reply(token="tok-second", expires_in=3600)
    responses.add(responses.GET, f"{BASE}/sources/", status=401, json={"message": "nope"})
    responses.add(responses.GET, f"{BASE}/sources/", status=401, json={"message": "nope"})
    with pytest.raises(MetiAuthError, match="freshly issued token") as caught:
        make_client().get_source("src_1")
    assert len([call for call in responses.calls if "/sources" in call.request.url]) == 2
    assert "tok-first" not in str(caught.value) and "tok-second" not in str(caught.value)


@responses.activate
def test_server_echoing_secrets_is_redacted():
    token_reply(token="tok-echoed-123", expires_in=3600)
    responses.add(
        responses.GET,
        f"{BASE}/sources/",
        status=400,
        json={"message": f"bad request from tok-echoed-123 with {PASSWORD}"},
    )
    with pytest.raises(MetiApiError) as caught:
        make_client().get_source("src_1")
    assert "tok-echoed-123" not in str(caught.value)
    assert PASSWORD not in str(caught.value)


@responses.activate
def test_v2_auth0_error_bodies_surface_their_description():
    responses.add(
        responses.POST,
        "https://tenant.test/oauth/token",
        status=401,
        json={"error": "access_denied", "error_description": "Unauthorized client"},
    )
    auth = ClientCredentialsAuth(
        token_url="https://tenant.test/oauth/token", client_id="cid", client_secret="csecret"
    )
    client = MetiClient(ClientSettings(base_url=BASE, retry=NO_RETRY), auth, api=API_V2)
    with pytest.raises(MetiAuthError, match="Unauthorized client") as caught:
        client.get_token()
    assert "csecret" not in str(caught.value)


@responses.activate
def test_unknown_create_response_shape_fails_clearly():
    from tests.features import collection, square_feature

    token_reply(token="tok-123456", expires_in=3600)
    responses.add(responses.POST, f"{BASE}/sources", status=201, json={"created": True})
    with pytest.raises(MetiApiError, match="unrecognised create response"):
        make_client().create_sources(collection(square_feature("A")))


@responses.activate
def test_listing_that_ignores_offset_is_detected():
    token_reply(token="tok-123456", expires_in=3600)
    page = [{"id": f"src_{i}"} for i in range(10)]
    responses.add(responses.GET, f"{BASE}/sources", json=page)
    responses.add(responses.GET, f"{BASE}/sources", json=page)
    with pytest.raises(MetiApiError, match="ignore 'offset'"):
        list(make_client().iter_sources(page_size=10))


@responses.activate
@pytest.mark.parametrize(
    "page",
    [[{"alt_id": "A"}], [{"id": "src_1"}, {"id": "src_2"}]],
    ids=["sources-without-ids", "a-short-page"],
)
def test_a_listing_that_ignores_offset_ends_even_on_short_pages_or_without_ids(page):
    # Paging goes on past short pages (a server may cap 'limit'), so the repeat must end it.
    token_reply(token="tok-123456", expires_in=3600)
    responses.add(responses.GET, f"{BASE}/sources", json=page)
    with pytest.raises(MetiApiError, match="ignore 'offset'"):
        list(make_client().iter_sources(page_size=10))
    assert len([c for c in responses.calls if c.request.method == "GET"]) == 2


@responses.activate
def test_every_request_carries_a_timeout():
    token_reply(token="tok-123456", expires_in=3600)
    responses.add(responses.GET, f"{BASE}/sources/", json={"id": "src_1"})
    make_client(timeout=7).get_source("src_1")
    # A whole-request timeout: what is left of the 7 s, for connect, read and the total.
    timeouts = [call.request.req_kwargs["timeout"] for call in responses.calls]
    assert timeouts and all(0 < timeout.total <= 7 for timeout in timeouts)
