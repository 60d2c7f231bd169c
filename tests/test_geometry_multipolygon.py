"""MultiPolygon structure, the geometry types METI takes, and the antimeridian rule."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_meti import polygons
from airflow_provider_meti.exceptions import MetiValidationError
from airflow_provider_meti.geojson import validate_feature_collection

SQUARE = [[0.0, 0.0], [0.001, 0.0], [0.001, 0.001], [0.0, 0.001], [0.0, 0.0]]
FAR_SQUARE = [[1.0, 1.0], [1.001, 1.0], [1.001, 1.001], [1.0, 1.001], [1.0, 1.0]]


def collection(geometry: Any) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": "NORTH-40",
                "properties": {
                    "start_at": "2025-01-01T00:00:00Z",
                    "end_at": "2025-12-31T00:00:00Z",
                },
                "geometry": geometry,
            }
        ],
    }


def problems(geometry: Any) -> list[tuple[str, str]]:
    with pytest.raises(MetiValidationError) as caught:
        validate_feature_collection(collection(geometry))
    for problem in caught.value.problems:
        assert (problem.index, problem.feature_id) == (0, "NORTH-40")
        assert str(problem).startswith("feature 0 (id='NORTH-40') ")
    return [(problem.field, problem.reason) for problem in caught.value.problems]


def multipolygon(*parts: Any) -> dict[str, Any]:
    return {"type": "MultiPolygon", "coordinates": list(parts)}


# --- MultiPolygon structure ----------------------------------------------------------------


def test_a_multipolygon_of_two_fields_is_accepted():
    geometry = multipolygon([SQUARE], [FAR_SQUARE])
    (accepted,) = validate_feature_collection(collection(geometry))
    assert accepted["geometry"] == geometry


def test_a_multipolygon_of_one_part_is_accepted():
    assert validate_feature_collection(collection(multipolygon([SQUARE])))


def test_a_multipolygon_with_no_parts():
    assert problems(multipolygon()) == [
        ("geometry.coordinates", "a MultiPolygon needs at least one part (polygon)")
    ]


def test_an_open_ring_in_one_part_names_part_and_ring():
    open_ring = [*FAR_SQUARE[:-1], [1.0, 1.0005]]
    assert problems(multipolygon([SQUARE], [FAR_SQUARE, open_ring])) == [
        (
            "geometry.coordinates[1][1]",
            "part 1, ring 1: ring is not closed: first [1, 1] != last [1, 1.0005]",
        )
    ]


def test_a_bad_position_in_a_part_is_located():
    ring = [list(p) for p in FAR_SQUARE]
    ring[2] = [1.001, 95.0]
    assert problems(multipolygon([SQUARE], [ring])) == [
        (
            "geometry.coordinates[1][0][2]",
            "part 1, ring 0: latitude must be within [-90, 90], got 95.0",
        )
    ]


@pytest.mark.parametrize(
    ("coordinates", "expected"),
    [
        (None, ("geometry.coordinates", "must be a list of polygons (got null)")),
        ("x", ("geometry.coordinates", "must be a list of polygons (got 'x')")),
        (
            [[SQUARE], "ring"],
            ("geometry.coordinates[1]", "part 1: must be a list of linear rings (got 'ring')"),
        ),
        ([[SQUARE], []], ("geometry.coordinates[1]", "part 1: must contain at least one ring")),
        (
            [[SQUARE[:3]]],
            (
                "geometry.coordinates[0][0]",
                "part 0, ring 0: a ring needs at least 4 positions, got 3",
            ),
        ),
        (
            [[SQUARE], [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]],
            (
                "geometry.coordinates[1][0]",
                "part 1, ring 0: ring intersects itself: edge from position 0 meets edge "
                "from position 2",
            ),
        ),
    ],
)
def test_multipolygon_structure(coordinates, expected):
    assert problems({"type": "MultiPolygon", "coordinates": coordinates}) == [expected]


def test_every_broken_part_is_reported():
    open_ring = [*SQUARE[:-1], [0.0, 0.0005]]
    found = problems(multipolygon([open_ring], [FAR_SQUARE], [open_ring]))
    assert [field for field, _ in found] == [
        "geometry.coordinates[0][0]",
        "geometry.coordinates[2][0]",
    ]


@pytest.mark.parametrize(
    "geometry",
    [
        {"type": "Point", "coordinates": [0.0, 0.0]},
        {"type": "LineString", "coordinates": [[0.0, 0.0], [1.0, 1.0]]},
        {"type": "MultiPoint", "coordinates": [[0.0, 0.0]]},
        {"type": "GeometryCollection", "geometries": []},
        {"type": "polygon", "coordinates": [SQUARE]},
        {"coordinates": [SQUARE]},
    ],
    ids=["Point", "LineString", "MultiPoint", "GeometryCollection", "lower-case", "no type"],
)
def test_other_geometry_types_are_refused_saying_what_meti_takes(geometry):
    ((field, reason),) = problems(geometry)
    assert field == "geometry.type"
    assert reason.startswith("METI takes 'Polygon' or 'MultiPolygon' (")


# --- antimeridian --------------------------------------------------------------------------

ACROSS_180 = [[179.9, 10.0], [-179.9, 10.0], [-179.9, 10.1], [179.9, 10.1], [179.9, 10.0]]


def test_a_ring_crossing_the_antimeridian_is_refused_with_the_fix():
    assert problems({"type": "Polygon", "coordinates": [ACROSS_180]}) == [
        (
            "geometry.coordinates[0]",
            "ring crosses the antimeridian between positions 0 [179.9, 10] and 1 [-179.9, 10]; "
            "split the field at 180° into a MultiPolygon (RFC 7946, section 3.1.9)",
        )
    ]


def test_a_crossing_part_of_a_multipolygon_is_named():
    ((field, reason),) = problems(multipolygon([SQUARE], [ACROSS_180]))
    assert field == "geometry.coordinates[1][0]"
    assert reason.startswith("part 1, ring 0: ring crosses the antimeridian")


def test_a_hole_crossing_the_antimeridian_is_refused():
    shell = [[170.0, 0.0], [179.0, 0.0], [179.0, 20.0], [170.0, 20.0], [170.0, 0.0]]
    ((field, reason),) = problems({"type": "Polygon", "coordinates": [shell, ACROSS_180]})
    assert field == "geometry.coordinates[1]"
    assert "crosses the antimeridian" in reason


def test_the_same_field_split_at_180_is_accepted():
    east = [[179.9, 10.0], [180.0, 10.0], [180.0, 10.1], [179.9, 10.1], [179.9, 10.0]]
    west = [[-180.0, 10.0], [-179.9, 10.0], [-179.9, 10.1], [-180.0, 10.1], [-180.0, 10.0]]
    assert validate_feature_collection(collection(multipolygon([east], [west])))


@pytest.mark.parametrize(
    "ring",
    [
        [[-180, 80], [180, 80], [180, 90], [-180, 90], [-180, 80]],
        [[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]],
    ],
    ids=["polar cap", "whole world"],
)
def test_a_band_all_the_way_round_is_not_a_crossing(ring):
    # Both ends on ±180: the ring means the full band it is in the plane.
    assert validate_feature_collection(collection({"type": "Polygon", "coordinates": [ring]}))


def test_an_edge_of_exactly_180_degrees_is_not_a_crossing():
    ring = [[-90.0, 0.0], [90.0, 0.0], [90.0, 1.0], [-90.0, 1.0], [-90.0, 0.0]]
    assert validate_feature_collection(collection({"type": "Polygon", "coordinates": [ring]}))


# --- size ----------------------------------------------------------------------------------


@pytest.mark.parametrize("use_shapely", [True, False], ids=["geos", "pure-python"])
def test_a_20000_vertex_shell_with_a_20000_vertex_hole_validates(use_shapely, monkeypatch):
    if use_shapely:
        pytest.importorskip("shapely")
    monkeypatch.setattr(polygons, "USE_SHAPELY", use_shapely)
    count = 20_000

    def circle(radius: float) -> list[list[float]]:
        ring = [
            [
                -95.99 + radius * math.cos(2 * math.pi * k / count),
                32.77 + radius * math.sin(2 * math.pi * k / count),
            ]
            for k in range(count)
        ]
        return [*ring, ring[0]]

    geometry = {"type": "Polygon", "coordinates": [circle(0.01), circle(0.005)]}
    assert validate_feature_collection(collection(geometry))
    geometry["coordinates"][1] = circle(0.02)  # the "hole" now surrounds the shell
    ((field, reason),) = problems(geometry)
    assert field == "geometry.coordinates"
    assert "shell" in reason


# --- any JSON ------------------------------------------------------------------------------

COORDINATE_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-200, 200), st.floats(), st.text(max_size=2)),
    lambda children: st.lists(children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["Polygon", "MultiPolygon"]), coordinates=COORDINATE_JSON)
def test_any_coordinates_give_a_validation_error_or_pass(kind, coordinates):
    with contextlib.suppress(MetiValidationError):
        validate_feature_collection(collection({"type": kind, "coordinates": coordinates}))
