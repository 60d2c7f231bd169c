"""Lanes: features that overlap in space and time are never sent concurrently."""

from __future__ import annotations

import random
from typing import Any

import pytest

from airflow_provider_meti.lanes import overlap_lanes

YEAR = ("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z")


def field(
    x: float, y: float, size: float = 0.001, window: tuple[str, str] = YEAR
) -> dict[str, Any]:
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {
        "type": "Feature",
        "id": f"F-{x}-{y}",
        "properties": {"start_at": window[0], "end_at": window[1]},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


def test_no_features_no_lanes():
    assert overlap_lanes([]) == []


def test_far_apart_fields_get_a_lane_each():
    assert overlap_lanes([field(0, 0), field(1, 0), field(0, 1)]) == [[0], [1], [2]]


def test_overlapping_fields_share_a_lane():
    assert overlap_lanes([field(0, 0), field(5, 5), field(0.0005, 0.0005)]) == [[0, 2], [1]]


def test_touching_fields_go_out_in_parallel():
    # The ledger needs the new polygon shrunk by 9 m to meet the other: touching never does.
    assert overlap_lanes([field(0, 0), field(0.001, 0)]) == [[0], [1]]


def test_fields_overlapping_by_a_sliver_share_a_lane():
    # Even 10 cm of overlap: the lane does not guess where the ledger's threshold falls.
    sliver = 0.1 / 111_320
    assert overlap_lanes([field(0, 0), field(0, 0.001 - sliver)]) == [[0, 1]]


def test_neighbours_5_m_apart_go_out_in_parallel():
    gap_5_m = 5 / 111_320
    assert overlap_lanes([field(0, 0), field(0, 0.001 + gap_5_m)]) == [[0], [1]]


def test_a_chain_of_overlaps_is_one_lane():
    # A overlaps B, B overlaps C, A and C are apart: all three in one lane.
    chain = [field(0, 0), field(0.0018, 0), field(0.0009, 0), field(3, 3)]
    assert overlap_lanes(chain) == [[0, 1, 2], [3]]


def test_disjoint_windows_on_the_same_field_get_separate_lanes():
    first = field(0, 0, window=("2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"))
    second = field(0, 0, window=("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"))  # [start, end)
    overlapping = field(0, 0, window=("2024-06-01T00:00:00+02:00", "2024-07-01T00:00:00Z"))
    assert overlap_lanes([first, second]) == [[0], [1]]
    assert overlap_lanes([first, second, overlapping]) == [[0, 2], [1]]


def test_windows_are_compared_in_utc():
    first = field(0, 0, window=("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z"))
    # 2025-02-01T00:30+01:00 is 2025-01-31T23:30Z: inside the first window.
    second = field(0, 0, window=("2025-02-01T00:30:00+01:00", "2025-03-01T00:00:00Z"))
    assert overlap_lanes([first, second]) == [[0, 1]]


def test_every_part_of_a_multipolygon_counts():
    far_part = [[[5, 5], [5.001, 5], [5.001, 5.001], [5, 5.001], [5, 5]]]
    near_part = field(0, 0)["geometry"]["coordinates"]
    multi = field(9, 9)
    multi["geometry"] = {"type": "MultiPolygon", "coordinates": [near_part, far_part]}
    assert overlap_lanes([field(5.0005, 5.0005), field(7, 7), multi]) == [[0, 2], [1]]


def test_a_huge_field_joins_every_field_it_covers():
    small = [field(x * 0.01, 0) for x in range(50)]
    huge = field(-1, -1, size=3)
    lanes = overlap_lanes([*small, field(40, 40), huge])
    assert lanes == [[*range(50), 51], [50]]


def test_groups_come_in_order_of_their_first_index_and_are_sorted():
    features = [field(2, 2), field(0, 0), field(2.0005, 2), field(0.0005, 0), field(9, 9)]
    assert overlap_lanes(features) == [[0, 2], [1, 3], [4]]


def test_unreadable_features_are_refused():
    broken = field(0, 0)
    del broken["properties"]["end_at"]
    with pytest.raises(ValueError, match="feature 1 has no readable start_at and end_at"):
        overlap_lanes([field(1, 1), broken])
    with pytest.raises(ValueError, match="feature 0 has no readable Polygon"):
        overlap_lanes([{"geometry": None, "properties": {}}])


def test_lanes_agree_with_comparing_every_pair():
    rnd = random.Random(3)
    features = [
        field(
            rnd.uniform(0, 0.05),
            rnd.uniform(0, 0.05),
            size=rnd.choice([0.001, 0.002, 0.01]),
            window=rnd.choice([YEAR, ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")]),
        )
        for _ in range(300)
    ]
    expected = _lanes_by_every_pair(features)
    assert overlap_lanes(features) == expected
    assert 1 < len(expected) < 300


def test_100000_scattered_fields_are_grouped_in_one_pass():
    # 100k fields on a grid, each 0.001 degrees wide with 0.005 between them: no two overlap.
    # A pairwise comparison would take 5e9 steps; the grid visits each field once.
    properties = {"start_at": YEAR[0], "end_at": YEAR[1]}
    features = []
    for k in range(100_000):
        x, y = (k % 316) * 0.006, (k // 316) * 0.006
        ring = [[x, y], [x + 0.001, y], [x + 0.001, y + 0.001], [x, y + 0.001], [x, y]]
        features.append(
            {"properties": properties, "geometry": {"type": "Polygon", "coordinates": [ring]}}
        )
    lanes = overlap_lanes(features)
    assert len(lanes) == 100_000
    assert lanes[:3] == [[0], [1], [2]]


def _lanes_by_every_pair(features: list[dict[str, Any]]) -> list[list[int]]:
    from airflow_provider_meti.timestamps import parse_timestamp

    def box(feature: dict[str, Any]) -> tuple[float, float, float, float]:
        ring = feature["geometry"]["coordinates"][0]
        xs, ys = [p[0] for p in ring], [p[1] for p in ring]
        return min(xs), min(ys), max(xs), max(ys)

    boxes = [box(f) for f in features]
    windows = [
        (parse_timestamp(f["properties"]["start_at"]), parse_timestamp(f["properties"]["end_at"]))
        for f in features
    ]
    lane_of = list(range(len(features)))
    for a in range(len(features)):
        for b in range(a):
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes[a], boxes[b]
            meet = ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1
            if meet and windows[a][0] < windows[b][1] and windows[b][0] < windows[a][1]:
                old, new = max(lane_of[a], lane_of[b]), min(lane_of[a], lane_of[b])
                lane_of = [new if lane == old else lane for lane in lane_of]
    lanes: dict[int, list[int]] = {}
    for index, lane in enumerate(lane_of):
        lanes.setdefault(lane, []).append(index)
    return list(lanes.values())
