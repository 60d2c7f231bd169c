"""Every reply spelling METI has used reads into one shape (``replies``), and one definition
of "in conflict" (``conditions``); over HTTP against the emulator's 2024 reply shape too."""

from __future__ import annotations

import pytest

from airflow_provider_meti.api import API_V1
from airflow_provider_meti.client import ClientSettings, MetiClient
from airflow_provider_meti.conditions import in_conflict
from airflow_provider_meti.emulator import MetiEmulator
from airflow_provider_meti.replies import (
    conflict_with_of,
    hectares_number,
    normal_page,
    normal_source,
)
from tests.airflow_context import METI_EMAIL, METI_PASSWORD
from tests.features import collection, square_feature


def test_internal_id_reads_as_alt_id():
    source = normal_source({"id": "src_1", "internal_id": "APITEST2"})
    assert source["alt_id"] == "APITEST2" and source["internal_id"] == "APITEST2"


def test_claim_start_and_end_read_as_start_at_and_end_at():
    source = normal_source({"id": "s", "claim_start": "2024-11-01", "claim_end": "2024-11-10"})
    assert (source["start_at"], source["end_at"]) == ("2024-11-01", "2024-11-10")
    assert source["claim_start"] == "2024-11-01"


def test_hectares_text_reads_as_a_number():
    source = normal_source({"id": "s", "hectares": "41.142643914938ha (101.67ac)"})
    assert source["hectares"] == 41.142643914938
    assert hectares_number("12") == 12.0 and hectares_number("lots") is None


def test_conflicting_sources_reads_as_conflict_with():
    source = normal_source({"id": "s", "conflicting_sources": ["src_2"]})
    assert source["conflict_with"] == ["src_2"] and source["conflicting_sources"] == ["src_2"]


def test_a_normal_source_and_page_are_returned_as_they_are():
    source = {"id": "s", "alt_id": "a", "hectares": 1.5}
    page = [source]
    assert normal_source(source) is source and normal_page(page) is page


def test_a_normal_key_already_present_is_not_overwritten():
    assert normal_source({"id": "s", "alt_id": "new", "internal_id": "old"})["alt_id"] == "new"


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("src_2", ["src_2"]),
        (["src_2", None, " ", "src_3", "src_2"], ["src_2", "src_3"]),
        ([{"id": "src_4"}, {"name": "no id"}], ["src_4"]),
        (None, []),
    ],
)
def test_conflict_with_reads_into_a_clean_list_of_ids(value, ids):
    assert conflict_with_of({"conflict_with": value}) == ids


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"conflict": True}, True),
        ({"conflict": False, "conflict_with": []}, False),
        ({"conflict_with": ["src_2"]}, True),  # no flag, but a partner
        ({"conflict_with": "src_2"}, True),
        ({"conflict_with": [None]}, False),
        ({"conflicting_sources": [{"id": "src_2"}]}, True),
    ],
)
def test_in_conflict_is_the_flag_or_a_partner(source, expected):
    assert in_conflict(source) is expected


def test_the_2024_reply_shape_reads_like_todays_over_http():
    with MetiEmulator(port=0, documented_only=True, reply_shape="2024") as meti:
        meti.ledger.create(collection(square_feature("A"), square_feature("B")))
        token = API_V1.token_source(meti.url, METI_EMAIL, METI_PASSWORD)
        settings = ClientSettings(base_url=meti.url, timeout=5)
        with MetiClient(settings, token, api=API_V1) as client:
            listed = list(client.iter_sources())
            one = client.get_source(listed[0]["id"])
    ids = {source["alt_id"]: source["id"] for source in listed}
    for source in [*listed, one]:
        assert source["alt_id"] in ("A", "B")
        assert source["start_at"] and source["end_at"]
        assert isinstance(source["hectares"], float)
        other = ids["B" if source["alt_id"] == "A" else "A"]  # the same square: they conflict
        assert conflict_with_of(source) == [other]
        assert in_conflict(source)
