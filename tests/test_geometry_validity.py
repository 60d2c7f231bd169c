"""Whole-polygon validity as PostGIS ``ST_IsValid`` decides, through GEOS and in pure Python.

Every case runs twice: once with shapely (GEOS, what PostGIS runs) and once with the exact
pure-Python check that decides when shapely is not installed. Both must give the verdict
that METI's ledger would.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from airflow_provider_meti import polygons
from airflow_provider_meti.exceptions import MetiValidationError
from airflow_provider_meti.geojson import validate_feature_collection
from airflow_provider_meti.rings import ring_topology_reason


def box(x0: float, y0: float, x1: float, y1: float, ccw: bool = True) -> list[list[float]]:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return ring if ccw else ring[::-1]


SHELL = box(0, 0, 10, 10)
VALID_POLYGONS = {
    "a hole inside its shell": [SHELL, box(2, 2, 4, 4)],
    "a hole touching its shell once": [SHELL, [[0, 5], [3, 4], [3, 6], [0, 5]]],
    "two holes touching once": [SHELL, box(2, 2, 4, 4), [[4, 4], [6, 5], [5, 6], [4, 4]]],
    "clockwise rings": [box(0, 0, 10, 10, ccw=False), box(2, 2, 4, 4, ccw=False)],
    "three rings meeting at one point": [
        SHELL,
        [[0, 5], [3, 4], [3, 5], [0, 5]],
        [[0, 5], [3, 6], [2, 6], [0, 5]],
    ],
}
INVALID_POLYGONS = {
    "a hole outside its shell": [SHELL, box(12, 12, 14, 14)],
    "a hole crossing its shell": [SHELL, box(8, 8, 12, 12)],
    "a hole equal to its shell": [SHELL, box(0, 0, 10, 10, ccw=False)],
    "a hole sharing part of an edge with its shell": [SHELL, box(0, 2, 3, 4)],
    "a hole touching its shell twice": [SHELL, [[0, 5], [5, 4], [10, 5], [5, 6], [0, 5]]],
    "the hole listed first": [box(2, 2, 4, 4), SHELL],
    "overlapping holes": [SHELL, box(2, 2, 5, 5), box(4, 4, 7, 7)],
    "a hole inside another hole": [SHELL, box(1, 1, 9, 9), box(3, 3, 5, 5)],
    "a hole crossing its shell at a corner": [
        SHELL,
        [[10, 5], [8, 4], [12, 4.5], [8, 6], [10, 5]],
    ],
    "two holes and the shell touching in a cycle": [
        SHELL,
        [[0, 5], [4, 4], [4, 6], [0, 5]],
        [[10, 5], [4, 4], [6, 6], [10, 5]],
    ],
}
VALID_MULTIPOLYGONS = {
    "disjoint parts": [[box(0, 0, 1, 1)], [box(2, 2, 3, 3)]],
    "parts touching at a corner": [[box(0, 0, 1, 1)], [box(1, 1, 2, 2)]],
    "a part inside another part's hole": [[SHELL, box(2, 2, 8, 8)], [box(3, 3, 5, 5)]],
    "a part in a hole, touching it": [[SHELL, box(2, 2, 8, 8)], [[[2, 5], [5, 3], [5, 6], [2, 5]]]],
    "parts touching at two points": [
        [[[0, 0], [6, 0], [6, 6], [0, 6], [0, 4], [4, 4], [4, 2], [0, 2], [0, 0]]],
        [[[4, 3], [2, 2.5], [2, 3.5], [4, 3]]],
    ],
}
INVALID_MULTIPOLYGONS = {
    "overlapping parts": [[box(0, 0, 2, 2)], [box(1, 1, 3, 3)]],
    "a part inside another part": [[SHELL], [box(2, 2, 4, 4)]],
    "parts sharing an edge": [[box(0, 0, 1, 1)], [box(1, 0, 2, 1)]],
    "identical parts": [[box(0, 0, 1, 1)], [box(0, 0, 1, 1)]],
    "a part filling another part's hole exactly": [[SHELL, box(2, 2, 8, 8)], [box(2, 2, 8, 8)]],
    "parts crossing at a corner": [[box(0, 0, 2, 2)], [[[2, 1], [3, 0], [3, 3], [1, 1.5], [2, 1]]]],
}


@pytest.fixture(params=["geos", "pure-python"])
def checker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which side decides; the GEOS side proves it ran by quoting ST_IsValid's reason."""
    if request.param == "geos":
        pytest.importorskip("shapely")
    monkeypatch.setattr(polygons, "USE_SHAPELY", request.param == "geos")
    return str(request.param)


