"""Hectares as METI's ledger stores them: ST_Area(geography, true) / 10000, unrounded.

Expected values are published or computed by hand from the closed form of a zone's area on
the WGS84 ellipsoid (between the equator and latitude φ, over all longitudes):
2π b² [sin φ / (2 (1 - e² sin² φ)) + ln((1 + e sin φ) / (1 - e sin φ)) / (4e)].
"""

from __future__ import annotations

import math

import pytest

from airflow_provider_meti.emulator.ledger import Ledger
from tests.emulator_ledger_fields import E2, A, F, collection, feature, multipolygon, polygon, rect
from tests.features import APITEST2

B = A * (1 - F)
E = math.sqrt(E2)


def zone_m2(lat: float) -> float:
    s = math.sin(math.radians(lat))
    return (
        2
        * math.pi
        * B
        * B
        * (s / (2 * (1 - E2 * s * s)) + math.log((1 + E * s) / (1 - E * s)) / (4 * E))
    )


def hectares_of(geometry: dict) -> float:
    ledger = Ledger()
    (row,) = ledger.create(collection(feature("f", geometry)))
    source = ledger.get(row["id"])
    assert source is not None
    return float(source["hectares"])


def test_apitest2_is_the_documented_41_1426_ha_unrounded():
    hectares = hectares_of(APITEST2["geometry"])
    assert hectares == pytest.approx(41.1426, abs=1e-4)
    assert hectares != round(hectares, 3)  # not rounded


def test_a_one_degree_cell_at_the_equator():
    # Bounded by the equator, two meridians and the geodesic (not the parallel) at 1°N, which
    # bows poleward and adds a lens of ~0.3 km² to the zone's 12,308.46 km²: ~12,308.8 km².
    cell = hectares_of(polygon([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]])) / 100
    zone = zone_m2(1) / 360 / 1e6
    assert zone == pytest.approx(12_308.46, abs=0.01)
    assert cell == pytest.approx(12_308.78, abs=0.01)
    assert 0 < cell - zone < 0.5


def test_a_polar_cap_from_minus_180_to_180_is_not_zero():
    # The northern hemisphere: the equator (a geodesic) from -180 to 180, up to the pole.
    ring = [[-180, 0], [-90, 0], [0, 0], [90, 0], [180, 0], [180, 90], [-180, 90], [-180, 0]]
    assert hectares_of(polygon(ring)) == pytest.approx(zone_m2(90) / 1e4, rel=1e-9)
    assert zone_m2(90) * 2 / 1e6 == pytest.approx(510_065_621.7, abs=0.1)  # WGS84's surface


def test_a_triangle_with_its_apex_at_the_pole_is_an_eighth_of_the_ellipsoid():
    octant = hectares_of(polygon([[0, 0], [90, 0], [0, 90], [0, 0]]))
    assert octant == pytest.approx(zone_m2(90) / 4 / 1e4, rel=1e-9)


def test_holes_are_subtracted_and_multipolygon_parts_added():
    whole = hectares_of(polygon(rect(0, 0, 100, 100)))
    with_hole = hectares_of(polygon(rect(0, 0, 100, 100), rect(25, 25, 75, 75)))
    assert whole == pytest.approx(1.0, rel=1e-3)
    assert with_hole == pytest.approx(whole * 0.75, rel=1e-6)
    parts = multipolygon([rect(0, 0, 100, 100)], [rect(300, 0, 400, 100)])
    assert hectares_of(parts) == pytest.approx(2 * whole, rel=1e-5)


def test_a_field_across_the_antimeridian_keeps_its_small_geodesic_area():
    per_lon = 111_319.49  # metres per degree of longitude at the equator, for 0.001°
    ring = [[179.9995, 0], [-179.9995, 0], [-179.9995, 0.001], [179.9995, 0.001], [179.9995, 0]]
    assert hectares_of(polygon(ring)) == pytest.approx(0.001 * per_lon * 110.57 / 1e4, rel=1e-3)
