"""MetiClient against the emulator over loopback: tokens, retries, endpoints, errors."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from airflow_provider_meti.auth import EmailPasswordAuth
from airflow_provider_meti.client import ClientSettings, MetiClient
from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiAuthError,
    MetiConfigError,
    MetiConnectionError,
    MetiNotFoundError,
)
from airflow_provider_meti.retries import RetryPolicy
from tests.features import square_feature

EMAIL = "demo@meti.local"
PASSWORD = "demo-password"
FAST_RETRY = RetryPolicy(max_retries=4, max_retry_time=20, initial_wait=0.01, max_wait=0.05)


def make_client(
    url: str, *, password: str = PASSWORD, clock=time.monotonic, sleep=None, **settings
) -> MetiClient:
    settings.setdefault("retry", FAST_RETRY)
    settings.setdefault("timeout", 5)
    auth = EmailPasswordAuth(token_url=f"{url}/token", email=EMAIL, password=password)
    return MetiClient(ClientSettings(base_url=url, **settings), auth, clock=clock, sleep=sleep)


@pytest.fixture
def client(emulator):
    with make_client(emulator.url) as client:
        yield client


def token_requests(emulator) -> int:
    return emulator.stats()["token_requests"]


def requests_to(emulator, method: str, path: str) -> int:
    return emulator.stats()["requests"].get(f"{method} {path}", 0)


def create_one(client: MetiClient, alt_id: str = "F-1", **kwargs) -> str:
    collection = {"type": "FeatureCollection", "features": [square_feature(alt_id, **kwargs)]}
    return client.create_sources(collection)[0]["id"]


# Tokens


def test_token_is_fetched_once_and_reused(client, emulator):
    source_id = create_one(client)
    for _ in range(20):
        assert client.get_source(source_id)["id"] == source_id
    assert token_requests(emulator) == 1


def test_no_token_is_requested_until_the_first_call(emulator):
    make_client(emulator.url)
    assert token_requests(emulator) == 0


def test_short_lived_token_is_renewed_before_it_expires(emulator):
    # A 10 s token and the default 60 s margin: renewed 2 s early (a fifth of its life).
    emulator.token_ttl = 10
    now = [0.0]
    with make_client(emulator.url, clock=lambda: now[0]) as client:
        source_id = create_one(client)
        for step in range(40):  # 0.0 to 19.5 s of the client's clock
            now[0] = step * 0.5
            client.get_source(source_id)
            if now[0] < 8.0:
                assert token_requests(emulator) == 1, now[0]
            elif now[0] < 16.0:
                assert token_requests(emulator) == 2, now[0]
    # Renewed ahead of expiry (no 401 ever answered), each token serving many calls.
    assert token_requests(emulator) == 3
    assert emulator.stats()["responses"].get("401", 0) == 0


def test_a_rejected_token_is_renewed_and_the_request_replayed_once(client, emulator):
    source_id = create_one(client)
    emulator.expire_all_tokens()
    assert client.get_source(source_id)["id"] == source_id
    assert token_requests(emulator) == 2
    assert requests_to(emulator, "GET", "/sources/") == 2


def test_eight_threads_starting_at_once_share_one_token(client, emulator):
    barrier = threading.Barrier(8)
    tokens: list[str] = []

    def first_call() -> None:
        barrier.wait()
        tokens.append(client.get_token())

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(tokens)) == 1
    assert token_requests(emulator) == 1


def test_wrong_password_fails_at_once_without_retries(emulator):
    with make_client(emulator.url, password="not-the-password") as client:
        with pytest.raises(MetiAuthError, match="authentication failed") as caught:
            client.get_source("src_0000000000000")
    assert token_requests(emulator) == 1
    assert "not-the-password" not in str(caught.value)


# Retries


def test_two_503s_then_success(client, emulator):
    source_id = create_one(client)
    emulator.set_faults(rate=1.0, kinds=["503"], count=2)
    assert client.get_source(source_id)["id"] == source_id
    assert requests_to(emulator, "GET", "/sources/") == 3


def test_429_waits_for_retry_after(emulator):
    waits: list[float] = []
    with make_client(emulator.url, sleep=waits.append) as client:
        source_id = create_one(client)
        emulator.set_faults(rate=1.0, kinds=["429"], count=1, retry_after=1)
        assert client.get_source(source_id)["id"] == source_id
    assert waits == [1.0]
    assert requests_to(emulator, "GET", "/sources/") == 2


def test_dropped_connection_is_retried(client, emulator):
    source_id = create_one(client)
    emulator.set_faults(rate=1.0, kinds=["drop"], count=2)
    assert client.get_source(source_id)["id"] == source_id
    assert requests_to(emulator, "GET", "/sources/") == 3


def test_404_is_not_retried(client, emulator):
    with pytest.raises(MetiNotFoundError) as caught:
        client.get_source("src_DOESNOTEXIST1")
    assert caught.value.status_code == 404
    assert requests_to(emulator, "GET", "/sources/") == 1


def test_other_4xx_are_not_retried(client, emulator):
    with pytest.raises(MetiApiError) as caught:
        client.request("GET", "/sources", params={"limit": "many"})
    assert caught.value.status_code == 400
    assert requests_to(emulator, "GET", "/sources") == 1


def test_exhausted_retries_raise_the_real_cause(emulator):
    policy = RetryPolicy(max_retries=2, max_retry_time=10, initial_wait=0.01, max_wait=0.02)
    with make_client(emulator.url, retry=policy) as client:
        client.get_token()
        emulator.set_faults(rate=1.0, kinds=["503"])
        with pytest.raises(MetiApiError) as caught:
            client.get_source("src_0000000000000")
    assert caught.value.status_code == 503
    assert "503" in str(caught.value) and "GET /sources/" in str(caught.value)
    assert requests_to(emulator, "GET", "/sources/") == 3


def test_unreachable_server_names_the_network_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    policy = RetryPolicy(max_retries=1, max_retry_time=5, initial_wait=0.01, max_wait=0.01)
    with make_client(f"http://127.0.0.1:{port}", retry=policy) as client:
        with pytest.raises(MetiConnectionError, match=r"ConnectionRefused|refused") as caught:
            client.get_token()
    assert caught.value.request_sent is False


# Endpoints


def test_create_get_and_delete_round_trip(client, emulator):
    created = client.create_sources(
        {"type": "FeatureCollection", "features": [square_feature("A"), square_feature("B", x=1)]}
    )
    assert [item["alt_id"] for item in created] == ["A", "B"]
    for item in created:
        assert client.get_source(item["id"])["alt_id"] == item["alt_id"]
    client.delete_source(created[0]["id"])
    with pytest.raises(MetiNotFoundError):
        client.get_source(created[0]["id"])
    assert emulator.ledger.count() == 1


def test_delete_missing_source(client):
    with pytest.raises(MetiNotFoundError):
        client.delete_source("src_DOESNOTEXIST1")
    client.delete_source("src_DOESNOTEXIST1", missing_ok=True)


def test_pagination_walks_every_page(client, emulator):
    emulator.ledger.seed(250)
    ids = [source["id"] for source in client.iter_sources(page_size=100)]
    assert len(ids) == len(set(ids)) == 250
    # Three full pages, then an empty one: a short page does not end a listing (#25.1).
    assert requests_to(emulator, "GET", "/sources") == 4


@pytest.mark.parametrize("envelope", ["data", "sources", "items", "results"])
def test_pagination_accepts_envelopes(emulator, envelope):
    emulator.list_envelope = envelope
    emulator.ledger.seed(120)
    with make_client(emulator.url) as client:
        assert len({source["id"] for source in client.iter_sources(page_size=50)}) == 120


def test_create_sends_nothing_when_any_feature_is_invalid(client, emulator):
    bad = square_feature("B")
    bad["properties"]["end_at"] = bad["properties"]["start_at"]
    collection = {"type": "FeatureCollection", "features": [square_feature("A"), bad]}
    with pytest.raises(Exception, match="feature 1"):
        client.create_sources(collection)
    assert requests_to(emulator, "POST", "/sources") == 0
    assert emulator.ledger.count() == 0


def test_create_in_parallel_keeps_input_order(emulator):
    features = [square_feature(f"F-{i:03}", x=i) for i in range(40)]
    with make_client(emulator.url, max_workers=4) as client:
        created = client.create_sources({"type": "FeatureCollection", "features": features})
    assert [item["alt_id"] for item in created] == [f["id"] for f in features]
    stored = {source["id"]: source["alt_id"] for source in emulator.ledger.all()}
    assert {item["id"]: item["alt_id"] for item in created} == stored


def test_lost_create_responses_do_not_duplicate_sources(emulator):
    features = [square_feature(f"F-{i:03}", x=i) for i in range(30)]
    emulator.set_faults(
        rate=0.4, kinds=["stored_then_drop", "drop", "503"], seed=7, methods=["POST"]
    )
    with make_client(emulator.url, max_workers=3) as client:
        created = client.create_sources({"type": "FeatureCollection", "features": features})
    assert emulator.stats()["faults"].get("stored_then_drop", 0) > 0
    stored = emulator.ledger.all()
    assert sorted(source["alt_id"] for source in stored) == [f["id"] for f in features]
    assert {item["id"] for item in created} == {source["id"] for source in stored}


def test_skip_existing_creates_only_what_is_missing(client, emulator):
    features = [square_feature(f"F-{i}", x=i) for i in range(5)]
    first = client.create_sources({"type": "FeatureCollection", "features": features[:3]})
    again = client.create_sources(
        {"type": "FeatureCollection", "features": features}, skip_existing=True
    )
    assert again[:3] == first
    assert emulator.ledger.count() == 5


# URLs and security


@pytest.mark.parametrize("suffix", ["", "/"])
def test_base_url_with_trailing_slash(emulator, suffix):
    with make_client(emulator.url + suffix) as client:
        assert client.create_sources(
            {"type": "FeatureCollection", "features": [square_feature("A")]}
        )


def test_base_url_with_path_prefix(prefixed_emulator):
    base = prefixed_emulator.url + "/meti/api/"
    auth = EmailPasswordAuth(token_url=base + "token", email=EMAIL, password=PASSWORD)
    settings = ClientSettings(base_url=base, retry=FAST_RETRY)
    with MetiClient(settings, auth) as client:
        source_id = client.create_sources(
            {"type": "FeatureCollection", "features": [square_feature("A")]}
        )[0]["id"]
        assert client.get_source(source_id)["id"] == source_id


@pytest.mark.parametrize(
    "url", ["http://meti.example.com", "http://10.1.2.3:8080/api", "ftp://127.0.0.1", "nohost"]
)
def test_insecure_or_malformed_base_urls_are_refused(url):
    with pytest.raises(MetiConfigError):
        make_client(url)


def test_plain_http_to_another_host_needs_an_explicit_opt_in():
    client = make_client("http://meti.internal.example", allow_insecure_http=True)
    assert client.settings.base_url == "http://meti.internal.example"


def test_logs_never_contain_the_password_or_tokens(emulator, caplog):
    caplog.set_level(logging.DEBUG)
    seen_tokens: list[str] = []
    auth = EmailPasswordAuth(token_url=f"{emulator.url}/token", email=EMAIL, password=PASSWORD)
    settings = ClientSettings(base_url=emulator.url, retry=FAST_RETRY)
    with MetiClient(settings, auth, on_new_token=seen_tokens.append) as client:
        source_id = create_one(client)
        emulator.expire_all_tokens()
        emulator.set_faults(rate=0.5, kinds=["503", "drop"], seed=3)
        for _ in range(10):
            client.get_source(source_id)
        emulator.clear_faults()
        with pytest.raises(MetiNotFoundError):
            client.get_source("src_DOESNOTEXIST1")
    with make_client(emulator.url, password="wrong-" + PASSWORD) as wrong:
        with pytest.raises(MetiAuthError):
            wrong.get_token()
    assert len(seen_tokens) == 2
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "GET /sources/ -> 200" in logged  # debug request lines are there
    for secret in [PASSWORD, *seen_tokens]:
        assert secret not in logged
        assert secret not in repr(client)
