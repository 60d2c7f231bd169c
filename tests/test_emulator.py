"""The METI emulator over real HTTP on 127.0.0.1: API, conflicts, listing, faults, admin, CLI."""

from __future__ import annotations

import http.client
import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import shapely
from shapely.geometry import Polygon

from airflow_provider_meti.emulator import MetiEmulator
from airflow_provider_meti.emulator.areas import polygons_area_m2
from airflow_provider_meti.emulator.geometry import (
    WGS84_A,
    WGS84_F,
    centroid,
    equal_area,
    shrunk_for_conflicts,
)
from airflow_provider_meti.geojson import parse_timestamp
from tests.features import APITEST2

REPO_ROOT = Path(__file__).resolve().parents[1]
EMAIL, PASSWORD = "demo@meti.local", "demo-password"
EXPIRED = {"status": 401, "message": "Token has expired. Please reauthenticate."}
NOT_FOUND = {"status": 404, "message": "Source not found."}
SOURCE_ID = re.compile(r"^src_[A-Za-z0-9]{13}$")
# What METI documents for APITEST2: the exact WGS84 area of that lon/lat rectangle.
APITEST2_HECTARES = 41.1426

ORIGIN = (-95.99, 32.77)
_E2 = WGS84_F * (2 - WGS84_F)
_W = math.sqrt(1 - _E2 * math.sin(math.radians(ORIGIN[1])) ** 2)
METRES_PER_DEG_LON = WGS84_A / _W * math.cos(math.radians(ORIGIN[1])) * math.pi / 180
METRES_PER_DEG_LAT = WGS84_A * (1 - _E2) / _W**3 * math.pi / 180
NOVEMBER = ("2024-11-01T00:00:00Z", "2024-11-10T00:00:00Z")


# --- helpers -------------------------------------------------------------------------------


class Api:
    """A requests.Session bound to one emulator, with a token once logged in."""

    def __init__(self, emulator: MetiEmulator) -> None:
        self.url = emulator.url
        self.session = requests.Session()
        self.token: str | None = None

    def login(self) -> Api:
        reply = self.session.post(f"{self.url}/token", json={"email": EMAIL, "password": PASSWORD})
        assert reply.status_code == 200, reply.text
        self.token = reply.json()["token"]
        return self

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return self.session.request(
            method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs
        )

    def create(self, *features: dict[str, Any]) -> list[str]:
        reply = self.call("POST", "/sources", json=collection(*features))
        assert reply.status_code == 201, reply.text
        body = reply.json()
        return [body["id"]] if len(features) == 1 else [item["id"] for item in body["data"]]

    def source(self, source_id: str) -> dict[str, Any]:
        reply = self.call("GET", "/sources/", params={"id": source_id})
        assert reply.status_code == 200, reply.text
        return reply.json()

    def listing(self, **params: Any) -> Any:
        reply = self.call("GET", "/sources", params=params)
        assert reply.status_code == 200, reply.text
        return reply.json()


@pytest.fixture
def emulator(emulator_with_extras: MetiEmulator) -> MetiEmulator:
    """These tests cover the emulator itself, extras included."""
    return emulator_with_extras


@pytest.fixture
def api(emulator: MetiEmulator) -> Api:
    return Api(emulator).login()


