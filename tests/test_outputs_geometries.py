"""Bulk reading of a page's GeoJSON geometries gives exactly what shapely's ``shape`` gives,
one geometry at a time, and reports the unreadable ones alone."""

from __future__ import annotations

import pytest

shapely = pytest.importorskip(
    "shapely", reason="needs the airflow-provider-meti[parquet] extra (shapely)"
)
from airflow_provider_meti.outputs import geometries as geometries_module  # noqa: E402
from airflow_provider_meti.outputs.geometries import read_geometries  # noqa: E402

SHELL = [[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0], [0.0, 0.0]]
HOLE = [[2.0, 2.0], [4.0, 2.0], [4.0, 4.0], [2.0, 2.0]]
PLAIN = [
    {"type": "Polygon", "coordinates": [SHELL]},
    {"type": "Polygon", "coordinates": [SHELL, HOLE, [[5, 5], [6, 5], [6, 6], [5, 5]]]},
    {"type": "MultiPolygon", "coordinates": [[SHELL, HOLE], [[[20, 20], [21, 20], [21, 21]]]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [0, 1], [1, 1]]]},  # closed by both readers
    {"type": "MultiPolygon", "coordinates": [[[[1, 1], [1, 2], [2, 2], [1, 1]]]]},
]
ODD = [
    None,
    {"type": "Polygon", "coordinates": []},  # empty
    {"type": "Polygon", "coordinates": [[]]},  # empty too
    {"type": "MultiPolygon", "coordinates": []},
    {"type": "Point", "coordinates": [1, 2]},
]
WITH_Z = {"type": "Polygon", "coordinates": [[[0, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]]]}


def wkb(geometries):
    return [None if g is None else shapely.to_wkb(g, flavor="iso") for g in geometries]


def counted(calls):
    read = geometries_module.read_geometry

    def read_geometry(value):
        calls.append(value)
        return read(value)

    return read_geometry


def one_by_one(values):
    return [None if value is None else shapely.geometry.shape(value) for value in values]


def test_the_bulk_reading_equals_shape_one_by_one(monkeypatch):
    read_alone = []
    monkeypatch.setattr(geometries_module, "read_geometry", counted(read_alone))
    values = PLAIN + ODD + PLAIN[::-1]
    geometries, unreadable = read_geometries(values)
    assert unreadable == []
    assert read_alone == [value for value in ODD if value is not None]  # the rest in bulk
    assert wkb(geometries) == wkb(one_by_one(values))
    assert geometries[2].geom_type == "MultiPolygon" and len(geometries[2].geoms) == 2
    assert len(geometries[1].interiors) == 2


def test_mixed_dimensions_on_one_page_still_read_each_as_given():
    # one array cannot hold both: the page is read one by one
    values = [PLAIN[0], WITH_Z, PLAIN[2]]
    geometries, unreadable = read_geometries(values)
    assert unreadable == [] and wkb(geometries) == wkb(one_by_one(values))
    assert [g.has_z for g in geometries] == [False, True, False]


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]},  # too few positions
        {"type": "Polygon", "coordinates": [[[0, "x"], [0, 1], [1, 1], [0, 0]]]},
        {"type": "MultiPolygon", "coordinates": [[[[0, 0, 0, 0], [1, 1, 1, 1]]]]},
        {"type": "Nonsense"},
    ],
)
def test_an_unreadable_geometry_is_reported_alone(bad):
    values = [PLAIN[0], bad, PLAIN[2]]
    geometries, unreadable = read_geometries(values)
    assert unreadable == [1] and geometries[1] is None
    assert wkb([geometries[0], geometries[2]]) == wkb(one_by_one([PLAIN[0], PLAIN[2]]))
