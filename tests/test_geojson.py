"""Client-side FeatureCollection loading, validation and batching."""

from __future__ import annotations

import contextlib
import copy
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_meti import rings
from airflow_provider_meti.exceptions import MetiValidationError
from airflow_provider_meti.geojson import (
    as_feature_collection,
    batched,
    load_feature_collection,
    parse_timestamp,
    validate_feature_collection,
)
from tests.features import APITEST2

SQUARE = [[0.0, 0.0], [0.001, 0.0], [0.001, 0.001], [0.0, 0.001], [0.0, 0.0]]


def feature(alt_id: Any = "F-000", **changes: Any) -> dict[str, Any]:
    """A valid feature; keyword arguments replace top-level members."""
    base: dict[str, Any] = {
        "type": "Feature",
        "id": alt_id,
        "properties": {"start_at": "2024-11-01T00:00:00Z", "end_at": "2024-11-10T00:00:00Z"},
        "geometry": {"type": "Polygon", "coordinates": [copy.deepcopy(SQUARE)]},
    }
    base.update(changes)
    return base


def with_window(start_at: Any, end_at: Any, alt_id: str = "F-000") -> dict[str, Any]:
    return feature(alt_id, properties={"start_at": start_at, "end_at": end_at})


def with_rings(*rings: Any) -> dict[str, Any]:
    return feature(geometry={"type": "Polygon", "coordinates": list(rings)})


def problems_of(value: Any) -> list[str]:
    with pytest.raises(MetiValidationError) as caught:
        validate_feature_collection(value)
    return [str(problem) for problem in caught.value.problems]


def only_problem(value: Any) -> str:
    (problem,) = problems_of(value)
    return problem


def fc(*features: Any) -> dict[str, Any]:
    return as_feature_collection(features)


# --- collection ----------------------------------------------------------------------------


def test_a_valid_collection_returns_its_features():
    features = [feature("A"), feature("B")]
    assert validate_feature_collection(fc(*features)) == features


def test_the_docs_example_feature_is_valid():
    assert validate_feature_collection(fc(APITEST2)) == [APITEST2]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([feature()], "FeatureCollection: must be an object, got array"),
        ({"type": "Feature", "features": [feature()]}, "type: must be 'FeatureCollection'"),
        ({"type": "FeatureCollection"}, "features: must be a list of features (missing)"),
        ({"type": "FeatureCollection", "features": {}}, "features: must be a list of features"),
        ({"type": "FeatureCollection", "features": []}, "features: must contain at least one"),
    ],
)
def test_collection_problems(value, expected):
    assert problems_of(value)[0].startswith(expected)


def test_a_feature_that_is_not_an_object():
    assert only_problem(fc("oops")) == "feature 0 (id=None) feature: must be an object, got string"


def test_a_feature_with_the_wrong_type():
    problem = only_problem(fc(feature(type="Point")))
    assert problem == "feature 0 (id='F-000') type: must be 'Feature' (got 'Point')"


# --- id ------------------------------------------------------------------------------------


def test_a_missing_id():
    no_id = feature()
    del no_id["id"]
    assert "id: is required" in only_problem(fc(no_id))


def test_an_integer_id_is_rejected_as_not_a_string():
    problem = only_problem(fc(feature(7)))
    assert problem == 'feature 0 (id=7) id: must be a string, got number 7; quote it, e.g. "7"'


@pytest.mark.parametrize("alt_id", ["", "   "])
def test_an_empty_id(alt_id):
    assert only_problem(fc(feature(alt_id))).endswith("id: must not be empty")


def test_id_length_limit_is_below_50_characters():
    assert validate_feature_collection(fc(feature("x" * 49)))
    assert "must be shorter than 50 characters (got 50)" in only_problem(fc(feature("x" * 50)))


def test_duplicate_ids_name_both_features():
    problem = only_problem(fc(feature("A"), feature("B"), feature("A")))
    assert problem == "feature 2 (id='A') id: duplicates the id of feature 0; ids must be unique"


# --- window --------------------------------------------------------------------------------


