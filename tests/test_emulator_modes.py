"""The emulator's odd-but-legal modes, over real HTTP on 127.0.0.1: the 2024 reply shape, a
capped ``limit``, an envelope with ``total``, trickled bodies, errors quoting the request,
form-encoded token replies, the runtime admin endpoint, the ledger options and the CLI."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from airflow_provider_meti.emulator import MetiEmulator
from airflow_provider_meti.emulator.cli import _emulator, build_parser
from tests.features import APITEST2, collection, square_feature

EMAIL, PASSWORD = "demo@meti.local", "demo-password"
OAUTH = {
    "grant_type": "client_credentials",
    "client_id": "demo-client",
    "client_secret": "demo-client-secret",
    "audience": "https://api.meti.millpont.com",
}


def v1_session(emulator: MetiEmulator) -> requests.Session:
    session = requests.Session()
    reply = session.post(
        f"{emulator.base_url}/token", json={"email": EMAIL, "password": PASSWORD}, timeout=10
    )
    session.headers["Authorization"] = f"Bearer {reply.json()['token']}"
    return session


def v2_session(emulator: MetiEmulator) -> requests.Session:
    session = requests.Session()
    token = session.post(emulator.token_url, json=OAUTH, timeout=10).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    return session


@pytest.fixture
def meti() -> Iterator[MetiEmulator]:
    with MetiEmulator(documented_only=True) as emulator:
        yield emulator


# --- reply_shape="2024" ----------------------------------------------------------------------


def test_the_2024_shape_renames_the_keys_of_v1_gets():
    with MetiEmulator(reply_shape="2024") as meti:
        session = v1_session(meti)
        created = session.post(f"{meti.url}/sources", json=collection(APITEST2), timeout=10)
        source_id = created.json()["id"]
        one = session.get(f"{meti.url}/sources/", params={"id": source_id}, timeout=10).json()
        [listed] = session.get(f"{meti.url}/sources", timeout=10).json()
    for source in (one, listed):
        assert source["internal_id"] == "APITEST2"
        assert {"alt_id", "start_at", "end_at", "conflict_with"}.isdisjoint(source)
        assert source["claim_start"] == "2024-11-01T16:25:00.000+00:00"
        assert source["claim_end"] == "2024-11-10T16:25:00.000+00:00"
        assert re.fullmatch(r"41\.14\d*ha \(101\.67ac\)", source["hectares"]), source["hectares"]
        assert source["conflicting_sources"] == []
        assert source["country"] == "United States of America"
        assert source["created_at"].endswith("+00:00")
        assert source["updated_at"].endswith("+00:00")


def test_the_2024_shape_leaves_v2_alone():
    with MetiEmulator(reply_shape="2024") as meti:
        session = v2_session(meti)
        body = {"feature_collection": collection(APITEST2)}
        [source] = session.post(f"{meti.url}/sources", json=body, timeout=10).json()
        assert session.get(f"{meti.url}/sources/{source['id']}", timeout=10).json()["alt_id"] == (
            "APITEST2"
        )


# --- paging modes ----------------------------------------------------------------------------


def test_max_page_size_caps_the_limit_and_the_envelope_can_carry_only_total():
    with MetiEmulator(max_page_size=2, list_envelope="data", envelope_extras=["total"]) as meti:
        meti.ledger.seed(5)
        session = v1_session(meti)
        reply = session.get(f"{meti.url}/sources", params={"limit": 1000}, timeout=10)
        assert reply.status_code == 200
        body = reply.json()
        assert set(body) == {"data", "total"}
        assert body["total"] == 5
        assert len(body["data"]) == 2
        # A limit beyond the usual bound is accepted and capped, as a capping server does.
        v2 = v2_session(meti)
        page = v2.get(f"{meti.url}/sources", params={"limit": 5000, "offset": 4}, timeout=10)
        assert page.status_code == 200
        assert len(page.json()["data"]) == 1


def test_the_default_envelope_keeps_limit_and_offset():
    with MetiEmulator(list_envelope="data") as meti:
        body = v1_session(meti).get(f"{meti.url}/sources", timeout=10).json()
        assert body == {"data": [], "total": 0, "limit": 100, "offset": 0}


# --- trickled bodies -------------------------------------------------------------------------


def _raw_get(meti: MetiEmulator, token: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", meti.port), timeout=10)
    sock.sendall(
        f"GET /sources HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


def test_a_trickled_body_arrives_a_chunk_at_a_time_and_stops_when_the_client_leaves():
    # One byte per 100 s: whatever the load, the second byte cannot come within the test.
    with MetiEmulator(trickle_bytes_per_second=0.01) as meti:
        meti.ledger.seed(3)
        token = v1_session(meti).headers["Authorization"].split()[1]
        sock = _raw_get(meti, token)
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < 1:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            received += chunk
        head, body = received.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        assert length > 100
        assert body == b"["  # one byte of the body, and the rest withheld
        sock.close()


def test_a_quick_trickle_delivers_the_whole_body():
    with MetiEmulator(trickle_bytes_per_second=1_000_000, trickle_chunk_bytes=7) as meti:
        meti.ledger.seed(4)
        body = v1_session(meti).get(f"{meti.url}/sources", timeout=10).json()
        assert len(body) == 4


# --- errors that quote the request -----------------------------------------------------------


def test_errors_quote_the_request_body_when_asked():
    with MetiEmulator(echo_request_in_errors=True) as meti:
        meti.set_faults(1.0, ["503"], paths=["/token"])
        reply = requests.post(
            f"{meti.url}/token", json={"email": EMAIL, "password": PASSWORD}, timeout=10
        )
        assert reply.status_code == 503
        assert PASSWORD in reply.json()["request_body"]
        meti.clear_faults()
        v2 = v2_session(meti)
        bare = v2.post(f"{meti.url}/sources", json=collection(APITEST2), timeout=10)
        assert bare.status_code == 422
        assert json.loads(bare.json()["request_body"]) == collection(APITEST2)
        ok = v2.get(f"{meti.url}/sources", timeout=10)
        assert ok.json() == []


def test_errors_do_not_quote_the_request_by_default(meti):
    meti.set_faults(1.0, ["503"], paths=["/token"])
    reply = requests.post(
        f"{meti.url}/token", json={"email": EMAIL, "password": PASSWORD}, timeout=10
    )
    assert PASSWORD not in reply.text


# --- form-encoded token replies ---------------------------------------------------------------


def test_token_replies_can_be_form_encoded():
    with MetiEmulator(token_reply_form=True) as meti:
        reply = requests.post(meti.token_url, json=OAUTH, timeout=10)
        assert reply.status_code == 200
        assert reply.headers["Content-Type"] == "application/x-www-form-urlencoded"
        fields = parse_qs(reply.text)
        assert fields["scope"] == ["read:sources write:sources delete:sources"]
        token = fields["access_token"][0]
        listed = requests.get(
            f"{meti.url}/sources", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert listed.status_code == 200
        v1 = requests.post(
            f"{meti.url}/token", json={"email": EMAIL, "password": PASSWORD}, timeout=10
        )
        assert "token" in parse_qs(v1.text)


# --- at run time -----------------------------------------------------------------------------


def test_modes_change_at_run_time_through_the_admin_endpoint(meti):
    reply = requests.post(
        f"{meti.url}/_emulator/modes",
        json={"max_page_size": 1, "list_envelope": "data", "envelope_extras": ["total"]},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["max_page_size"] == 1
    meti.ledger.seed(2)
    body = v1_session(meti).get(f"{meti.url}/sources", timeout=10).json()
    assert body == {"data": body["data"], "total": 2}
    assert len(body["data"]) == 1
    bad = requests.post(f"{meti.url}/_emulator/modes", json={"max_page_size": 0}, timeout=10)
    assert bad.status_code == 400
    unknown = requests.post(f"{meti.url}/_emulator/modes", json={"warp": 9}, timeout=10)
    assert unknown.status_code == 400
    assert "warp" in unknown.json()["message"]
    assert meti.set_modes(reply_shape="2024").reply_shape == "2024"
    assert requests.get(f"{meti.url}/_emulator/modes", timeout=10).json()["reply_shape"] == "2024"


@pytest.mark.parametrize(
    "settings",
    [
        {"reply_shape": "1999"},
        {"max_page_size": -1},
        {"envelope_extras": ["count"]},
        {"trickle_bytes_per_second": 0},
        {"echo_request_in_errors": "yes"},
    ],
)
def test_bad_mode_values_are_refused(settings):
    with pytest.raises(ValueError):
        MetiEmulator(**settings)


# --- ledger options and the CLI --------------------------------------------------------------


def _square_country(name: str) -> dict[str, Any]:
    west, south = APITEST2["geometry"]["coordinates"][0][0]
    ring = [
        [west - 1, south - 1],
        [west + 1, south - 1],
        [west + 1, south + 1],
        [west - 1, south + 1],
    ]
    ring.append(ring[0])
    return collection(
        {
            "type": "Feature",
            "properties": {"name": name},
            "geometry": {"type": "Polygon", "coordinates": [ring]},
        }
    )


def test_the_ledger_options_reach_both_ledgers():
    countries = _square_country("Testland")
    with MetiEmulator(concurrent_conflicts="ledger", countries=countries) as meti:
        assert meti.ledger.concurrent_conflicts == "ledger"
        assert meti.sandbox_ledger.concurrent_conflicts == "ledger"
        [created] = meti.ledger.create(collection(APITEST2))
        assert meti.ledger.get(created["id"])["country"] == "Testland"
        [far] = meti.ledger.create(collection(square_feature("far", x=500)))
        assert meti.ledger.get(far["id"])["country"] is None


def test_the_cli_flags_build_the_modes(tmp_path):
    countries = tmp_path / "countries.geojson"
    countries.write_text(json.dumps(_square_country("Testland")))
    args = build_parser().parse_args(
        [
            "--reply-shape=2024",
            "--max-page-size=50",
            "--list-envelope",
            "--envelope-extras=total",
            "--trickle-bytes-per-second=4",
            "--trickle-chunk-bytes=2",
            "--echo-request-in-errors",
            "--token-reply-form",
            "--concurrent-conflicts=ledger",
            f"--countries={countries}",
        ]
    )
    emulator = _emulator(args, ["total"])
    modes = emulator.modes
    assert (modes.reply_shape, modes.max_page_size, modes.envelope_extras) == (
        "2024",
        50,
        ("total",),
    )
    assert (modes.trickle_bytes_per_second, modes.trickle_chunk_bytes) == (4, 2)
    assert modes.echo_request_in_errors and modes.token_reply_form
    assert emulator.list_envelope == "data"
    assert emulator.ledger.concurrent_conflicts == "ledger"
