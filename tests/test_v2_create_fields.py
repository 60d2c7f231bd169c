"""v2 creates as METI serves them in 2026: a SourceCreateRequest with typed descriptive fields,
per-feature overrides, v1 refusing them, 422s naming the feature, sandbox routes and ids,
the ``scope`` extra, and duplicate protection through the ``alt_id`` filter."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_meti.api import API_V1, API_V2
from airflow_provider_meti.client import ClientSettings, MetiClient
from airflow_provider_meti.create_errors import named_rejection
from airflow_provider_meti.emulator import MetiEmulator
from airflow_provider_meti.exceptions import MetiApiError, MetiConfigError, MetiValidationError
from airflow_provider_meti.retries import RetryPolicy
from tests.airflow_context import METI_CLIENT_ID, METI_CLIENT_SECRET, METI_EMAIL, METI_PASSWORD
from tests.features import collection, square_feature

FAST = RetryPolicy(max_retries=2, max_retry_time=10, initial_wait=0.01, max_wait=0.02)
FIELDS = {"methodology": "Agriculture", "steward_id": "GM-1", "project_id": "P-7"}


def client_of(
    meti: MetiEmulator, *, api: Any = API_V2, sandbox: bool = False, **token
) -> MetiClient:
    version = api.in_sandbox(sandbox)
    if api is API_V2:
        source = version.token_source(
            meti.url, METI_CLIENT_ID, METI_CLIENT_SECRET, token_url=meti.token_url, **token
        )
    else:
        source = version.token_source(meti.url, METI_EMAIL, METI_PASSWORD)
    return MetiClient(ClientSettings(base_url=meti.url, timeout=5, retry=FAST), source, api=version)


def posts(meti: MetiEmulator, path: str = "/sources") -> int:
    return meti.stats()["requests"].get(f"POST {path}", 0)


@pytest.fixture
def meti():
    with MetiEmulator(port=0, documented_only=True) as emulator:
        yield emulator


def test_fields_travel_at_the_top_level_and_ids_come_back_in_input_order(meti):
    fc = collection(*(square_feature(f"A{n}", x=2 * n) for n in range(3)))
    with client_of(meti) as client:
        created = client.create_sources(fc, source_fields={**FIELDS, "tags": ["cover-crop"]})
    assert [item["alt_id"] for item in created] == ["A0", "A1", "A2"]
    stored = {source["alt_id"]: source for source in meti.ledger.all()}
    assert {stored[a]["methodology"] for a in stored} == {"Agriculture"}
    assert stored["A1"]["project_id"] == "P-7" and stored["A1"]["tags"] == ["cover-crop"]
    assert posts(meti) == 1


def test_a_feature_property_overrides_and_features_are_grouped_by_their_fields(meti):
    fc = collection(
        square_feature("B0", x=0),
        square_feature("B1", x=2, methodology="Reforestation"),
        square_feature("B2", x=4),
    )
    with client_of(meti) as client:
        created = client.create_sources(fc, source_fields=FIELDS)
    assert [item["alt_id"] for item in created] == ["B0", "B1", "B2"]
    stored = {source["alt_id"]: source for source in meti.ledger.all()}
    assert stored["B1"]["methodology"] == "Reforestation"
    assert stored["B0"]["methodology"] == stored["B2"]["methodology"] == "Agriculture"
    assert stored["B1"]["steward_id"] == "GM-1"  # the rest of the operator's fields kept
    assert posts(meti) == 2  # one POST per group of equal fields


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"methodology": 7}, "'methodology' must be a non-empty string"),
        ({"attribute_type": []}, "'attribute_type' must list at least one"),
        ({"attribute_type": "CARBON_REMOVAL"}, "'attribute_type' must be a list"),
        ({"tags": ["ok", None]}, "'tags' item 1"),
        ({"outcome_reporting_year": "2025"}, "'outcome_reporting_year' must be an integer"),
        ({"outcome_reporting_year": 2025000000000}, "four-digit year"),
        ({"methodolgy": "typo"}, "'methodolgy' is not a descriptive field"),
    ],
)
def test_a_wrong_field_is_refused_naming_it_before_any_request(meti, fields, named):
    with client_of(meti) as client, pytest.raises(MetiConfigError, match=named):
        client.create_sources(collection(square_feature("C")), source_fields=fields)
    assert meti.stats()["requests"] == {}


def test_a_wrong_field_in_properties_names_the_feature(meti):
    fc = collection(square_feature("D0"), square_feature("D1", x=2, outcome_reporting_year="2025"))
    with client_of(meti) as client, pytest.raises(MetiValidationError) as raised:
        client.create_sources(fc)
    assert "feature 1 (id='D1') properties.outcome_reporting_year" in str(raised.value)
    assert posts(meti) == 0


def test_v1_refuses_descriptive_fields_before_any_request(meti):
    with client_of(meti, api=API_V1) as client, pytest.raises(MetiConfigError, match="v1 has no"):
        client.create_sources(collection(square_feature("E")), source_fields=FIELDS)
    assert meti.stats()["requests"] == {}


def test_v1_without_fields_sends_the_bare_collection(meti):
    with client_of(meti, api=API_V1) as client:
        assert client.create_sources(collection(square_feature("E")))[0]["alt_id"] == "E"


def test_a_422_pointing_into_the_features_names_index_and_alt_id():
    error = MetiApiError(
        "feature_collection.features.1.geometry: bad polygon",
        status_code=422,
        method="POST",
        path="/sources",
        details=[{"loc": ["body", "feature_collection", "features", 1, "geometry"], "msg": "bad"}],
    )
    named = named_rejection(error, [{"id": "F0"}, {"id": "F1"}])
    assert "feature 1 of the request (alt_id 'F1') geometry: bad" in str(named)
    assert named.status_code == 422 and named.details == error.details


def test_sandbox_routes_and_ids(meti):
    with client_of(meti, sandbox=True) as client:
        (created,) = client.create_sources(collection(square_feature("S")), source_fields=FIELDS)
        assert created["id"].startswith("sandbox_")
        assert client.get_source(created["id"])["alt_id"] == "S"
        assert [s["id"] for s in client.iter_sources()] == [created["id"]]
        with pytest.raises(MetiConfigError, match="production id"):
            client.get_source("src_ABCDEFGHIJKLM")
    assert posts(meti, "/sandbox/sources") == 1 and posts(meti) == 0
    assert meti.ledger.all() == []
    with client_of(meti) as production, pytest.raises(MetiConfigError, match="sandbox id"):
        production.delete_source(created["id"])


def test_the_scope_extra_is_sent_and_limits_what_the_token_may_do(meti):
    with client_of(meti, scope="read:sources") as client:
        assert list(client.iter_sources()) == []
        with pytest.raises(MetiApiError) as raised:
            client.create_sources(collection(square_feature("R")))
    assert raised.value.status_code == 403 and "write:sources" in str(raised.value)
    assert posts(meti) == 1  # never retried


def test_a_v1_connection_refuses_a_scope():
    with pytest.raises(MetiConfigError, match="'scope' is for METI API v2"):
        API_V1.token_source("https://x.test", "a@b.c", "pw", scope="read:sources")


@pytest.mark.parametrize("version", [1, 2])
def test_a_listing_capped_by_the_server_is_read_to_the_end(version):
    with MetiEmulator(port=0, documented_only=True, max_page_size=100) as meti:
        meti.ledger.seed(250)
        with client_of(meti, api=API_V1 if version == 1 else API_V2) as client:
            ids = [source["id"] for source in client.iter_sources(page_size=1000)]
    assert len(set(ids)) == 250


def test_a_lost_v2_answer_is_looked_up_by_alt_id_not_by_a_scan(meti):
    meti.ledger.seed(1500)
    meti.set_faults(rate=1.0, kinds=["stored_then_drop"], methods=["POST"], count=1)
    with client_of(meti) as client:
        created = client.create_sources(collection(square_feature("L0"), square_feature("L1", x=2)))
    assert [item["alt_id"] for item in created] == ["L0", "L1"]
    assert meti.stats()["requests"]["GET /sources"] == 2  # one filtered GET per alt_id
    assert posts(meti) == 1


class Connection:
    """Just the fields ``settings_from_connection`` reads."""

    def __init__(self, **extra: Any) -> None:
        self.host, self.port, self.schema = "https://api.millpont.com", None, None
        self.login, self.password = "client", "secret"
        self.extra_dejson = {"api_version": 2, "token_url": "https://t.test/oauth/token", **extra}


def test_the_sandbox_and_scope_extras_reach_routes_and_token_request():
    from airflow_provider_meti.connection import settings_from_connection

    parts = settings_from_connection(
        Connection(sandbox="true", scope=" read:sources  write:sources")
    )
    assert parts.api.sandbox and parts.api.sources_path == "/sandbox/sources"
    assert (
        parts.api.source_route("sandbox_" + "a" * 32)[0] == "/sandbox/sources/sandbox_" + "a" * 32
    )
    assert parts.token_source().request_body()["scope"] == "read:sources write:sources"
    plain = settings_from_connection(Connection())
    assert not plain.api.sandbox and "scope" not in plain.token_source().request_body()
    with pytest.raises(MetiConfigError, match="'scope' must be a string"):
        settings_from_connection(Connection(scope=["read:sources"]))


@pytest.mark.parametrize(
    ("endpoint", "routed"),
    [
        ("/sources", "/sandbox/sources"),
        ("sources/src_1", "/sandbox/sources/src_1"),
        ("/sources?alt_id=A", "/sandbox/sources?alt_id=A"),
        ("/sourcesx", "/sourcesx"),
        ("/sandbox/sources", "/sandbox/sources"),
        ("/health", "/health"),
    ],
)
def test_raw_requests_to_source_routes_go_to_the_sandbox(endpoint, routed):
    assert API_V2.in_sandbox().routed(endpoint) == routed
    assert API_V2.routed(endpoint) == endpoint