def test_the_window_message_names_feature_field_and_values():
    features = [feature(f"F-00{i}") for i in range(3)]
    features.append(with_window("2024-11-01T00:00:00Z", "2024-11-02T00:00:00Z", alt_id="F-003"))
    assert only_problem(fc(*features)) == (
        "feature 3 (id='F-003') properties.end_at: must be more than one day after start_at "
        "(got 2024-11-01T00:00:00Z .. 2024-11-02T00:00:00Z)"
    )


def test_exactly_one_day_is_rejected_and_one_day_and_a_second_accepted():
    assert problems_of(fc(with_window("2024-11-01T00:00:00Z", "2024-11-02T00:00:00Z")))
    assert validate_feature_collection(
        fc(with_window("2024-11-01T00:00:00Z", "2024-11-02T00:00:01Z"))
    )


def test_a_window_ending_before_it_starts():
    problem = only_problem(fc(with_window("2024-11-10T00:00:00Z", "2024-11-01T00:00:00Z")))
    assert "properties.end_at: must be more than one day after start_at" in problem


def test_offsets_are_compared_in_utc():
    # 2024-11-02T01:00+02:00 is 2024-11-01T23:00Z: less than a day after the start.
    assert problems_of(fc(with_window("2024-11-01T00:00:00Z", "2024-11-02T01:00:00+02:00")))
    assert validate_feature_collection(
        fc(with_window("2024-11-01T00:00:00Z", "2024-11-02T01:00:00-02:00"))
    )


def test_missing_properties():
    assert "properties: must be an object with start_at and end_at (missing)" in only_problem(
        fc(feature(properties=None))
    )


@pytest.mark.parametrize("key", ["start_at", "end_at"])
def test_missing_timestamps(key):
    properties = {"start_at": "2024-11-01T00:00:00Z", "end_at": "2024-11-10T00:00:00Z"}
    del properties[key]
    problem = only_problem(fc(feature(properties=properties)))
    assert problem.endswith(f"properties.{key}: is required (an ISO 8601 timestamp)")


def test_unparseable_and_non_string_timestamps_are_both_reported():
    problems = problems_of(fc(with_window("yesterday", 1730419200)))
    assert problems == [
        "feature 0 (id='F-000') properties.start_at: is not an ISO 8601 timestamp "
        "(got 'yesterday')",
        "feature 0 (id='F-000') properties.end_at: must be an ISO 8601 string, "
        "got number 1730419200",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-11-01T16:25:00.000Z", datetime(2024, 11, 1, 16, 25, tzinfo=timezone.utc)),
        ("2024-11-01T16:25:00Z", datetime(2024, 11, 1, 16, 25, tzinfo=timezone.utc)),
        ("2024-11-01T16:25:00.123456789Z", datetime(2024, 11, 1, 16, 25, 0, 123456, timezone.utc)),
        ("2024-11-01T16:25:00.5", datetime(2024, 11, 1, 16, 25, 0, 500000, timezone.utc)),
        ("2024-11-01T18:25:00+02:00", datetime(2024, 11, 1, 16, 25, tzinfo=timezone.utc)),
        ("2024-11-01T11:25:00-0500", datetime(2024, 11, 1, 16, 25, tzinfo=timezone.utc)),
        ("2024-11-01 16:25", datetime(2024, 11, 1, 16, 25, tzinfo=timezone.utc)),
        ("2024-11-01", datetime(2024, 11, 1, tzinfo=timezone.utc)),
    ],
)
def test_parse_timestamp(text, expected):
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "bad", ["", "soon", "2024-13-01T00:00:00Z", "2024-11-01T25:00:00Z", "2024-11-01T00:00+25:00"]
)
def test_parse_timestamp_rejects_non_timestamps(bad):
    with pytest.raises(ValueError):
        parse_timestamp(bad)


def test_parse_timestamp_rejects_non_strings():
    with pytest.raises(ValueError, match="expected an ISO 8601 string"):
        parse_timestamp(1730419200)  # type: ignore[arg-type]