def test_documented_only_mode_ignores_the_undocumented_filters():
    with MetiEmulator(documented_only=True) as meti:
        a, b = meti.ledger.create(collection(square("A", 0), square("B", 2)))
        api = Api(meti).login()
        for params in ({"alt_id": "A"}, {"conflict": "true"}, {"updated_since": "2999-01-01"}):
            assert [s["id"] for s in api.listing(**params)] == [a["id"], b["id"]], params


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def rect(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    """A Polygon from metres east/north of ORIGIN."""

    def position(x: float, y: float) -> list[float]:
        return [
            ORIGIN[0] + x / METRES_PER_DEG_LON,
            ORIGIN[1] + y / METRES_PER_DEG_LAT,
        ]

    corners = [(west, south), (east, south), (east, north), (west, north), (west, south)]
    return {"type": "Polygon", "coordinates": [[position(x, y) for x, y in corners]]}


def field(
    alt_id: str, geometry: dict[str, Any], window: tuple[str, str] = NOVEMBER, **properties: Any
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": alt_id,
        "properties": {"start_at": window[0], "end_at": window[1], **properties},
        "geometry": geometry,
    }


def square(alt_id: str, x: float, **properties: Any) -> dict[str, Any]:
    """A 100 m square, ``x`` hundred-metre steps east (apart when x differs by 2 or more)."""
    return field(alt_id, rect(x * 100, 0, x * 100 + 100, 100), **properties)


# --- the documented flow -------------------------------------------------------------------


def test_the_documented_flow(emulator):
    session = requests.Session()
    reply = session.post(f"{emulator.url}/token", json={"email": EMAIL, "password": PASSWORD})
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"token", "expires_in"}
    assert body["expires_in"] == 3600
    headers = {"Authorization": f"Bearer {body['token']}"}

    reply = session.post(f"{emulator.url}/sources", json=collection(APITEST2), headers=headers)
    assert reply.status_code == 201
    created = reply.json()
    assert set(created) == {"id", "message"}
    assert SOURCE_ID.match(created["id"])
    assert created["message"] == "Source created successfully."

    reply = session.get(f"{emulator.url}/sources/?id={created['id']}", headers=headers)
    assert reply.status_code == 200
    source = reply.json()
    assert source["id"] == created["id"]
    assert source["alt_id"] == "APITEST2"
    assert source["start_at"] == "2024-11-01T16:25:00.000Z"
    assert source["end_at"] == "2024-11-10T16:25:00.000Z"
    assert source["geojson"] == APITEST2
    assert source["hectares"] == pytest.approx(APITEST2_HECTARES, abs=1e-4)
    assert source["country"] == "XX"
    assert source["centroid"] == pytest.approx([-95.98825, 32.77365])
    assert source["conflict"] is False
    assert source["conflict_with"] == []
    assert source["percent_overlap"] is None
    assert parse_timestamp(source["created_at"]) == parse_timestamp(source["updated_at"])

    reply = session.delete(f"{emulator.url}/sources/?id={created['id']}", headers=headers)
    assert (reply.status_code, reply.json()) == (200, {"message": "Source deleted successfully."})
    reply = session.get(f"{emulator.url}/sources/?id={created['id']}", headers=headers)
    assert (reply.status_code, reply.json()) == (404, NOT_FOUND)


def test_one_source_is_reachable_with_or_without_the_slash_and_by_path(api):
    (source_id,) = api.create(APITEST2)
    for path in (f"/sources?id={source_id}", f"/sources/?id={source_id}", f"/sources/{source_id}"):
        assert api.call("GET", path).json()["id"] == source_id
    assert api.call("DELETE", f"/sources/{source_id}").status_code == 200
    assert api.call("DELETE", f"/sources?id={source_id}").json() == NOT_FOUND


def test_an_empty_id_is_a_bad_request(api):
    assert api.call("GET", "/sources/?id=").status_code == 400


def test_unknown_paths_and_methods(api):
    assert api.call("GET", "/nothing").status_code == 404
    reply = api.call("PUT", "/sources")
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "DELETE, GET, POST"
    assert api.call("GET", "/token").status_code == 405


# --- tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 400),
        (json.dumps({"email": EMAIL}).encode(), 400),
        (json.dumps({"password": PASSWORD}).encode(), 400),
        (json.dumps({"email": EMAIL, "password": 7}).encode(), 400),
        (json.dumps({"email": EMAIL, "password": "wrong"}).encode(), 401),
        (json.dumps({"email": "who@meti.local", "password": PASSWORD}).encode(), 401),
    ],
)
def test_token_errors(emulator, body, status):
    reply = requests.post(f"{emulator.url}/token", data=body, timeout=10)
    assert reply.status_code == status
    assert reply.json()["status"] == status
    assert "token" not in reply.json()


def test_tokens_are_random_and_counted(emulator):
    first, second = Api(emulator).login().token, Api(emulator).login().token
    assert first != second and len(first or "") >= 40
    stats = emulator.stats()
    assert stats["token_requests"] == stats["tokens_issued"] == 2


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}, {"Authorization": ""}],
)
def test_sources_need_a_valid_token(emulator, headers):
    reply = requests.get(f"{emulator.url}/sources", headers=headers, timeout=10)
    assert (reply.status_code, reply.json()) == (401, EXPIRED)


