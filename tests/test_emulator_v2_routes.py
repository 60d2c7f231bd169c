"""The emulator's v2 as METI serves it in 2026, over real HTTP on 127.0.0.1: SourceCreateRequest,
FastAPI errors, list replies and filters, scopes, accounts and the sandbox."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_meti.emulator import MetiEmulator
from airflow_provider_meti.emulator.reply_shapes import SOURCE_RESPONSE_FIELDS
from tests.features import APITEST2, collection, square_feature

CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-client-secret"
AUDIENCE = "https://api.meti.millpont.com"
SANDBOX_ID = re.compile(r"^sandbox_[0-9a-f]{32}$")
FIELDS = {
    "methodology": "Agriculture",
    "source_type": "FIELD",
    "attribute_type": ["CARBON_REMOVAL"],
    "geometry_source": "CUSTODIAN_DRAWN",
    "tags": ["cover-crop"],
    "steward_id": "GM-Producer-1",
    "project_id": "P-7",
    "outcome_reporting_year": 2025,
}


@pytest.fixture(params=["", "/meti/api"], ids=["root", "base_path"])
def meti(request) -> Iterator[MetiEmulator]:
    """A documented-only emulator, at the root or under a gateway's base path."""
    with MetiEmulator(documented_only=True, base_path=request.param) as emulator:
        yield emulator


@pytest.fixture
def plain() -> Iterator[MetiEmulator]:
    with MetiEmulator(documented_only=True) as emulator:
        yield emulator


