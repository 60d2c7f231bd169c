"""One retry budget per call: retries never nest, and a call has one deadline.

Every test counts the requests the emulator received; waits go through an injected sleep and
time through an injected clock, so nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
import requests

from airflow_provider_meti._http import retry_after_seconds
from airflow_provider_meti.api import api_version
from airflow_provider_meti.client import ClientSettings, MetiClient
from airflow_provider_meti.exceptions import MetiApiError
from airflow_provider_meti.retries import RetryPolicy
from tests.api_versions import connection_fields, token_request
from tests.features import collection, square_feature

RETRIES = 3  # so every request that keeps failing is sent RETRIES + 1 = 4 times


class FakeTime:
    """A clock that only moves when the client sleeps; records every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []
        self.on_sleep: list[Any] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        for hook in self.on_sleep:
            hook()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_client(emulator, version: int, fake_time: FakeTime, **policy: Any) -> MetiClient:
    api = api_version(version)
    fields = connection_fields(emulator, version)
    token_source = api.token_source(
        emulator.url,
        fields["login"],
        fields["password"],
        token_url=fields["extra"].get("token_url"),
    )
    policy = {"max_retries": RETRIES, "initial_wait": 0.5, "max_wait": 2.0, **policy}
    settings = ClientSettings(base_url=emulator.url, timeout=10, retry=RetryPolicy(**policy))
    return MetiClient(settings, token_source, api=api, clock=fake_time.clock, sleep=fake_time.sleep)


@pytest.fixture
def client(emulator, meti_api_version, fake_time):
    with make_client(emulator, meti_api_version, fake_time) as client:
        yield client


def sent(emulator, key: str) -> int:
    return emulator.stats()["requests"].get(key, 0)


def token_path(version: int) -> str:
    return token_request(version).split(" ", 1)[1]


def source_path(version: int) -> str:
    return "/sources/" if version == 1 else "/sources/src_0000000000000"


# --- at most R+1 attempts of any one request, whichever layer asks ----------------------------


def test_token_endpoint_down(client, emulator, meti_api_version):
    emulator.set_faults(rate=1.0, kinds=["503"], paths=[token_path(meti_api_version)])
    with pytest.raises(MetiApiError, match="HTTP 503"):
        client.get_source("src_0000000000000")
    assert sent(emulator, token_request(meti_api_version)) == RETRIES + 1
    assert sent(emulator, f"GET {source_path(meti_api_version)}") == 0


def test_get_down(client, emulator, meti_api_version):
    emulator.set_faults(rate=1.0, kinds=["503"], methods=["GET"])
    with pytest.raises(MetiApiError, match="HTTP 503"):
        client.get_source("src_0000000000000")
    assert sent(emulator, f"GET {source_path(meti_api_version)}") == RETRIES + 1
    assert sent(emulator, token_request(meti_api_version)) == 1


def test_post_down(client, emulator, meti_api_version):
    # A 500 may come after the work was done: each retry first looks the feature up.
    emulator.set_faults(rate=1.0, kinds=["500"], methods=["POST"])
    with pytest.raises(MetiApiError, match="HTTP 500"):
        client.create_sources(collection(square_feature("F-1")))
    assert sent(emulator, "POST /sources") == RETRIES + 1
    assert sent(emulator, "GET /sources") == RETRIES  # one one-page scan per recovery
    assert sent(emulator, token_request(meti_api_version)) == 1


def test_lookup_down(client, emulator, meti_api_version, fake_time):
    # The POST is stored but its answer lost; then every lookup fails.
    emulator.set_faults(rate=1.0, kinds=["stored_then_drop"], methods=["POST"], count=1)
    fail_gets = lambda: emulator.set_faults(rate=1.0, kinds=["503"], methods=["GET"])  # noqa: E731
    fake_time.on_sleep.append(fail_gets)
    with pytest.raises(MetiApiError, match=r"GET /sources failed .*HTTP 503"):
        client.create_sources(collection(square_feature("F-1")))
    assert sent(emulator, "POST /sources") == 1  # never re-sent blindly
    assert sent(emulator, "GET /sources") == RETRIES + 1
    assert emulator.ledger.count() == 1


def test_token_endpoint_down_during_a_listing(client, emulator, meti_api_version):
    emulator.ledger.seed(5)
    emulator.set_faults(rate=1.0, kinds=["503"], paths=[token_path(meti_api_version)])
    with pytest.raises(MetiApiError, match="HTTP 503"):
        list(client.iter_sources(page_size=2))
    assert sent(emulator, token_request(meti_api_version)) == RETRIES + 1
    assert sent(emulator, "GET /sources") == 0