# --- geometry ------------------------------------------------------------------------------


def test_missing_and_null_geometry():
    no_geometry = feature()
    del no_geometry["geometry"]
    assert only_problem(fc(no_geometry)).endswith(
        "geometry: is required (a GeoJSON Polygon or MultiPolygon)"
    )
    assert only_problem(fc(feature(geometry=None))).endswith("geometry: must not be null")


def test_geometry_must_be_an_object():
    assert only_problem(fc(feature(geometry=[SQUARE]))).endswith(
        "geometry: must be a GeoJSON object, got array"
    )


def test_the_geometry_type_given_is_named():
    geometry = {"type": "Point", "coordinates": [0.0, 0.0]}
    assert only_problem(fc(feature(geometry=geometry))).endswith(
        "geometry.type: METI takes 'Polygon' or 'MultiPolygon' (got 'Point')"
    )


@pytest.mark.parametrize(
    ("coordinates", "expected"),
    [
        (None, "geometry.coordinates: must be a list of linear rings (got null)"),
        ([], "geometry.coordinates: must contain at least one ring"),
        (["ring"], "geometry.coordinates[0]: must be a list of positions, got string"),
        ([SQUARE[:3]], "geometry.coordinates[0]: a ring needs at least 4 positions, got 3"),
    ],
)
def test_coordinates_structure(coordinates, expected):
    geometry = {"type": "Polygon", "coordinates": coordinates}
    assert only_problem(fc(feature(geometry=geometry))).endswith(expected)


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        ("0,0", "must be a [longitude, latitude] pair, got string"),
        ([0.0], "must have 2 or 3 numbers, got 1"),
        ([0.0, 0.0, 0.0, 0.0], "must have 2 or 3 numbers, got 4"),
        ([True, 0.0], "longitude must be a number, got boolean True"),
        ([0.0, "1"], "latitude must be a number, got string '1'"),
        ([math.nan, 0.0], "longitude must be finite, got nan"),
        ([0.0, math.inf], "latitude must be finite, got inf"),
        ([180.5, 0.0], "longitude must be within [-180, 180], got 180.5"),
        ([0.0, -90.01], "latitude must be within [-90, 90], got -90.01"),
        ([10**400, 0.0], "longitude must be within [-180, 180]"),
    ],
)
def test_bad_positions_are_located(position, expected):
    ring = copy.deepcopy(SQUARE)
    ring[2] = position
    problem = only_problem(fc(with_rings(ring)))
    assert f"geometry.coordinates[0][2]: {expected}" in problem


def test_positions_with_altitude_and_integers_are_accepted():
    ring = [[0, 0, 5.0], [1, 0, 5.0], [1, 1, 5.0], [0, 1, 5.0], [0, 0, 5.0]]
    assert validate_feature_collection(fc(with_rings(ring)))


def test_extreme_but_legal_coordinates_are_accepted():
    ring = [[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]
    assert validate_feature_collection(fc(with_rings(ring)))


def test_many_bad_positions_are_summarised_per_ring():
    ring = [[0.0, 0.0]] + [["x", "y"]] * 25 + [[0.0, 0.0]]
    problems = problems_of(fc(with_rings(ring)))
    assert len(problems) == 11
    assert problems[-1].endswith("geometry.coordinates[0]: 15 more positions are invalid")


def test_an_open_ring():
    ring = [*SQUARE[:-1], [0.0, 0.0005]]
    assert only_problem(fc(with_rings(ring))).endswith(
        "geometry.coordinates[0]: ring is not closed: first [0, 0] != last [0, 0.0005]"
    )


def test_a_crossing_ring_bowtie():
    bowtie = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]
    assert only_problem(fc(with_rings(bowtie))).endswith(
        "geometry.coordinates[0]: ring intersects itself: edge from position 0 meets "
        "edge from position 2"
    )


def test_a_ring_touching_itself_at_a_vertex():
    figure_eight = [[0, 0], [1, 1], [2, 0], [2, 2], [1, 1], [0, 2], [0, 0]]
    assert "ring intersects itself" in only_problem(fc(with_rings(figure_eight)))