def test_a_token_expires_after_its_ttl(emulator, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(emulator.state.tokens, "_clock", lambda: now[0])  # the store's clock
    emulator.token_ttl = 0.3
    api = Api(emulator).login()
    now[0] += 0.29
    assert api.call("GET", "/sources").status_code == 200
    now[0] += 0.02
    reply = api.call("GET", "/sources")
    assert (reply.status_code, reply.json()) == (401, EXPIRED)


def test_fractional_ttl_is_reported_as_is(emulator):
    emulator.token_ttl = 1.5
    reply = requests.post(f"{emulator.url}/token", json={"email": EMAIL, "password": PASSWORD})
    assert reply.json()["expires_in"] == 1.5


def test_expire_all_tokens(api, emulator):
    assert emulator.expire_all_tokens() == 1
    reply = api.call("POST", "/sources", json=collection(APITEST2))
    assert (reply.status_code, reply.json()) == (401, EXPIRED)
    assert emulator.ledger.count() == 0


def test_added_users_can_log_in(emulator):
    emulator.add_user("ops@example.com", "p@ss: w/ spaces")
    reply = requests.post(
        f"{emulator.url}/token", json={"email": "ops@example.com", "password": "p@ss: w/ spaces"}
    )
    assert reply.status_code == 200


# --- create --------------------------------------------------------------------------------


def test_several_features_get_ids_in_input_order(api, emulator):
    features = [square(f"F-{i}", 2 * i, methodology="m1", tags=["a"]) for i in range(3)]
    reply = api.call("POST", "/sources", json=collection(*features))
    assert reply.status_code == 201
    body = reply.json()
    assert body["message"] == "Sources created successfully."
    assert [item["alt_id"] for item in body["data"]] == ["F-0", "F-1", "F-2"]
    assert all(SOURCE_ID.match(item["id"]) for item in body["data"])
    stored = api.source(body["data"][1]["id"])
    # The ledger does not copy descriptive properties (v2 sends them at the top level).
    assert (stored["methodology"], stored["tags"]) == (None, None)
    assert emulator.stats()["sources_created"] == 3


def test_one_invalid_feature_rejects_the_whole_collection(api, emulator):
    short = field("B", rect(300, 0, 400, 100), ("2024-11-01T00:00:00Z", "2024-11-02T00:00:00Z"))
    reply = api.call("POST", "/sources", json=collection(square("A", 0), short))
    assert reply.status_code == 422
    assert reply.json() == {
        "status": 422,
        "message": "One or more features in the FeatureCollection are invalid or missing "
        "required fields: feature 1 properties.end_at: must be more than one day after "
        "start_at (got 2024-11-01T00:00:00.000Z .. 2024-11-02T00:00:00.000Z)",
    }
    assert emulator.ledger.count() == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Request body is not valid JSON; expected a GeoJSON FeatureCollection."),
        (json.dumps(APITEST2).encode(), "Invalid FeatureCollection: type: must be"),
    ],
)
def test_a_body_that_is_not_a_feature_collection_is_a_bad_request(api, emulator, body, message):
    reply = api.call("POST", "/sources", data=body)
    assert reply.status_code == 400
    assert reply.json()["message"].startswith(message)
    assert emulator.ledger.count() == 0


def test_ids_follow_the_seed(emulator):
    with MetiEmulator(seed=42) as first, MetiEmulator(seed=42) as second:
        ids = [Api(meti).login().create(APITEST2) for meti in (first, second, emulator)]
    assert ids[0] == ids[1] != ids[2]


# --- conflicts -----------------------------------------------------------------------------


def conflict_state(api: Api, source_id: str) -> tuple[bool, list[str]]:
    source = api.source(source_id)
    return source["conflict"], source["conflict_with"]