def test_a_recovered_request_does_not_spend_another_requests_retries(
    client, emulator, meti_api_version
):
    emulator.set_faults(rate=1.0, kinds=["503"], paths=[token_path(meti_api_version)], count=2)
    emulator.ledger.seed(1)
    source_id = emulator.ledger.all()[0]["id"]
    assert client.get_source(source_id)["id"] == source_id
    assert sent(emulator, token_request(meti_api_version)) == 3
    emulator.set_faults(rate=1.0, kinds=["503"], methods=["GET"], count=RETRIES)
    assert client.get_source(source_id)["id"] == source_id  # a new call: a new budget


# --- one deadline per call -------------------------------------------------------------------


@pytest.mark.parametrize("meti_api_version", [1], ids=["v1"], indirect=True)
def test_no_retry_starts_after_the_deadline(emulator, meti_api_version, fake_time):
    policy = {"max_retries": 1000, "max_retry_time": 10.0, "initial_wait": 1.0, "max_wait": 4.0}
    with make_client(emulator, meti_api_version, fake_time, **policy) as client:
        client.get_token()
        emulator.set_faults(rate=1.0, kinds=["503"], methods=["GET"])
        started = fake_time.now
        with pytest.raises(MetiApiError, match="HTTP 503"):
            client.get_source("src_0000000000000")
    assert fake_time.now - started == pytest.approx(10.0)  # waits are cut to the deadline
    assert sent(emulator, "GET /sources/") == len(fake_time.waits) + 1 < 1001


@pytest.mark.parametrize("meti_api_version", [1], ids=["v1"], indirect=True)
def test_retry_after_longer_than_what_is_left_ends_the_call(emulator, meti_api_version, fake_time):
    policy = {"max_retries": 100, "max_retry_time": 10.0}
    with make_client(emulator, meti_api_version, fake_time, **policy) as client:
        client.get_token()
        emulator.set_faults(rate=1.0, kinds=["429"], methods=["GET"], retry_after=3)
        with pytest.raises(MetiApiError, match="HTTP 429"):
            client.get_source("src_0000000000000")
    assert fake_time.waits == [3.0, 3.0, 3.0]  # then 1 s is left: less than asked for
    assert sent(emulator, "GET /sources/") == 4


@pytest.mark.parametrize("meti_api_version", [2], ids=["v2"], indirect=True)
def test_each_batch_of_a_create_has_its_own_deadline(emulator, meti_api_version, fake_time):
    # Two 429s with Retry-After: 2 cost each batch 4 s of a 5 s max_retry_time. Were the
    # deadline the whole create's, the second batch would give up after its first refusal.
    features = [square_feature(f"F-{n}", x=2 * n) for n in range(2)]

    def refuse(skip: int) -> None:
        emulator.set_faults(
            rate=1.0, kinds=["429"], methods=["POST"], retry_after=2, count=2, skip=skip
        )

    def refuse_the_second_batch_too() -> None:
        if len(fake_time.waits) == 2:  # the first batch's last wait: its next POST passes
            refuse(skip=1)

    fake_time.on_sleep.append(refuse_the_second_batch_too)
    with make_client(emulator, meti_api_version, fake_time, max_retry_time=5.0) as client:
        client.get_token()
        refuse(skip=0)
        created = client.create_sources(collection(*features), batch_size=1, max_workers=1)
    assert [item["alt_id"] for item in created] == ["F-0", "F-1"]
    assert fake_time.waits == [2.0, 2.0, 2.0, 2.0]
    assert sent(emulator, "POST /sources") == 6


# --- Retry-After as an HTTP date -------------------------------------------------------------


def reply_with_retry_after(value: str) -> requests.Response:
    response = requests.Response()
    response.status_code = 503
    response.headers["Retry-After"] = value
    return response


def test_retry_after_in_http_date_form_is_honoured():
    now = 1445412473.0  # Wed, 21 Oct 2015 07:27:53 GMT
    reply = reply_with_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")
    assert retry_after_seconds(reply, now=lambda: now) == 7.0
    past = reply_with_retry_after("Wed, 21 Oct 2015 07:27:00 GMT")
    assert retry_after_seconds(past, now=lambda: now) == 0.0
    assert retry_after_seconds(reply_with_retry_after("120")) == 120.0
    assert retry_after_seconds(reply_with_retry_after("soon")) is None
    assert retry_after_seconds(reply_with_retry_after("nan")) is None


# --- nothing left for the garbage collector ----------------------------------------------------

CALLS = 300


def test_async_calls_that_succeed_at_once_leave_no_reference_cycles():
    policy = RetryPolicy()

    async def answer() -> dict[str, str]:
        return {"id": "src_1"}

    async def main() -> int:
        gc.collect()
        for _ in range(CALLS):
            await policy.async_budget().run("GET /sources/", answer)
        return gc.collect()

    # tenacity's AsyncRetrying leaves a reference cycle of about four objects per call (which
    # in a busy triggerer sets off full collections of Airflow's heap); less than one object
    # per call leaves room for whatever else the process does meanwhile.
    assert asyncio.run(main()) < CALLS