def test_a_vertex_lying_on_another_edge():
    ring = [[0, 0], [2, 0], [2, 2], [1, 0], [0, 2], [0, 0]]
    assert "ring intersects itself" in only_problem(fc(with_rings(ring)))


def test_a_spike_folding_back_on_itself():
    ring = [[0, 0], [2, 0], [2, 2], [2, 3], [2, 1.5], [0, 2], [0, 0]]
    assert "ring intersects itself" in only_problem(fc(with_rings(ring)))


def test_a_collapsed_ring():
    flat = [[0, 0], [1, 0], [2, 0], [0, 0]]
    assert "ring intersects itself" in only_problem(fc(with_rings(flat)))
    repeated = [[0, 0], [0, 0], [1, 1], [0, 0]]
    assert "fewer than 3 distinct corners" in only_problem(fc(with_rings(repeated)))


def test_repeated_consecutive_positions_are_accepted():
    ring = [[0, 0], [1, 0], [1, 0], [1, 1], [0, 1], [0, 0]]
    assert validate_feature_collection(fc(with_rings(ring)))


def test_a_concave_ring_is_valid():
    u_shape = [[0, 0], [3, 0], [3, 3], [2, 3], [2, 1], [1, 1], [1, 3], [0, 3], [0, 0]]
    assert validate_feature_collection(fc(with_rings(u_shape)))


def test_holes_are_checked_like_shells():
    shell = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    hole = [[2, 2], [2, 4], [4, 4], [4, 2], [2, 2]]
    assert validate_feature_collection(fc(with_rings(shell, hole)))
    bowtie_hole = [[2, 2], [4, 4], [4, 2], [2, 4], [2, 2]]
    assert "geometry.coordinates[1]: ring intersects itself" in only_problem(
        fc(with_rings(shell, bowtie_hole))
    )


def test_a_20000_vertex_ring_validates():
    count = 20_000
    ring = [
        [
            -95.99 + 0.01 * math.cos(2 * math.pi * k / count),
            32.77 + 0.01 * math.sin(2 * math.pi * k / count),
        ]
        for k in range(count)
    ]
    ring.append(ring[0])
    assert validate_feature_collection(fc(with_rings(ring)))


@pytest.mark.parametrize(("corner", "valid"), [((-1.0, 1.0), True), ((0.5, 1.0), False)])
def test_a_20000_vertex_zigzag_is_swept_along_its_short_axis(corner, valid, monkeypatch):
    # Every zigzag edge spans the full width: sweeping along x would keep all 20,000 edges
    # active at once (quadratic); the validator must pick y, where each edge is short.
    zigzag = [[float(k % 2), k * 1e-4] for k in range(20_000)]
    ring = [[0.5, -1.0], *zigzag, [0.5, 3.0], list(corner), [0.5, -1.0]]
    choices: list[bool] = []
    choose = rings._sweep_along_y_is_cheaper
    monkeypatch.setattr(
        rings,
        "_sweep_along_y_is_cheaper",
        lambda points: choices.append(choose(points)) or choices[-1],
    )
    if valid:
        assert validate_feature_collection(fc(with_rings(ring)))
    else:
        assert "ring intersects itself" in only_problem(fc(with_rings(ring)))
    assert choices == [True]


# --- every problem at once -----------------------------------------------------------------


def test_every_problem_of_every_feature_is_reported():
    broken_a = with_window("2024-11-01T00:00:00Z", "2024-11-01T12:00:00Z", alt_id="A")
    broken_a["geometry"] = {"type": "Point", "coordinates": [0, 0]}
    broken_b = feature(42, properties={"end_at": "2024-11-10T00:00:00Z"})
    features = [feature("ok"), broken_a, broken_b, feature("ok"), feature("last", type=None)]
    with pytest.raises(MetiValidationError) as caught:
        validate_feature_collection(fc(*features))
    located = [(p.index, p.feature_id, p.field) for p in caught.value.problems]
    assert located == [
        (1, "A", "properties.end_at"),
        (1, "A", "geometry.type"),
        (2, 42, "id"),
        (2, 42, "properties.start_at"),
        (3, "ok", "id"),
        (4, "last", "type"),
    ]
    message = str(caught.value)
    assert message.startswith("FeatureCollection is invalid (6 problems); nothing was sent:")
    assert "feature 3 (id='ok') id: duplicates the id of feature 0" in message


