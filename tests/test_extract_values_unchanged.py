"""The extract writes the values it wrote when every value was decoded and encoded again.

A scripted server on 127.0.0.1 serves fixed pages (v1 arrays and v2 envelopes, the 2024
spellings, a stored whole Feature, MultiPolygons, unicode, numbers beyond 64 bits, a page
only the plain decoder reads). Each line of the NDJSON extract must parse to what today's
writer, fed the decoded pages, writes for it; GeoParquet must read back as it did.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_meti.auth import EmailPasswordAuth
from airflow_provider_meti.client import MetiClient
from airflow_provider_meti.operators.meti import MetiListSourcesOperator
from airflow_provider_meti.outputs.features import write_features
from airflow_provider_meti.raw_pages import RawPage, detached, read_raw_page
from airflow_provider_meti.replies import unwrap_page
from airflow_provider_meti.settings import ClientSettings
from tests.airflow_context import make_context

SQUARE = [[[0.1, 0.2], [0.3, 0.2], [0.3, 0.4], [0.1, 0.2]]]
MULTI = {"type": "MultiPolygon", "coordinates": [SQUARE, [[[5, 5], [6, 5], [6, 6], [5, 5]]]]}

# Pretty-printed, as a server might: line breaks inside values must not split a line.
PAGE_V1_2024 = json.dumps(
    [
        {
            "id": "src_1",
            "internal_id": "APITEST2",
            "claim_start": "2024-11-01T16:25:00.000+00:00",
            "claim_end": "2024-11-10T16:25:00.000+00:00",
            "hectares": "41.142643914938ha (101.67ac)",
            "conflicting_sources": ["src_9"],
            "geojson": {"type": "Polygon", "coordinates": SQUARE},
        },
        {
            "id": "src_2",
            "alt_id": "new",
            "internal_id": "old",
            "claim_start": "2024-01-01",
            "start_at": None,
            "geojson": {"type": "Feature", "geometry": MULTI, "properties": {"name": "x"}},
            "name": "Zürich — 東京 🌍",
        },
        {
            "internal_id": "no-id",
            "hectares": "unreadable",
            "geojson": MULTI,
            "big": 123456789012345678901234567890,
            "huge": 1e400,
            "precise": 0.1000000000000000055511151231257827,
            "whole": 1.0,
            "nested": {"a": [1, {"b": None}], "c": "é"},
        },
    ],
    indent=2,
    ensure_ascii=False,
).replace('"huge": Infinity', '"huge": 1e400')
PAGE_V2_ENVELOPE = json.dumps(
    {
        "total": 6,
        "items": "not the sources",
        "data": [
            {
                "id": "src_4",
                "alt_id": "f4",
                "start_at": "2025-01-01T00:00:00Z",
                "end_at": "2025-12-31T00:00:00Z",
                "hectares": 12.5,
                "tags": ["a", "b"],
                "outcome_reporting_year": 2025,
                "conflict_with": [],
                "geojson": {"type": "Feature", "properties": {}},
            },
            {"id": "src_5", "geojson": "not a geometry", "text": "\\ud800 is no character"},
        ],
    },
    separators=(",", ":"),
)
# NaN is no JSON and msgspec refuses a lone surrogate: only the plain decoder (Python's
# json) reads this page, so it goes that way.
PAGE_NAN = '{"total":6,"sources":[{"id":"src_6","hectares":NaN,"text":"\\ud800","geojson":null}]}'
PAGES = {0: PAGE_V1_2024, 3: PAGE_V2_ENVELOPE, 5: PAGE_NAN}


class _Scripted(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._reply(json.dumps({"token": "scripted-token", "expires_in": 3600}))

    def do_GET(self) -> None:
        offset = int(parse_qs(urlsplit(self.path).query).get("offset", ["0"])[0])
        self._reply(PAGES.get(offset, "[]"))

    def _reply(self, text: str) -> None:
        body = text.encode("utf-8", "surrogatepass")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def scripted_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def make_client(url: str) -> MetiClient:
    auth = EmailPasswordAuth(token_url=f"{url}/token", email="e@x", password="pw-unused")
    return MetiClient(ClientSettings(base_url=url, timeout=5), auth)


def todays_lines() -> list[Any]:
    """Today's writer over pages decoded in full, straight from the scripted bodies."""
    pages = [unwrap_page(json.loads(PAGES[offset]))[0] for offset in sorted(PAGES)]
    handle = io.StringIO()
    write_features(handle, pages, as_collection=False)
    return [json.loads(line) for line in handle.getvalue().splitlines()]


