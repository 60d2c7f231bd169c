"""The emulator's ledger reads a collection as METI's process_feature_collection does."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import requests

from airflow_provider_meti.emulator import MetiEmulator
from airflow_provider_meti.emulator.ledger import Ledger
from airflow_provider_meti.emulator.rejections import CollectionRejected
from airflow_provider_meti.emulator.timestamps import parse_timestamptz
from tests.emulator_ledger_fields import collection, feature, polygon, rect

SQUARE = polygon(rect(0, 0, 100, 100))


def rejected(ledger: Ledger, *features: dict[str, Any]) -> CollectionRejected:
    with pytest.raises(CollectionRejected) as caught:
        ledger.create(collection(*features))
    assert ledger.count() == 0
    return caught.value


def test_numeric_ids_become_text_and_a_missing_feature_type_is_accepted():
    ledger = Ledger()
    untyped = feature(1001, polygon(rect(300, 0, 400, 100)))
    del untyped["type"]
    created = ledger.create(collection(feature(1001.5, SQUARE), untyped))
    assert [row["alt_id"] for row in created] == ["1001.5", "1001"]


def test_coordinates_given_as_json_strings_are_read_as_numbers():
    ledger = Ledger()
    ring = [[str(lon), str(lat)] for lon, lat in rect(0, 0, 100, 100)]
    (row,) = ledger.create(collection(feature("text", polygon(ring))))
    source = ledger.get(row["id"])
    assert source is not None
    assert source["hectares"] == pytest.approx(1.0, rel=1e-3)
    assert source["geojson"]["geometry"]["coordinates"][0][0] == ring[0]  # stored as sent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024/01/01", "2024-01-01T00:00:00+00:00"),
        ("2024-01-01 00:00:00 UTC", "2024-01-01T00:00:00+00:00"),
        ("2024-01-01t02:00:00+0200", "2024-01-01T00:00:00+00:00"),
        ("2024-01-01 05:30+05:30", "2024-01-01T00:00:00+00:00"),
        ("2023-12-31T24:00:00Z", "2024-01-01T00:00:00+00:00"),
        ("2024-01-01T00:00:00.0000005Z", "2024-01-01T00:00:00+00:00"),  # half to even
        ("2024-01-01T00:00:00.0000015Z", "2024-01-01T00:00:00.000002+00:00"),
        ("2024-01-01T00:00:00.0000009Z", "2024-01-01T00:00:00.000001+00:00"),  # rounded
    ],
)
def test_timestamps_are_read_as_timestamptz_reads_them(text, expected):
    assert parse_timestamptz(text).isoformat() == expected


@pytest.mark.parametrize("text", ["2024-02-30", "yesterday", "2024-01-01T25:00:00Z", ""])
def test_unreadable_timestamps_are_refused(text):
    with pytest.raises(ValueError):
        parse_timestamptz(text)


def test_the_window_must_be_longer_than_one_day_after_rounding_to_a_microsecond():
    ledger = Ledger()
    start = "2024-01-01T00:00:00Z"
    # 1 day + 900 ns rounds to 1 day + 1 µs: valid. 1 day + 400 ns rounds to 1 day: refused.
    ledger.create(collection(feature("ok", SQUARE, (start, "2024-01-02T00:00:00.0000009Z"))))
    problem = rejected(
        Ledger(), feature("short", SQUARE, (start, "2024-01-02T00:00:00.0000004Z"))
    ).problems[0]
    assert (problem.index, problem.path, problem.kind) == (
        0,
        ("properties", "end_at"),
        "window_too_short",
    )


def test_alt_id_must_be_shorter_than_50_characters():
    Ledger().create(collection(feature("x" * 49, SQUARE)))
    (problem,) = rejected(Ledger(), feature("x" * 50, SQUARE)).problems
    assert (problem.path, problem.kind) == (("id",), "id_too_long")


def test_duplicates_in_one_collection_are_stored_and_conflict_with_each_other():
    ledger = Ledger()
    first, second = ledger.create(collection(feature("same", SQUARE), feature("same", SQUARE)))
    a, b = ledger.get(first["id"]), ledger.get(second["id"])
    assert a is not None and b is not None
    assert (a["conflict_with"], b["conflict_with"]) == ([second["id"]], [first["id"]])
    assert a["percent_overlap"] == b["percent_overlap"] == pytest.approx(1.0)


SHELL = rect(0, 0, 100, 100)


@pytest.mark.parametrize(
    ("name", "rings", "reason"),
    [
        ("hole outside", [SHELL, rect(200, 0, 250, 50)], "Hole lies outside shell"),
        ("hole crossing", [SHELL, rect(50, 50, 150, 80)], "Self-intersection"),
        (
            "holes overlapping",
            [SHELL, rect(10, 10, 60, 60), rect(40, 40, 90, 90)],
            "Self-intersection",
        ),
        ("hole first", [rect(20, 20, 80, 80), SHELL], "Hole lies outside shell"),
        ("bow tie", [[*SHELL[:2], *SHELL[3:1:-1], SHELL[0]]], "Self-intersection"),
    ],
)
def test_st_isvalid_failures_reject_the_whole_collection(name, rings, reason):
    problems = rejected(Ledger(), feature("good", SQUARE), feature(name, polygon(*rings))).problems
    assert [(p.index, p.path, p.kind) for p in problems] == [(1, ("geometry",), "invalid_geometry")]
    assert reason in problems[0].message


def test_every_problem_is_listed_with_where_it_is():
    point = {"type": "Point", "coordinates": [0, 0]}
    unclosed = polygon(rect(0, 0, 100, 100)[:-1])
    problems = rejected(
        Ledger(),
        feature("point", point),
        feature(None, unclosed, ("2024-01-01", "nope")),
    ).problems
    assert [(p.index, p.path, p.kind) for p in problems] == [
        (0, ("geometry", "type"), "unsupported_geometry"),
        (1, ("id",), "missing_id"),
        (1, ("properties", "end_at"), "bad_timestamp"),
        (1, ("geometry", "coordinates", 0), "bad_ring"),
    ]


def test_a_collection_level_problem_has_no_index():
    with pytest.raises(CollectionRejected) as caught:
        Ledger().create({"type": "Feature"})
    assert [(p.index, p.path) for p in caught.value.problems] == [(None, ("type",))]
    assert str(caught.value) == 'type: must be "FeatureCollection"'


def test_an_empty_collection_stores_nothing():
    assert Ledger().create(collection()) == []


def test_the_whole_feature_is_stored_and_properties_are_not_copied():
    ledger = Ledger()
    sent = feature("F", SQUARE, methodology="in-properties", colour="red")
    fields = {"methodology": "Agriculture", "tags": ["cover-crop"], "outcome_reporting_year": 2025}
    (row,) = ledger.create(collection(sent), fields=fields)
    source = ledger.get(row["id"])
    assert source is not None
    assert source["geojson"] == sent
    assert (source["methodology"], source["tags"], source["outcome_reporting_year"]) == (
        "Agriculture",
        ["cover-crop"],
        2025,
    )
    assert source["source_type"] is source["steward_id"] is None
    assert (source["unep_overlap"], source["pa_name"], source["pa_designation"]) == (
        False,
        None,
        None,
    )
    assert source["wdpaid"] is None
    with pytest.raises(ValueError, match="colour"):
        ledger.create(collection(sent), fields={"colour": "red"})


def test_seed_takes_descriptive_fields():
    ledger = Ledger()
    ledger.seed(2, methodology="Biochar Production", source_type="FACILITY")
    assert {s["source_type"] for s in ledger.all()} == {"FACILITY"}


def test_sandbox_ids_and_no_conflicts():
    ledger = Ledger(sandbox=True)
    rows = ledger.create(collection(feature("a", SQUARE), feature("b", SQUARE)))
    for row in rows:
        assert re.fullmatch(r"sandbox_[0-9a-f]{32}", row["id"])
        source = ledger.get(row["id"])
        assert source is not None
        assert (source["conflict"], source["conflict_with"], source["unep_overlap"]) == (
            False,
            [],
            None,
        )


def test_without_shapely_the_emulator_names_the_extra_to_install():
    code = (
        "import sys; sys.modules['geographiclib'] = None; sys.modules['shapely'] = None\n"
        "try:\n import airflow_provider_meti.emulator\n"
        "except ImportError as error:\n print(error)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install 'airflow-provider-meti[emulator]'" in output


def test_over_http_an_invalid_hole_is_refused_and_a_multipolygon_stored():
    hole_outside = polygon(rect(0, 0, 100, 100), rect(200, 0, 250, 50))
    parts = {
        "type": "MultiPolygon",
        "coordinates": [[rect(0, 0, 100, 100)], [rect(300, 0, 400, 100)]],
    }
    with MetiEmulator() as meti:
        session = requests.Session()
        token = session.post(
            f"{meti.url}/token", json={"email": "demo@meti.local", "password": "demo-password"}
        ).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        reply = session.post(
            f"{meti.url}/sources",
            json=collection(feature("parts", parts), feature("hole", hole_outside)),
            headers=headers,
        )
        assert reply.status_code == 422
        assert meti.ledger.count() == 0
        reply = session.post(
            f"{meti.url}/sources", json=collection(feature("parts", parts)), headers=headers
        )
        assert reply.status_code == 201
        (source,) = meti.ledger.all()
        assert source["hectares"] == pytest.approx(2.0, rel=1e-3)