def test_overlapping_sources_conflict_both_ways(api):
    (first,) = api.create(field("A", rect(0, 0, 100, 100)))
    (second,) = api.create(field("B", rect(50, 0, 150, 100)))
    assert conflict_state(api, first) == (True, [second])
    assert conflict_state(api, second) == (True, [first])
    assert api.source(first)["percent_overlap"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(("overlap_m", "conflicts"), [(5, False), (8, False), (10, True)])
def test_a_strip_overlap_conflicts_from_10_metres(api, overlap_m, conflicts):
    (first,) = api.create(field("A", rect(0, 0, 100, 100)))
    (second,) = api.create(field("B", rect(100 - overlap_m, 0, 200, 100)))
    assert conflict_state(api, second) == ((True, [first]) if conflicts else (False, []))
    assert api.source(first)["conflict"] is conflicts


def test_neighbours_sharing_an_edge_do_not_conflict(api):
    first, second = api.create(field("A", rect(0, 0, 100, 100)), field("B", rect(100, 0, 200, 100)))
    assert conflict_state(api, first) == conflict_state(api, second) == (False, [])


def test_a_small_square_conflicts_only_when_submitted_before_the_big_one(api):
    big = field("big", rect(0, 0, 200, 200))
    small = field("small", rect(90, 90, 105, 105))
    (big_id,) = api.create(big)
    (small_id,) = api.create(small)
    assert conflict_state(api, small_id) == (False, [])
    assert conflict_state(api, big_id) == (False, [])
    api.call("DELETE", f"/sources/?id={big_id}")
    (big_id,) = api.create(big)
    assert conflict_state(api, small_id) == (True, [big_id])
    assert conflict_state(api, big_id) == (True, [small_id])


def test_resubmitting_the_same_feature_creates_a_conflicting_duplicate(api):
    (first,) = api.create(APITEST2)
    (second,) = api.create(APITEST2)
    assert first != second
    assert conflict_state(api, second) == (True, [first])
    assert api.source(first)["percent_overlap"] == api.source(second)["percent_overlap"] == 1.0


@pytest.mark.parametrize(
    ("window", "conflicts"),
    [
        (("2024-11-10T00:00:00Z", "2024-11-20T00:00:00Z"), False),  # starts at the other's end
        (("2024-11-09T23:59:59Z", "2024-11-20T00:00:00Z"), True),
        (("2024-10-01T00:00:00Z", "2024-11-01T00:00:00Z"), False),  # ends at the other's start
    ],
)
def test_windows_are_half_open(api, window, conflicts):
    (first,) = api.create(field("A", rect(0, 0, 100, 100)))
    (second,) = api.create(field("B", rect(0, 0, 100, 100), window))
    assert api.source(second)["conflict"] is conflicts
    assert api.source(first)["conflict"] is conflicts


def test_features_of_one_collection_conflict_with_each_other(api):
    first, second, third = api.create(
        field("A", rect(0, 0, 100, 100)),
        field("B", rect(50, 0, 150, 100)),
        field("C", rect(400, 0, 500, 100)),
    )
    assert conflict_state(api, first) == (True, [second])
    assert conflict_state(api, second) == (True, [first])
    assert conflict_state(api, third) == (False, [])


def test_deleting_a_source_releases_its_neighbours(api):
    (base,) = api.create(field("A", rect(0, 0, 200, 100)))
    (left,) = api.create(field("B", rect(-50, 0, 50, 100)))
    (right,) = api.create(field("C", rect(150, 0, 250, 100)))
    assert conflict_state(api, base) == (True, [left, right])
    assert api.source(base)["percent_overlap"] == pytest.approx(0.5, abs=0.01)
    before = parse_timestamp(api.source(base)["updated_at"])

    api.call("DELETE", f"/sources/?id={left}")
    assert conflict_state(api, base) == (True, [right])
    assert api.source(base)["percent_overlap"] == pytest.approx(0.25, abs=0.01)
    assert parse_timestamp(api.source(base)["updated_at"]) == before  # no trigger bumps it

    api.call("DELETE", f"/sources/?id={right}")
    source = api.source(base)
    assert (source["conflict"], source["conflict_with"], source["percent_overlap"]) == (
        False,
        [],
        None,
    )


def test_conflicts_are_found_among_many_stored_sources(emulator, api):
    emulator.ledger.seed(20_000)
    (first,) = api.create(field("A", rect(0, 0, 100, 100)))
    (second,) = api.create(field("B", rect(20, 20, 80, 80)))
    assert conflict_state(api, first) == (True, [second])


def planar(*rings: list[tuple[float, float]]) -> Polygon:
    """A polygon given in metres east/north of ORIGIN, in lon/lat."""

    def position(x: float, y: float) -> tuple[float, float]:
        return (ORIGIN[0] + x / METRES_PER_DEG_LON, ORIGIN[1] + y / METRES_PER_DEG_LAT)

    shell, *holes = ([position(*p) for p in [*ring, ring[0]]] for ring in rings)
    return Polygon(shell, holes)


def shrunk_intersects(new: Polygon, other: Polygon) -> bool:
    return bool(shapely.intersects(other, shrunk_for_conflicts(new)))


def box(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def test_conflict_geometry_edge_cases():
    big = planar(box(0, 0, 100, 100))
    shrunk_intersects(planar(box(41, 41, 59, 59)), big)  # shrinks to (almost) nothing: no error
    assert not shrunk_intersects(planar(box(45, 45, 55, 55)), big)
    ring_with_hole = planar(box(0, 0, 100, 100), box(20, 20, 80, 80))
    assert not shrunk_intersects(ring_with_hole, planar(box(30, 30, 70, 70)))
    assert shrunk_intersects(ring_with_hole, planar(box(5, 5, 70, 70)))
    # Thin diagonal overlap: two triangles sharing a hypotenuse, pushed 10 m / 8 m together.
    lower = planar([(0, 0), (1000, 0), (0, 1000)])
    for push, expected in ((10, True), (8, False)):
        shift = push * math.sqrt(2)
        upper = planar([(1000 - shift, 0), (1000, 1000), (0, 1000 - shift)])
        assert shrunk_intersects(lower, upper) is expected


def test_overlap_share_and_area_with_holes():
    ring_with_hole = equal_area(planar(box(0, 0, 100, 100), box(25, 25, 75, 75)))
    half = equal_area(planar(box(0, 0, 50, 100)))
    share = shapely.intersection(ring_with_hole, half).area / ring_with_hole.area
    assert share == pytest.approx(0.5, rel=1e-6)
    lon_lat = [(0.0, 0.0), (0.01, 0.0), (0.01, 0.01), (0.0, 0.01), (0.0, 0.0)]
    hole = [(0.0025, 0.0025), (0.0025, 0.0075), (0.0075, 0.0075), (0.0075, 0.0025)]
    whole = polygons_area_m2([[lon_lat]])
    with_hole = polygons_area_m2([[lon_lat, [*hole, hole[0]]]])
    assert with_hole == pytest.approx(whole * 0.75, rel=1e-6)
    assert centroid(Polygon(lon_lat, [hole])) == pytest.approx((0.005, 0.005))


# --- listing -------------------------------------------------------------------------------


def test_listing_is_a_bare_array_in_creation_order(api):
    ids = api.create(*[square(f"F-{i}", 2 * i) for i in range(5)])
    reply = api.call("GET", "/sources")
    assert [source["id"] for source in reply.json()] == ids
    assert reply.headers["X-Total-Count"] == "5"


def test_listing_pages_with_limit_and_offset(api):
    ids = api.create(*[square(f"F-{i}", 2 * i) for i in range(7)])
    pages = [api.listing(limit=3, offset=offset) for offset in (0, 3, 6, 9)]
    assert [[source["id"] for source in page] for page in pages] == [
        ids[0:3],
        ids[3:6],
        ids[6:7],
        [],
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "abc"},
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
        {"offset": "x"},
        {"conflict": "maybe"},
        {"updated_since": "yesterday"},
        {"created_since": "2024-13-01"},
    ],
)
def test_bad_listing_parameters_are_bad_requests(api, params):
    reply = api.call("GET", "/sources", params=params)
    assert reply.status_code == 400
    assert reply.json()["status"] == 400