# --- loading -------------------------------------------------------------------------------


def test_load_returns_a_dict_as_is():
    value = fc(feature())
    assert load_feature_collection(value) is value


def test_load_copies_other_mappings_into_a_dict():
    value = MappingProxyType(fc(feature()))
    assert load_feature_collection(value) == dict(value)


def test_load_parses_a_json_string():
    value = fc(feature())
    assert load_feature_collection("\n  " + json.dumps(value)) == value


@pytest.mark.parametrize("name", ["fields.geojson", "fields.json"])
def test_load_reads_a_file_by_str_or_path(tmp_path, name):
    value = fc(feature())
    path = tmp_path / name
    path.write_text(json.dumps(value), encoding="utf-8")
    assert load_feature_collection(path) == value
    assert load_feature_collection(str(path)) == value


def test_load_reports_a_missing_file(tmp_path):
    missing = tmp_path / "nope.geojson"
    with pytest.raises(MetiValidationError) as caught:
        load_feature_collection(missing)
    (problem,) = caught.value.problems
    assert problem.index is None
    assert str(problem) == f"{missing}: file not found"


def test_load_reports_bad_json_with_line_and_column(tmp_path):
    path = tmp_path / "broken.geojson"
    path.write_text('{\n  "type": "FeatureCollection",\n  "features": [,]\n}', encoding="utf-8")
    with pytest.raises(MetiValidationError) as caught:
        load_feature_collection(path)
    assert str(caught.value.problems[0]) == (
        f"{path}: is not valid JSON: Expecting value at line 3, column 16"
    )


def test_load_reports_bad_json_text():
    with pytest.raises(MetiValidationError, match=r"is not valid JSON: .* line 1, column"):
        load_feature_collection('{"type": ')


def test_load_rejects_json_that_is_not_an_object():
    with pytest.raises(MetiValidationError, match="must be a JSON object, got array"):
        load_feature_collection("[1, 2]")


def test_load_reports_an_unreadable_path(tmp_path):
    with pytest.raises(MetiValidationError, match="cannot be read"):
        load_feature_collection(tmp_path)


@pytest.mark.parametrize("value", [42, None, b"{}", [feature()]])
def test_load_rejects_other_types(value):
    with pytest.raises(MetiValidationError, match="expected a dict, a JSON string or the path"):
        load_feature_collection(value)


# --- batching ------------------------------------------------------------------------------


def test_batched_splits_in_order():
    features = [feature(str(i)) for i in range(7)]
    batches = list(batched(features, 3))
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert [f for batch in batches for f in batch] == features
    assert list(batched([], 3)) == []


@pytest.mark.parametrize("size", [0, -1, True, 2.0, "2"])
def test_batched_rejects_bad_sizes(size):
    with pytest.raises(ValueError, match="size must be a positive integer"):
        list(batched([feature()], size))


def test_as_feature_collection_wraps_any_iterable():
    features = [feature("A"), feature("B")]
    assert as_feature_collection(iter(features)) == {
        "type": "FeatureCollection",
        "features": features,
    }


# --- properties ----------------------------------------------------------------------------

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
NOT_A_COORDINATE = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=3),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(min_value=180.0001, max_value=1e300),
    st.floats(max_value=-180.0001, min_value=-1e300),
    st.integers(min_value=181),
)


def valid_collection(size: int) -> dict[str, Any]:
    features = []
    for index in range(size):
        ring = [[lon + index * 0.01, lat] for lon, lat in SQUARE]
        features.append(with_rings(ring) | {"id": f"F-{index}"})
    return fc(*features)