class V2:
    """A requests.Session holding a v2 token of one client."""

    def __init__(
        self, emulator: MetiEmulator, client: tuple[str, str] = (CLIENT_ID, CLIENT_SECRET), **token
    ) -> None:
        self.base = emulator.base_url
        self.session = requests.Session()
        reply = self.session.post(
            emulator.token_url,
            json={
                "grant_type": "client_credentials",
                "client_id": client[0],
                "client_secret": client[1],
                "audience": AUDIENCE,
                **token,
            },
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        self.token_reply = reply.json()
        self.session.headers["Authorization"] = f"Bearer {self.token_reply['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=10, **kwargs)

    def create(self, *features: dict[str, Any], path: str = "/sources", **fields: Any) -> Any:
        reply = self.call(
            "POST", path, json={"feature_collection": collection(*features), **fields}
        )
        assert reply.status_code == 201, reply.text
        return reply.json()


# --- create ----------------------------------------------------------------------------------


def test_a_create_request_stores_its_fields_and_answers_a_list_of_source_responses(meti):
    api = V2(meti)
    created = api.create(APITEST2, square_feature("B", x=3), **FIELDS)
    assert isinstance(created, list)
    assert [source["alt_id"] for source in created] == ["APITEST2", "B"]
    for source in created:
        assert set(SOURCE_RESPONSE_FIELDS) <= set(source)
        assert {name: source[name] for name in FIELDS} == FIELDS
        assert isinstance(source["hectares"], float)
        assert source["conflict"] is False
        assert source["conflict_with"] == []
        assert source["unep_overlap"] is False
    assert meti.ledger.get(created[0]["id"])["steward_id"] == "GM-Producer-1"


def test_a_bare_feature_collection_gets_fastapis_missing_field_422(meti):
    bare = collection(APITEST2)
    reply = V2(meti).call("POST", "/sources", json=bare)
    assert reply.status_code == 422
    assert reply.json() == {
        "detail": [
            {
                "type": "missing",
                "loc": ["body", "feature_collection"],
                "msg": "Field required",
                "input": bare,
            }
        ]
    }
    assert meti.ledger.count() == 0


@pytest.mark.parametrize(
    ("name", "value", "kind", "loc_tail"),
    [
        ("methodology", 7, "string_type", []),
        ("steward_id", ["a"], "string_type", []),
        ("tags", "cover-crop", "list_type", []),
        ("attribute_type", ["CARBON_REMOVAL", 3], "string_type", [1]),
        ("outcome_reporting_year", "soon", "int_parsing", []),
        ("outcome_reporting_year", 2025.5, "int_from_float", []),
        ("outcome_reporting_year", {}, "int_type", []),
    ],
)
def test_a_descriptive_field_of_the_wrong_type_is_refused_as_pydantic_would(
    plain, name, value, kind, loc_tail
):
    body = {"feature_collection": collection(APITEST2), name: value}
    reply = V2(plain).call("POST", "/sources", json=body)
    assert reply.status_code == 422
    [item] = reply.json()["detail"]
    assert item["type"] == kind
    assert item["loc"] == ["body", name, *loc_tail]
    assert plain.ledger.count() == 0


def test_integer_text_for_the_year_is_coerced_as_pydantics_lax_mode_does(plain):
    [source] = V2(plain).create(APITEST2, outcome_reporting_year="2025")
    assert source["outcome_reporting_year"] == 2025


def test_every_wrong_field_is_reported_at_once(plain):
    body = {"methodology": 1, "tags": [2]}
    reply = V2(plain).call("POST", "/sources", json=body)
    locs = [item["loc"] for item in reply.json()["detail"]]
    assert locs == [["body", "feature_collection"], ["body", "methodology"], ["body", "tags", 0]]


def test_a_ledger_rejection_points_into_the_feature_collection(plain):
    bad = square_feature("bad", x=2)
    bad["geometry"]["coordinates"][0].pop()  # an open ring
    reply = V2(plain).call(
        "POST", "/sources", json={"feature_collection": collection(APITEST2, bad)}
    )
    assert reply.status_code == 422
    detail = reply.json()["detail"]
    assert detail, reply.text
    assert detail[0]["loc"][:5] == ["body", "feature_collection", "features", 1, "geometry"]
    assert isinstance(detail[0]["msg"], str) and detail[0]["msg"]
    assert plain.ledger.count() == 0


def test_a_body_that_is_not_json_is_a_422_json_invalid(plain):
    reply = V2(plain).call(
        "POST", "/sources", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["type"] == "json_invalid"


# --- reads -----------------------------------------------------------------------------------


def test_the_listing_is_a_bare_array_filtered_by_the_documented_params(meti):
    api = V2(meti)
    first = api.create(square_feature("A", x=0), methodology="Agriculture", project_id="P-1")
    api.create(square_feature("B", x=2), methodology="Biochar Production", project_id="P-2")
    api.create(square_feature("C", x=4), outcome_reporting_year=2026, steward_id="S-9")

    def alt_ids(**params: Any) -> list[str]:
        reply = api.call("GET", "/sources", params=params)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert isinstance(body, list)
        return [source["alt_id"] for source in body]

    assert alt_ids() == ["A", "B", "C"]
    assert alt_ids(id=first[0]["id"]) == ["A"]
    assert alt_ids(id="src_unknown") == []
    # id is ANDed with the other filters
    assert alt_ids(id=first[0]["id"], methodology="Agriculture") == ["A"]
    assert alt_ids(id=first[0]["id"], methodology="Biochar Production") == []
    assert alt_ids(alt_id="B") == ["B"]
    assert alt_ids(methodology="Biochar Production") == ["B"]
    assert alt_ids(project_id="P-1") == ["A"]
    assert alt_ids(steward_id="S-9") == ["C"]
    assert alt_ids(outcome_reporting_year=2026) == ["C"]
    assert alt_ids(limit=1, offset=1) == ["B"]
    # documented_only: an undocumented filter is ignored, as the service ignores it
    assert alt_ids(conflict="true") == ["A", "B", "C"]


def test_a_source_by_path_and_v2_not_found_and_bad_params(plain):
    api = V2(plain)
    [source] = api.create(APITEST2, **FIELDS)
    reply = api.call("GET", f"/sources/{source['id']}")
    assert reply.status_code == 200
    assert reply.json()["id"] == source["id"]
    assert set(SOURCE_RESPONSE_FIELDS) <= set(reply.json())
    missing = api.call("GET", "/sources/src_nothere")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Source not found"})
    bad = api.call("GET", "/sources", params={"limit": "many"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "limit"]


def test_v2_deletes_by_path_and_by_alt_id(plain):
    api = V2(plain)
    [one] = api.create(square_feature("A", x=0))
    api.create(square_feature("B", x=2))
    assert api.call("DELETE", f"/sources/{one['id']}").status_code == 200
    assert api.call("DELETE", "/sources", params={"alt_id": "B"}).json()["count"] == 1
    assert plain.ledger.count() == 0
    gone = api.call("DELETE", f"/sources/{one['id']}")
    assert (gone.status_code, gone.json()) == (404, {"detail": "Source not found"})


def test_v2_errors_without_a_valid_token_are_fastapi_shaped(plain):
    api = V2(plain)
    plain.expire_all_tokens()
    reply = api.call("GET", "/sources")
    assert reply.status_code == 401
    assert set(reply.json()) == {"detail"}
    wrong_method = api.call("PUT", "/sources")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"detail": "Method Not Allowed"}


def test_v1_keeps_its_own_error_shape(plain):
    reply = requests.get(f"{plain.url}/sources", timeout=10)
    assert reply.json() == {"status": 401, "message": "Token has expired. Please reauthenticate."}


# --- scopes and accounts ---------------------------------------------------------------------


def test_a_token_carries_the_scopes_asked_for_within_what_the_client_may_have(plain):
    plain.add_client("reader", "reader-secret", scopes=["read:sources"])
    default = V2(plain)
    assert default.token_reply["scope"] == "read:sources write:sources delete:sources"
    narrow = V2(plain, scope="read:sources")
    assert narrow.token_reply["scope"] == "read:sources"
    reader = V2(plain, ("reader", "reader-secret"), scope="read:sources write:sources")
    assert reader.token_reply["scope"] == "read:sources"


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/sources", "read:sources"),
        ("POST", "/sources", "write:sources"),
        ("DELETE", "/sources/src_x", "delete:sources"),
        ("GET", "/sandbox/sources", "read:sources"),
    ],
)
def test_each_method_needs_its_scope(plain, method, path, scope):
    others = " ".join(s for s in ("read:sources", "write:sources", "delete:sources") if s != scope)
    api = V2(plain, scope=others)
    reply = api.call(method, path, json={"feature_collection": collection(APITEST2)})
    assert reply.status_code == 403
    assert reply.json() == {"detail": f"Missing required scope: {scope}"}
    assert plain.ledger.count() == 0