def test_listing_filters(api, emulator):
    a, b, c = (
        emulator.ledger.create(collection(square(alt_id, x)), fields=fields)[0]["id"]
        for alt_id, x, fields in (
            ("A", 0, {"methodology": "soil", "steward_id": "s1", "project_id": "p1"}),
            ("B", 2, {"methodology": "soil", "steward_id": "s2", "outcome_reporting_year": 2024}),
            ("C", 4, {"methodology": "water", "project_id": "p1", "outcome_reporting_year": 2025}),
        )
    )
    (d,) = api.create(square("A", 0.5))  # same alt_id as A, overlapping it

    def ids(**params: Any) -> list[str]:
        return [source["id"] for source in api.listing(**params)]

    assert ids(methodology="soil") == [a, b]
    assert ids(steward_id="s2") == [b]
    assert ids(project_id="p1") == [a, c]
    assert ids(outcome_reporting_year="2025") == [c]
    assert ids(alt_id="A") == [a, d]
    assert ids(conflict="true") == [a, d]
    assert ids(conflict="false") == [b, c]
    assert ids(methodology="soil", project_id="p1") == [a]
    assert ids(methodology="none") == []


def test_listing_since_filters(api):
    (_old,) = api.create(square("old", 0))
    time.sleep(0.01)
    middle = time.time()
    time.sleep(0.01)
    (new,) = api.create(square("new", 2))
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(middle)) + f"{middle % 1:.6f}"[1:] + "Z"
    assert [s["id"] for s in api.listing(created_since=since)] == [new]
    assert [s["id"] for s in api.listing(updated_since=since)] == [new]
    (overlapping,) = api.create(square("touch-old", 0.5))  # no trigger bumps old's updated_at
    assert [s["id"] for s in api.listing(updated_since=since)] == [new, overlapping]
    assert [s["id"] for s in api.listing(created_since=since)] == [new, overlapping]