def collection(geometry: dict[str, Any], alt_id: str = "FIELD-7") -> dict[str, Any]:
    neighbour = {
        "type": "Feature",
        "id": "FIELD-0",
        "properties": {"start_at": "2025-01-01T00:00:00Z", "end_at": "2025-12-31T00:00:00Z"},
        "geometry": {"type": "Polygon", "coordinates": [box(50, 50, 51, 51)]},
    }
    broken = copy.deepcopy(neighbour) | {"id": alt_id, "geometry": copy.deepcopy(geometry)}
    return {"type": "FeatureCollection", "features": [neighbour, broken]}


def polygon(rings: list[Any]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": rings}


def multipolygon(parts: list[Any]) -> dict[str, Any]:
    return {"type": "MultiPolygon", "coordinates": parts}


def the_problem(value: dict[str, Any]) -> Any:
    with pytest.raises(MetiValidationError) as caught:
        validate_feature_collection(value)
    (problem,) = caught.value.problems
    return problem


def assert_decided_by(checker: str, reason: str) -> None:
    assert ("ST_IsValid:" in reason) == (checker == "geos"), reason


@pytest.mark.parametrize("rings", VALID_POLYGONS.values(), ids=VALID_POLYGONS)
def test_a_valid_polygon_is_accepted(checker, rings):
    assert validate_feature_collection(collection(polygon(rings)))


@pytest.mark.parametrize("rings", INVALID_POLYGONS.values(), ids=INVALID_POLYGONS)
def test_an_invalid_polygon_is_refused_naming_feature_and_field(checker, rings):
    problem = the_problem(collection(polygon(rings)))
    assert (problem.index, problem.feature_id, problem.field) == (
        1,
        "FIELD-7",
        "geometry.coordinates",
    )
    assert str(problem).startswith("feature 1 (id='FIELD-7') geometry.coordinates: ")
    assert_decided_by(checker, problem.reason)


@pytest.mark.parametrize("rings", INVALID_POLYGONS.values(), ids=INVALID_POLYGONS)
def test_an_invalid_part_is_named_in_a_multipolygon(checker, rings):
    problem = the_problem(collection(multipolygon([[box(20, 20, 21, 21)], rings])))
    assert problem.field == "geometry.coordinates[1]"
    assert problem.reason.startswith("part 1: ")
    assert_decided_by(checker, problem.reason)


@pytest.mark.parametrize("parts", VALID_MULTIPOLYGONS.values(), ids=VALID_MULTIPOLYGONS)
def test_a_valid_multipolygon_is_accepted(checker, parts):
    assert validate_feature_collection(collection(multipolygon(parts)))


@pytest.mark.parametrize("parts", INVALID_MULTIPOLYGONS.values(), ids=INVALID_MULTIPOLYGONS)
def test_overlapping_parts_are_refused(checker, parts):
    problem = the_problem(collection(multipolygon(parts)))
    assert (problem.index, problem.feature_id, problem.field) == (
        1,
        "FIELD-7",
        "geometry.coordinates",
    )
    assert_decided_by(checker, problem.reason)


def test_the_pure_python_messages_say_what_is_wrong(monkeypatch):
    monkeypatch.setattr(polygons, "USE_SHAPELY", False)

    def reason(geometry: dict[str, Any]) -> str:
        return str(the_problem(collection(geometry)).reason)

    assert reason(polygon(INVALID_POLYGONS["a hole outside its shell"])) == (
        "a hole lies outside its shell (the first ring is the shell, holes follow): ring 1"
    )
    assert reason(polygon(INVALID_POLYGONS["the hole listed first"])) == (
        "the first ring must be the outer shell, but it lies inside ring 1"
    )
    assert reason(polygon(INVALID_POLYGONS["a hole touching its shell twice"])) == (
        "the rings touch in a cycle, which cuts the interior in pieces (at [10, 5])"
    )
    assert reason(polygon(INVALID_POLYGONS["a hole inside another hole"])) == (
        "a hole lies inside another hole: ring 2 inside ring 1"
    )
    assert reason(polygon(INVALID_POLYGONS["a hole equal to its shell"])).startswith(
        "rings share part of an edge: rings 0 and 1"
    )
    assert reason(polygon(INVALID_POLYGONS["a hole crossing its shell"])).startswith(
        "rings cross each other: rings 0 and 1"
    )
    assert reason(multipolygon(INVALID_MULTIPOLYGONS["a part inside another part"])) == (
        "parts overlap (MultiPolygon parts may touch only at points): part 1 lies inside part 0"
    )


def test_geos_reasons_are_explained(monkeypatch):
    pytest.importorskip("shapely")
    monkeypatch.setattr(polygons, "USE_SHAPELY", True)
    problem = the_problem(collection(polygon(INVALID_POLYGONS["a hole outside its shell"])))
    assert problem.reason == (
        "a hole lies outside its shell (the first ring is the shell, holes follow) "
        "(ST_IsValid: Hole lies outside shell[12 12])"
    )


def test_a_ring_problem_stops_before_the_whole_polygon_is_judged(checker):
    bowtie = [[2, 2], [4, 4], [4, 2], [2, 4], [2, 2]]
    problem = the_problem(collection(polygon([SHELL, bowtie, box(20, 20, 21, 21)])))
    assert problem.field == "geometry.coordinates[1]"
    assert problem.reason.startswith("ring intersects itself")


def _grid_ring(rnd: random.Random, corners: int, size: int) -> list[tuple[float, float]]:
    ring = [(float(rnd.randint(0, size)), float(rnd.randint(0, size))) for _ in range(corners)]
    return [*ring, ring[0]]


def test_both_checkers_agree_on_random_grid_polygons(monkeypatch):
    # Small integer grids make rings touch at corners and along edges all the time: the
    # degenerate cases where an inexact or incomplete check would part from GEOS.
    shapely = pytest.importorskip("shapely")
    rnd = random.Random(20251201)
    compared = valid = 0
    while compared < 400:
        rings = [_grid_ring(rnd, rnd.randint(3, 6), 4) for _ in range(rnd.randint(2, 3))]
        if rnd.random() < 0.6:
            rings[0] = [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0), (0.0, 0.0)]
        if any(ring_topology_reason(ring) for ring in rings):
            continue
        compared += 1
        expected = shapely.is_valid(shapely.Polygon(rings[0], rings[1:]))
        valid += expected
        monkeypatch.setattr(polygons, "USE_SHAPELY", False)
        assert (polygons.polygon_reason(rings) is None) == expected, rings
    assert 40 <= valid <= 360  # both verdicts were exercised


def test_both_checkers_agree_on_random_grid_multipolygons(monkeypatch):
    shapely = pytest.importorskip("shapely")
    rnd = random.Random(7)
    compared = valid = 0
    while compared < 300:
        parts = [[_grid_ring(rnd, rnd.randint(3, 5), 6)] for _ in range(rnd.randint(2, 3))]
        if any(ring_topology_reason(part[0]) for part in parts):
            continue
        compared += 1
        shapes = [shapely.Polygon(part[0]) for part in parts]
        expected = shapely.is_valid(shapely.MultiPolygon(shapes))
        valid += expected
        monkeypatch.setattr(polygons, "USE_SHAPELY", False)
        assert (polygons.parts_reason(parts) is None) == expected, parts
    assert 30 <= valid <= 270
