"""Conflicts and percent_overlap as METI's ledger triggers decide them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_meti.emulator.ledger import Ledger
from tests.emulator_ledger_fields import collection, feature, multipolygon, polygon, rect


def store(ledger: Ledger, alt_id: str, geometry: dict) -> str:
    (row,) = ledger.create(collection(feature(alt_id, geometry)))
    return row["id"]


def partners(ledger: Ledger, source_id: str) -> list[str]:
    source = ledger.get(source_id)
    assert source is not None
    return list(source["conflict_with"])


def overlap(ledger: Ledger, source_id: str) -> float | None:
    source = ledger.get(source_id)
    assert source is not None
    return source["percent_overlap"]


def test_a_multipolygon_conflicts_per_part_with_polygons_and_multipolygons():
    ledger = Ledger()
    parts = store(ledger, "parts", multipolygon([rect(0, 0, 100, 100)], [rect(1000, 0, 1100, 100)]))
    near_second = store(ledger, "poly", polygon(rect(1050, 0, 1150, 100)))
    between = store(ledger, "between", polygon(rect(300, 0, 400, 100)))
    other_parts = store(
        ledger, "more", multipolygon([rect(500, 0, 600, 100)], [rect(-50, 0, 50, 100)])
    )
    assert partners(ledger, parts) == [near_second, other_parts]
    assert partners(ledger, between) == []
    # The poly covers half of one of two equal parts: a quarter of the MultiPolygon.
    assert overlap(ledger, parts) == pytest.approx(0.5, abs=1e-3)
    assert overlap(ledger, near_second) == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("band_first", [True, False])
def test_a_field_across_the_antimeridian_is_a_band_that_conflicts_like_the_ledger(band_first):
    ledger = Ledger()
    band = polygon(
        [[179.999, 10], [-179.999, 10], [-179.999, 10.001], [179.999, 10.001], [179.999, 10]]
    )
    # Anywhere along its latitudes, even on the other side of the world.
    far = polygon(rect(0, 0, 100, 100, at=(0.0, 10.0)))
    elsewhere = polygon(rect(0, 0, 100, 100, at=(0.0, 20.0)))
    order = [("band", band), ("far", far), ("elsewhere", elsewhere)]
    ids = {
        name: store(ledger, name, geometry)
        for name, geometry in (order if band_first else order[::-1])
    }
    assert partners(ledger, ids["band"]) == [ids["far"]]
    assert partners(ledger, ids["far"]) == [ids["band"]]
    assert partners(ledger, ids["elsewhere"]) == []


@pytest.mark.parametrize(
    ("lat", "east_west", "north_south"),
    [
        # Below 70°: 9 m (in UTM, 9 m of map) in every direction.
        (45.0, (9.05, True), (9.05, True)),
        (45.0, (8.95, False), (8.95, False)),
        # At 75°N PostGIS buffers in polar Lambert azimuthal equal-area: about 8.92 m of
        # ground east-west (tangential scale 1/cos 7.5°) and 9.08 m north-south (cos 7.5°).
        (75.0, (9.0, True), (9.0, False)),
        (-75.0, (9.0, True), (9.0, False)),
    ],
)
def test_the_9_m_threshold_depends_on_direction_beyond_70_degrees(lat, east_west, north_south):
    at = (20.0, lat)
    for axis, (strip, conflicts) in (("x", east_west), ("y", north_south)):
        ledger = Ledger()
        store(ledger, "old", polygon(rect(0, 0, 100, 100, at=at)))
        shift = 100 - strip
        moved = (
            rect(shift, 0, shift + 100, 100, at=at)
            if axis == "x"
            else rect(0, shift, 100, shift + 100, at=at)
        )
        new = store(ledger, "new", polygon(moved))
        assert bool(partners(ledger, new)) is conflicts, (lat, axis, strip)


def test_percent_overlap_after_a_delete_counts_every_intersecting_source():
    ledger = Ledger()
    base = store(ledger, "base", polygon(rect(0, 0, 100, 100)))
    right = store(ledger, "right", polygon(rect(50, 0, 150, 100)))  # conflict: half of base
    touching = store(ledger, "touching", polygon(rect(-95, 0, 5, 100)))  # 5 m: no conflict
    left = store(ledger, "left", polygon(rect(0, 0, 30, 100)))  # conflict: 30% of base
    assert partners(ledger, base) == [right, left]
    assert partners(ledger, touching) == []
    assert overlap(ledger, base) == pytest.approx(0.80, abs=1e-3)  # its partners: 50% + 30%
    ledger.delete(left)
    assert partners(ledger, base) == [right]
    # sources_before_delete: every source meeting it in space and time, partner or not.
    assert overlap(ledger, base) == pytest.approx(0.55, abs=1e-3)
    assert overlap(ledger, touching) is None


def test_neighbours_updated_at_never_changes():
    moments = iter(
        datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(hours=h) for h in range(10)
    )
    ledger = Ledger(clock=lambda: next(moments))
    base = store(ledger, "base", polygon(rect(0, 0, 100, 100)))
    stamp = ledger.get(base)["updated_at"]  # type: ignore[index]
    other = store(ledger, "other", polygon(rect(50, 0, 150, 100)))
    assert partners(ledger, base) == [other]
    ledger.delete(other)
    source = ledger.get(base)
    assert source is not None
    assert (source["updated_at"], source["created_at"]) == (stamp, stamp)
    assert (source["conflict"], source["conflict_with"], source["percent_overlap"]) == (
        False,
        [],
        None,
    )


BORDERS = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"name": name},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[w, 40], [e, 40], [e, 50], [w, 50], [w, 40]]],
            },
        }
        for name, w, e in (("West", 9.0, 10.0), ("East", 10.0, 11.0))
    ],
}


def test_with_country_boundaries_conflicts_stay_within_one_country():
    ledger = Ledger(countries=BORDERS)
    west = store(ledger, "west", polygon(rect(-60, 0, 40, 100)))  # centroid west of 10°E
    east = store(ledger, "east", polygon(rect(-30, 0, 70, 100)))  # centroid east of it
    inside = store(ledger, "inside", polygon(rect(-50, 0, 0, 100)))
    assert [ledger.get(i)["country"] for i in (west, east, inside)] == ["West", "East", "West"]  # type: ignore[index]
    assert partners(ledger, west) == [inside]
    assert partners(ledger, east) == []


def test_a_source_in_no_country_never_conflicts():
    ledger = Ledger(countries=BORDERS)
    square = polygon(rect(0, 0, 100, 100, at=(30.0, 45.0)))
    first, second = store(ledger, "a", square), store(ledger, "b", square)
    assert ledger.get(first)["country"] is None  # type: ignore[index]
    assert partners(ledger, first) == partners(ledger, second) == []


def test_country_boundaries_load_from_a_file(tmp_path):
    import json

    path = tmp_path / "countries.geojson"
    path.write_text(json.dumps(BORDERS))
    ledger = Ledger(countries=path)
    assert (
        ledger.get(store(ledger, "f", polygon(rect(0, 0, 100, 100, at=(10.5, 45.0)))))["country"]
        == "East"
    )  # type: ignore[index]