@pytest.mark.parametrize("key", ["data", "sources", "items", "results"])
def test_listing_envelope(emulator, key):
    emulator.list_envelope = key
    api = Api(emulator).login()
    ids = api.create(*[square(f"F-{i}", 2 * i) for i in range(3)])
    body = api.listing(limit=2, offset=1)
    assert set(body) == {key, "total", "limit", "offset"}
    assert [source["id"] for source in body[key]] == ids[1:3]
    assert (body["total"], body["limit"], body["offset"]) == (3, 2, 1)


def test_listing_envelope_set_at_construction():
    with MetiEmulator(list_envelope="data") as meti:
        assert Api(meti).login().listing() == {"data": [], "total": 0, "limit": 100, "offset": 0}


def test_an_unknown_envelope_is_refused(emulator):
    with pytest.raises(ValueError, match="list_envelope"):
        emulator.list_envelope = "rows"


@pytest.mark.slow
def test_listing_100000_sources_in_pages_of_1000_returns_each_once(emulator, api):
    emulator.list_envelope = "data"
    started = time.perf_counter()
    emulator.ledger.seed(100_000)
    seeded = time.perf_counter() - started
    seen: list[bytes] = []
    slowest = 0.0
    for offset in range(0, 101_000, 1000):
        page_started = time.perf_counter()
        reply = api.call("GET", "/sources", params={"limit": 1000, "offset": offset})
        slowest = max(slowest, time.perf_counter() - page_started)
        # Parsing 57 MB of JSON would measure the client; the ids are enough here.
        seen.extend(re.findall(rb'"id":"(src_[A-Za-z0-9]{13})"', reply.content))
        assert reply.content.endswith(b',"total":100000,"limit":1000,"offset":%d}' % offset)
    assert len(seen) == len(set(seen)) == 100_000
    print(f"\nseeded 100,000 sources in {seeded:.1f} s; slowest page {slowest:.2f} s")


def test_delete_by_alt_id(api, emulator):
    api.create(square("twice", 0))
    api.create(square("twice", 4))
    (kept,) = api.create(square("other", 8))
    reply = api.call("DELETE", "/sources", params={"alt_id": "twice"})
    assert reply.json() == {"message": "Sources deleted successfully.", "count": 2}
    assert [source["id"] for source in emulator.ledger.all()] == [kept]
    assert api.call("DELETE", "/sources", params={"alt_id": "twice"}).json() == NOT_FOUND
    assert api.call("DELETE", "/sources").status_code == 400


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "503"])
def test_server_error_faults(api, emulator, kind):
    emulator.set_faults(rate=1.0, kinds=[kind])
    reply = api.call("GET", "/sources")
    assert reply.status_code == int(kind)
    assert reply.json()["status"] == int(kind)
    assert emulator.stats()["faults"] == {kind: 1}
    assert emulator.stats()["responses"][kind] == 1


@pytest.mark.parametrize(("seconds", "header"), [(1, "1"), (0.2, "0.2"), (2.0, "2")])
def test_429_carries_retry_after(api, emulator, seconds, header):
    emulator.set_faults(rate=1.0, kinds=["429"], retry_after=seconds)
    reply = api.call("GET", "/sources")
    assert reply.status_code == 429
    assert reply.headers["Retry-After"] == header


def test_drop_closes_the_connection_before_processing(api, emulator):
    emulator.set_faults(rate=1.0, kinds=["drop"])
    with pytest.raises(requests.ConnectionError):
        api.call("POST", "/sources", json=collection(APITEST2))
    assert emulator.ledger.count() == 0
    emulator.clear_faults()
    assert api.call("GET", "/sources").status_code == 200  # the session recovers


def test_stored_then_drop_stores_and_loses_the_answer(api, emulator):
    emulator.set_faults(rate=1.0, kinds=["stored_then_drop"])
    with pytest.raises(requests.ConnectionError):
        api.call("POST", "/sources", json=collection(APITEST2))
    assert [source["alt_id"] for source in emulator.ledger.all()] == ["APITEST2"]