def _delete_member(target: dict[str, Any], data: st.DataObject) -> None:
    where = data.draw(st.sampled_from(["feature", "properties", "geometry"]))
    if where == "feature":
        del target[data.draw(st.sampled_from(["type", "id", "properties", "geometry"]))]
    elif where == "properties":
        del target["properties"][data.draw(st.sampled_from(["start_at", "end_at"]))]
    else:
        del target["geometry"][data.draw(st.sampled_from(["type", "coordinates"]))]


def _replace_with_junk(target: dict[str, Any], data: st.DataObject) -> None:
    junk = data.draw(JUNK)
    where = data.draw(st.sampled_from(["type", "start_at", "end_at", "geo_type", "coords"]))
    if where == "type":
        target["type"] = junk
    elif where in ("start_at", "end_at"):
        target["properties"][where] = junk
    elif where == "geo_type":
        target["geometry"]["type"] = junk
    else:
        target["geometry"]["coordinates"] = junk


def _bad_id(target: dict[str, Any], data: st.DataObject) -> None:
    target["id"] = data.draw(
        st.one_of(
            JUNK.filter(lambda value: not isinstance(value, str)), st.just(""), st.just("x" * 50)
        )
    )


def _bad_coordinate(target: dict[str, Any], data: st.DataObject) -> None:
    ring = target["geometry"]["coordinates"][0]
    position = ring[data.draw(st.integers(0, len(ring) - 1))]
    position[data.draw(st.integers(0, 1))] = data.draw(NOT_A_COORDINATE)


def _short_or_open_ring(target: dict[str, Any], data: st.DataObject) -> None:
    ring = target["geometry"]["coordinates"][0]
    if data.draw(st.booleans()):
        del ring[data.draw(st.integers(1, 3)) :]
    else:
        ring[-1] = [ring[0][0] + data.draw(st.floats(1e-6, 1e-4)), ring[0][1]]


def _short_window(target: dict[str, Any], data: st.DataObject) -> None:
    start = datetime(2024, 11, 1, tzinfo=timezone.utc)
    seconds = data.draw(st.integers(-30 * 86_400, 86_400))
    end = start + timedelta(seconds=seconds)
    target["properties"] = {"start_at": start.isoformat(), "end_at": end.isoformat()}


MUTATIONS = [
    _delete_member,
    _replace_with_junk,
    _bad_id,
    _bad_coordinate,
    _short_or_open_ring,
    _short_window,
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(1, 4), mutation=st.sampled_from(MUTATIONS), data=st.data())
def test_any_breaking_mutation_is_reported_for_its_feature(size, mutation, data):
    value = valid_collection(size)
    index = data.draw(st.integers(0, size - 1))
    mutation(value["features"][index], data)
    with pytest.raises(MetiValidationError) as caught:
        validate_feature_collection(value)
    assert f"feature {index} " in str(caught.value)
    assert all(problem.index == index for problem in caught.value.problems)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(2, 4), data=st.data())
def test_a_repeated_id_is_reported_for_the_later_feature(size, data):
    value = valid_collection(size)
    later = data.draw(st.integers(1, size - 1))
    earlier = data.draw(st.integers(0, later - 1))
    value["features"][later]["id"] = value["features"][earlier]["id"]
    problem = only_problem(value)
    assert problem.startswith(f"feature {later} ")
    assert f"duplicates the id of feature {earlier}" in problem


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.sampled_from(["type", "id", "properties", "geometry", "coordinates", "start_at"]),
            children,
            max_size=4,
        ),
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(features=st.lists(JSON_VALUES, max_size=3))
def test_arbitrary_json_never_raises_anything_but_a_validation_error(features):
    with contextlib.suppress(MetiValidationError):
        validate_feature_collection(fc(*features))


def test_load_of_a_path_like_object(tmp_path):
    path = Path(tmp_path) / "one.geojson"
    path.write_text(json.dumps(fc(feature())), encoding="utf-8")
    assert validate_feature_collection(load_feature_collection(path)) == [feature()]