@pytest.fixture
def scripted_connection(scripted_url, monkeypatch) -> None:
    from airflow_provider_meti.hooks import meti as meti_hooks

    monkeypatch.setattr(meti_hooks, "_clients", {})
    spec = {"conn_type": "meti", "host": scripted_url, "login": "e@x", "password": "pw"}
    monkeypatch.setenv("AIRFLOW_CONN_METI_DEFAULT", json.dumps(spec))


def test_two_of_three_pages_are_read_raw(scripted_url):
    with make_client(scripted_url) as client:
        pages = list(client.iter_raw_source_pages(page_size=3))
    assert [isinstance(page, RawPage) for page in pages] == [True, True, False]
    assert [len(page) for page in pages] == [3, 2, 1]


def test_ndjson_lines_parse_to_todays_values(scripted_connection, tmp_path):
    target = tmp_path / "sources.ndjson"
    operator = MetiListSourcesOperator(task_id="l", output_path=str(target), page_size=3)
    assert operator.execute(make_context())["count"] == 6
    text = target.read_bytes().decode("utf-8")  # valid UTF-8 throughout
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines == todays_lines()
    assert lines[0]["properties"]["alt_id"] == "APITEST2"
    assert lines[0]["properties"]["hectares"] == 41.142643914938
    assert lines[1]["geometry"] == MULTI and lines[1]["properties"]["alt_id"] == "new"
    assert lines[1]["properties"]["start_at"] == "2024-01-01"
    assert lines[2]["id"] is None
    assert lines[2]["properties"]["big"] == 123456789012345678901234567890
    assert lines[2]["properties"]["huge"] == float("inf")
    assert lines[4]["properties"]["text"] == "\\ud800 is no character"
    assert lines[5]["properties"]["hectares"] is None  # NaN, as before
    assert lines[5]["properties"]["text"] == "\ud800"


def test_feature_collection_parses_to_todays_values(scripted_connection, tmp_path):
    target = tmp_path / "sources.geojson"
    MetiListSourcesOperator(task_id="l", output_path=str(target), page_size=3).execute(
        make_context()
    )
    assert json.loads(target.read_bytes())["features"] == todays_lines()


def test_geoparquet_reads_back_as_today(scripted_connection, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from airflow_provider_meti.outputs.parquet import write_geoparquet

    target = tmp_path / "sources.parquet"
    MetiListSourcesOperator(task_id="l", output_path=str(target), page_size=3).execute(
        make_context()
    )
    pages = [unwrap_page(json.loads(PAGES[offset]))[0] for offset in sorted(PAGES)]
    expected = io.BytesIO()
    write_geoparquet(expected, pages)
    expected.seek(0)
    assert pq.read_table(target).equals(pq.read_table(expected))


def test_a_detached_source_keeps_no_reference_to_its_reply():
    body = b'[{"id": "src_1", "geojson": {"type": "Polygon", "coordinates": []}}]'
    unread = sys.getrefcount(body)
    read = read_raw_page(body)
    assert read is not None and sys.getrefcount(body) > unread  # Raw values point into it
    kept = detached(read[0][0])
    del read
    assert sys.getrefcount(body) == unread
    assert bytes(kept["geojson"]) == b'{"type": "Polygon", "coordinates": []}'


def test_a_raw_page_decodes_each_source_as_it_is_read():
    read = read_raw_page(b'{"data": [{"id": "a", "n": 1}, {"id": "b"}], "total": 2}')
    assert read is not None
    page, total = read
    assert isinstance(page, RawPage) and len(page) == 2 and total == 2
    assert [bytes(source["id"]) for source in page] == [b'"a"', b'"b"']
    assert {key: bytes(value) for key, value in page[0].items()} == {"id": b'"a"', "n": b"1"}
    assert [bytes(source["id"]) for source in page[1:]] == [b'"b"']


def test_a_page_holding_anything_but_objects_takes_the_plain_path():
    assert read_raw_page(b'[{"id": "a"}, 2]') is None
    assert read_raw_page(b'{"data": [{"id": "a"}, ["b"]], "total": 2}') is None