def test_latency_delays_a_normal_answer(api, emulator):
    emulator.set_faults(rate=1.0, kinds=["latency"], latency=0.3)
    started = time.perf_counter()
    assert api.call("GET", "/sources").status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_faults_can_be_limited_in_number(api, emulator):
    emulator.set_faults(rate=1.0, kinds=["503"], count=2)
    statuses = [api.call("GET", "/sources").status_code for _ in range(4)]
    assert statuses == [503, 503, 200, 200]


def test_faults_can_target_methods(api, emulator):
    emulator.set_faults(rate=1.0, kinds=["503"], methods=["post"])
    assert api.call("GET", "/sources").status_code == 200
    assert api.call("POST", "/sources", json=collection(APITEST2)).status_code == 503


def test_token_requests_are_faulted_only_when_asked(emulator):
    emulator.set_faults(rate=1.0, kinds=["503"])
    assert Api(emulator).login().token
    emulator.set_faults(rate=1.0, kinds=["503"], paths=["/token"])
    reply = requests.post(f"{emulator.url}/token", json={"email": EMAIL, "password": PASSWORD})
    assert reply.status_code == 503


def fault_sequence(emulator: MetiEmulator, api: Api, seed: int) -> list[int]:
    emulator.set_faults(rate=0.5, kinds=["500", "503", "429"], seed=seed, retry_after=0)
    return [api.call("GET", "/sources").status_code for _ in range(40)]


def test_the_same_seed_gives_the_same_faults(api, emulator):
    first = fault_sequence(emulator, api, seed=7)
    assert fault_sequence(emulator, api, seed=7) == first
    assert fault_sequence(emulator, api, seed=8) != first
    assert {500, 503, 429, 200} == set(first)


def test_fault_counters(api, emulator):
    statuses = fault_sequence(emulator, api, seed=1)
    stats = emulator.stats()
    assert sum(stats["faults"].values()) == sum(status != 200 for status in statuses)
    assert stats["requests"]["GET /sources"] == 40


@pytest.mark.parametrize(
    "settings",
    [
        {"rate": 2},
        {"rate": 0.5, "kinds": ["teapot"]},
        {"rate": 0.5, "kinds": []},
        {"rate": 0.5, "retry_after": -1},
        {"rate": 0.5, "count": -1},
        {"rate": True},
    ],
)
def test_invalid_fault_settings_are_refused(emulator, settings):
    with pytest.raises(ValueError):
        emulator.set_faults(**settings)
    reply = requests.post(f"{emulator.url}/_emulator/faults", json=settings, timeout=10)
    assert reply.status_code == 400


# --- connections ---------------------------------------------------------------------------


def test_connections_are_kept_alive(emulator):
    host, port = emulator.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for _ in range(3):
            connection.request("GET", "/sources")
            reply = connection.getresponse()
            assert reply.status == 401
            assert int(reply.getheader("Content-Length")) == len(reply.read())
            assert reply.getheader("Connection") != "close"
    finally:
        connection.close()


def test_stop_leaves_no_thread_behind():
    before = set(threading.enumerate())
    meti = MetiEmulator().start()
    api = Api(meti).login()  # keeps a connection open
    api.create(APITEST2)
    meti.set_faults(rate=1.0, kinds=["latency"], latency=30)
    outcome: list[BaseException | int] = []

    def slow_request() -> None:
        try:
            outcome.append(api.call("GET", "/sources").status_code)
        except requests.ConnectionError as error:
            outcome.append(error)

    slow = threading.Thread(target=slow_request)
    slow.start()
    time.sleep(0.1)
    meti.stop()
    slow.join(20)  # the latency fault would hold the answer for 30 s: stop() cut it
    assert not slow.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError)
    assert set(threading.enumerate()) == before
    meti.stop()  # idempotent


def test_the_url_needs_a_running_server():
    meti = MetiEmulator()
    with pytest.raises(RuntimeError):
        _ = meti.url
    with meti:
        assert meti.url == f"http://127.0.0.1:{meti.port}"
        with pytest.raises(RuntimeError):
            meti.start()