def test_accounts_are_isolated_yet_conflicts_are_found_across_them(plain):
    plain.add_client("other", "other-secret", account_id="acct_other")
    mine, theirs = V2(plain), V2(plain, ("other", "other-secret"))
    [a] = mine.create(APITEST2)
    [b] = theirs.create(APITEST2)
    assert theirs.call("GET", f"/sources/{a['id']}").status_code == 404
    assert mine.call("GET", f"/sources/{b['id']}").status_code == 404
    assert [s["id"] for s in mine.call("GET", "/sources").json()] == [a["id"]]
    assert mine.call("GET", f"/sources/{a['id']}").json()["conflict_with"] == [b["id"]]
    assert b["conflict_with"] == [a["id"]]
    assert theirs.call("DELETE", f"/sources/{a['id']}").status_code == 404


# --- sandbox ---------------------------------------------------------------------------------


def test_the_sandbox_is_a_separate_store_with_its_own_ids_and_no_conflicts(meti):
    api = V2(meti)
    [production] = api.create(APITEST2)
    first = api.create(APITEST2, path="/sandbox/sources", **FIELDS)
    second = api.create(APITEST2, path="/sandbox/sources")
    for source in (*first, *second):
        assert SANDBOX_ID.match(source["id"]), source["id"]
        assert source["conflict"] is False
        assert source["unep_overlap"] is None
    assert first[0]["methodology"] == "Agriculture"
    listed = api.call("GET", "/sandbox/sources").json()
    assert [s["id"] for s in listed] == [first[0]["id"], second[0]["id"]]
    assert [s["id"] for s in api.call("GET", "/sources").json()] == [production["id"]]
    one = api.call("GET", f"/sandbox/sources/{first[0]['id']}")
    assert one.status_code == 200
    assert api.call("GET", f"/sources/{first[0]['id']}").status_code == 404
    assert api.call("DELETE", f"/sandbox/sources/{first[0]['id']}").status_code == 200
    assert meti.sandbox_ledger.count() == 1
    assert meti.ledger.count() == 1


def test_the_sandbox_validates_as_production_does(plain):
    reply = V2(plain).call("POST", "/sandbox/sources", json=collection(APITEST2))
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "feature_collection"]


def test_the_sandbox_serves_v1_too(plain):
    session = requests.Session()
    token = session.post(
        f"{plain.url}/token",
        json={"email": "demo@meti.local", "password": "demo-password"},
        timeout=10,
    ).json()["token"]
    session.headers["Authorization"] = f"Bearer {token}"
    created = session.post(f"{plain.url}/sandbox/sources", json=collection(APITEST2), timeout=10)
    assert created.status_code == 201, created.text
    source_id = created.json()["id"]
    assert SANDBOX_ID.match(source_id)
    one = session.get(f"{plain.url}/sandbox/sources/", params={"id": source_id}, timeout=10)
    assert one.json()["alt_id"] == "APITEST2"
    assert plain.ledger.count() == 0


def test_an_unknown_route_is_fastapis_not_found_for_a_v2_caller(plain):
    reply = V2(plain).call("GET", "/sandbox/elsewhere")
    assert (reply.status_code, reply.json()) == (404, {"detail": "Not Found"})


def test_faults_for_sources_hit_the_sandbox_routes_too(plain):
    api = V2(plain)
    plain.set_faults(1.0, ["503"], count=1)
    assert api.call("GET", "/sandbox/sources").status_code == 503
    assert api.call("GET", "/sandbox/sources").status_code == 200