def test_a_base_path_prefixes_the_api(prefixed_emulator):
    meti = prefixed_emulator
    assert meti.base_url == meti.url + "/meti/api"
    token = requests.post(f"{meti.base_url}/token", json={"email": EMAIL, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token.json()['token']}"}
    reply = requests.post(f"{meti.base_url}/sources", json=collection(APITEST2), headers=headers)
    assert reply.status_code == 201
    assert requests.get(f"{meti.url}/sources", headers=headers).status_code == 404
    assert requests.get(f"{meti.url}/meti/apiX/sources", headers=headers).status_code == 404
    for admin_url in (meti.url, meti.base_url):
        stats = requests.get(f"{admin_url}/_emulator/stats").json()
        assert stats["requests"] == {"POST /token": 1, "POST /sources": 1}


def test_base_path_is_normalised():
    assert MetiEmulator(base_path="meti/api/").base_path == "/meti/api"
    assert MetiEmulator(base_path="/").base_path == ""


# --- admin endpoints -----------------------------------------------------------------------


def admin(emulator: MetiEmulator, method: str, name: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{emulator.url}/_emulator/{name}", json=body, timeout=10)


def test_admin_faults(api, emulator):
    reply = admin(emulator, "POST", "faults", {"rate": 1, "kinds": ["503"], "methods": ["GET"]})
    assert reply.status_code == 200
    assert reply.json()["faults"]["kinds"] == ["503"]
    assert api.call("GET", "/sources").status_code == 503
    assert admin(emulator, "GET", "faults").json()["rate"] == 1
    assert admin(emulator, "POST", "faults", {}).status_code == 200
    assert api.call("GET", "/sources").status_code == 200


def test_admin_endpoints_are_never_faulted_nor_counted(emulator):
    emulator.set_faults(rate=1.0, kinds=["503"], paths=["/"])
    assert admin(emulator, "GET", "stats").status_code == 200
    assert emulator.stats()["requests"] == {}


def test_admin_expire_tokens(api, emulator):
    assert admin(emulator, "POST", "expire-tokens").json()["expired"] == 1
    assert api.call("GET", "/sources").json() == EXPIRED


def test_admin_stats(api, emulator):
    api.create(APITEST2)
    stats = admin(emulator, "GET", "stats").json()
    assert stats["token_requests"] == stats["tokens_issued"] == 1
    assert stats["requests"] == {"POST /token": 1, "POST /sources": 1}
    assert stats["responses"] == {"200": 1, "201": 1}
    assert (stats["sources_created"], stats["sources_stored"], stats["active_tokens"]) == (1, 1, 1)
    assert stats["fault_plan"]["rate"] == 0


def test_admin_reset(api, emulator):
    api.create(APITEST2)
    assert admin(emulator, "POST", "reset").status_code == 200
    assert emulator.ledger.count() == 0
    assert emulator.stats()["requests"] == {}
    assert api.call("GET", "/sources").json() == EXPIRED
    assert Api(emulator).login().listing() == []


def test_admin_seed(api, emulator):
    reply = admin(emulator, "POST", "seed", {"count": 50, "methodology": "bench"})
    assert reply.status_code == 201
    assert (reply.json()["created"], reply.json()["total"]) == (50, 50)
    sources = api.listing(limit=1000)
    assert len(sources) == 50
    assert all(s["methodology"] == "bench" and not s["conflict"] for s in sources)
    assert len({s["alt_id"] for s in sources}) == 50
    for bad in ({}, {"count": -1}, {"count": "many"}, {"count": 1, "colour": "red"}):
        assert admin(emulator, "POST", "seed", bad).status_code == 400


def test_admin_unknown_route(emulator):
    assert admin(emulator, "GET", "nothing").status_code == 404
    assert admin(emulator, "GET", "reset").status_code == 405


def test_seeded_sources_do_not_overlap_and_are_indexed(emulator, api):
    emulator.ledger.seed(3)
    first = emulator.ledger.all()[0]
    (copy_id,) = api.create(field("copy", first["geojson"]["geometry"]))
    assert conflict_state(api, copy_id) == (True, [first["id"]])


# --- command line --------------------------------------------------------------------------

EMULATOR_COMMAND = [sys.executable, "-m", "airflow_provider_meti.emulator"]


def test_cli_serves_until_sigterm():
    process = subprocess.Popen(
        [*EMULATOR_COMMAND, "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        match = re.fullmatch(r"METI emulator serving on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        url = match.group(1)
        reply = requests.post(f"{url}/token", json={"email": EMAIL, "password": PASSWORD})
        assert reply.status_code == 200
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert stderr == ""  # no request lines, no password
    assert "stopped" in stdout


def test_cli_refuses_unknown_fault_kinds():
    result = subprocess.run(
        [*EMULATOR_COMMAND, "--port", "0", "--fault-rate", "0.5", "--fault-kinds", "teapot"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert "kinds must be" in result.stderr
