"""Extract writers and today's v2 sources: typed columns for the descriptive and protected-area
fields, MultiPolygon geometry (bare or inside the stored Feature), and values that fit no
column (kept in ``extra_fields``, never a failed extract) or no JSON text (NDJSON stays valid).
"""

from __future__ import annotations

import io
import json
import math

import pytest

pq = pytest.importorskip(
    "pyarrow.parquet", reason="needs the airflow-provider-meti[parquet] extra (pyarrow)"
)
shapely = pytest.importorskip(
    "shapely", reason="needs the airflow-provider-meti[parquet] extra (shapely)"
)
import pyarrow as pa  # noqa: E402

from airflow_provider_meti.outputs.features import write_features  # noqa: E402
from airflow_provider_meti.outputs.formats import write_extract  # noqa: E402
from airflow_provider_meti.outputs.parquet import write_geoparquet  # noqa: E402
from tests.test_geoparquet import SQUARE  # noqa: E402

TWO_SQUARES = {
    "type": "MultiPolygon",
    "coordinates": [
        [[[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]],
        [[[2.0, 2.0], [2.0, 3.0], [3.0, 3.0], [3.0, 2.0], [2.0, 2.0]]],
    ],
}
V2_FIELDS = {
    "methodology": "Agriculture",
    "source_type": "FIELD",
    "attribute_type": ["CARBON_REMOVAL", "BIODIVERSITY"],
    "geometry_source": "CUSTODIAN_DRAWN",
    "tags": ["cover-crop"],
    "steward_id": "GM-Producer-1",
    "project_id": "P-7",
    "outcome_reporting_year": 2025,
    "unep_overlap": True,
    "pa_name": "Réserve naturelle",
    "pa_designation": "Nature Reserve",
    "wdpaid": 555512345,
    "percent_overlap": 12.5,
    "hectares": 41.142643914938,
}


def a_source(**fields) -> dict:
    source = {
        "id": "src_AAAAAAAAAAAAA",
        "alt_id": "FIELD-1",
        "start_at": "2024-11-01T16:25:00.000Z",
        "geojson": {"type": "Feature", "geometry": SQUARE, "properties": {"alt_id": "FIELD-1"}},
        **V2_FIELDS,
    }
    source.update(fields)
    return source


def parquet_of(pages) -> io.BytesIO:
    buffer = io.BytesIO()
    write_geoparquet(buffer, pages)
    buffer.seek(0)
    return buffer


def rows_of(pages) -> list[dict]:
    return pq.read_table(parquet_of(pages)).to_pylist()


def geometry_metadata(buffer: io.BytesIO) -> dict:
    return json.loads(pq.ParquetFile(buffer).schema_arrow.metadata[b"geo"])["columns"]["geometry"]


def strict_json(text: str):
    """json.loads that refuses what is not JSON (Python's reads Infinity and NaN)."""

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


# Typed v2 columns


def test_the_v2_fields_have_typed_columns():
    schema = pq.ParquetFile(parquet_of([[a_source()]])).schema_arrow
    strings = ("methodology", "source_type", "geometry_source", "steward_id", "project_id")
    for name in (*strings, "pa_name", "pa_designation", "wdpaid"):
        assert schema.field(name).type == pa.string(), name
    assert schema.field("outcome_reporting_year").type == pa.int64()
    assert schema.field("attribute_type").type == pa.list_(pa.string())
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("unep_overlap").type == pa.bool_()
    assert schema.field("percent_overlap").type == pa.float64()
    assert schema.field("hectares").type == pa.float64()


def test_the_v2_values_land_in_their_columns_and_nothing_in_extra_fields():
    (row,) = rows_of([[a_source()]])
    expected = dict(V2_FIELDS, wdpaid="555512345")
    assert {name: row[name] for name in expected} == expected
    assert row["extra_fields"] is None


def test_a_wdpaid_given_as_text_is_kept_as_that_text():
    (row,) = rows_of([[a_source(wdpaid="0555512345")]])
    assert row["wdpaid"] == "0555512345" and row["extra_fields"] is None


def test_ndjson_keeps_the_v2_values_as_they_came():
    handle = io.StringIO()
    write_features(handle, [[a_source()]], as_collection=False)
    properties = json.loads(handle.getvalue())["properties"]
    assert {name: properties[name] for name in V2_FIELDS} == V2_FIELDS  # wdpaid still a number


# MultiPolygon, bare or inside the stored Feature


def test_a_multipolygon_is_written_as_wkb_and_both_types_are_listed():
    buffer = parquet_of([[a_source()], [a_source(id="src_B", geojson=TWO_SQUARES)]])
    rows = pq.read_table(buffer).to_pylist()
    assert shapely.from_wkb(rows[0]["geometry"]).equals(shapely.geometry.shape(SQUARE))
    multi = shapely.from_wkb(rows[1]["geometry"])
    assert multi.geom_type == "MultiPolygon" and len(multi.geoms) == 2
    assert multi.equals(shapely.geometry.shape(TWO_SQUARES))
    buffer.seek(0)
    metadata = geometry_metadata(buffer)
    assert metadata["geometry_types"] == ["MultiPolygon", "Polygon"]
    assert metadata["bbox"] == [0.0, 0.0, 11.0, 51.0]


def test_geometry_types_list_what_occurs():
    only_multi = [[a_source(geojson={"type": "Feature", "geometry": TWO_SQUARES})]]
    assert geometry_metadata(parquet_of(only_multi))["geometry_types"] == ["MultiPolygon"]


def test_a_stored_feature_without_geometry_gives_a_null_geometry_not_an_extra():
    (row,) = rows_of([[a_source(geojson={"type": "Feature", "geometry": None})]])
    assert row["geometry"] is None and row["extra_fields"] is None


def test_ndjson_takes_the_geometry_out_of_the_stored_feature():
    handle = io.StringIO()
    pages = [[a_source(geojson={"type": "Feature", "geometry": TWO_SQUARES}), a_source()]]
    write_features(handle, pages, as_collection=False)
    first, second = (json.loads(line) for line in handle.getvalue().splitlines())
    assert first["geometry"] == TWO_SQUARES and second["geometry"] == SQUARE


def test_geopandas_and_duckdb_read_the_multipolygon_back(tmp_path):
    geopandas = pytest.importorskip("geopandas", reason="test-only dependency geopandas")
    duckdb = pytest.importorskip("duckdb", reason="test-only dependency duckdb")
    target = tmp_path / "sources.parquet"
    write_extract(target, [[a_source(), a_source(id="src_B", geojson=TWO_SQUARES)]], "parquet")

    frame = geopandas.read_parquet(target)
    assert frame.geometry.geom_type.tolist() == ["Polygon", "MultiPolygon"]
    assert frame.geometry.iloc[1].equals(shapely.geometry.shape(TWO_SQUARES))
    assert frame["attribute_type"].iloc[0].tolist() == ["CARBON_REMOVAL", "BIODIVERSITY"]
    with duckdb.connect() as connection:
        years, wdpaid = connection.execute(
            "SELECT outcome_reporting_year, wdpaid FROM read_parquet(?) LIMIT 1", [str(target)]
        ).fetchone()
    assert (years, wdpaid) == (2025, "555512345")


# Values that fit no column: kept in extra_fields, the extract goes on

UNFIT = [
    ("outcome_reporting_year", 2**63),  # beyond int64
    ("outcome_reporting_year", "²"),  # "²".isdigit() is true, int("²") fails
    ("outcome_reporting_year", "٢٠٢٥"),  # non-ASCII digits: no year in this column
    ("outcome_reporting_year", 2025.0),
    ("outcome_reporting_year", True),
    ("hectares", 10**400),  # an integer beyond float64
    ("hectares", "41.14ha (101.67ac)"),  # should replies.py not have read it
    ("hectares", math.nan),
    ("percent_overlap", -math.inf),
    ("start_at", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
    ("end_at", "9999-12-31T23:30:00-01:00"),  # after year 9999 in UTC
    ("unep_overlap", "true"),
    ("wdpaid", 5.5),
    ("attribute_type", "CARBON_REMOVAL"),  # a text, not a list of texts
    ("tags", ["ok", None]),
]


@pytest.mark.parametrize(("name", "value"), UNFIT, ids=[f"{n}={v!r:.20}" for n, v in UNFIT])
def test_a_value_that_does_not_fit_its_column_goes_to_extra_fields(name, value):
    rows = rows_of([[a_source(id="src_A"), a_source(id="src_B", **{name: value}), a_source()]])
    assert len(rows) == 3  # the sources after it are written too
    bad = rows[1]
    assert bad[name] is None
    kept = strict_json(bad["extra_fields"])
    assert list(kept) == [name]
    if isinstance(value, float) and math.isnan(value):
        assert kept[name] is None  # no JSON number is NaN
    else:
        assert kept[name] == value
    assert rows[0]["extra_fields"] is None and rows[2]["extra_fields"] is None


def test_a_year_that_fits_int64_stays_in_its_column_however_unlikely():
    # The column is int64: 2025000000000 fits, so it is kept as it came (a year of int32 did
    # not fit it, and made the writer fail).
    (row,) = rows_of([[a_source(outcome_reporting_year=2025000000000)]])
    assert row["outcome_reporting_year"] == 2025000000000 and row["extra_fields"] is None


def test_a_year_as_text_is_read_as_the_year():
    (row,) = rows_of([[a_source(outcome_reporting_year=" 2025 ")]])
    assert row["outcome_reporting_year"] == 2025 and row["extra_fields"] is None


def test_an_infinite_hectares_is_kept_as_the_json_number_1e999():
    # json.loads("1e400") is inf: the float column takes finite numbers only, and extra_fields
    # writes inf as a JSON number that reads back as inf (Infinity would be no JSON).
    (row,) = rows_of([[a_source(hectares=math.inf)]])
    assert row["hectares"] is None
    assert row["extra_fields"] == '{"hectares":1e999}'
    assert strict_json(row["extra_fields"]) == {"hectares": math.inf}


def test_a_lone_surrogate_is_kept_escaped_in_extra_fields():
    source = a_source(alt_id="FIELD-\ud800", tags=["a\udfff"], **{"note\ud800": "é"})
    buffer = parquet_of([[source, a_source()]])
    rows = pq.read_table(buffer).to_pylist()
    assert rows[0]["alt_id"] is None and rows[0]["tags"] is None
    assert rows[1]["alt_id"] == "FIELD-1"
    text = rows[0]["extra_fields"]
    assert "\\ud800" in text and text.isascii()
    assert strict_json(text) == {"alt_id": "FIELD-\ud800", "tags": ["a\udfff"], "note\ud800": "é"}


def test_a_geometry_with_an_infinite_coordinate_goes_to_extra_fields():
    endless = {"type": "Polygon", "coordinates": [[[0, 0], [0, math.inf], [1, 1], [0, 0]]]}
    buffer = parquet_of([[a_source(geojson=endless), a_source()]])
    rows = pq.read_table(buffer).to_pylist()
    assert rows[0]["geometry"] is None and rows[1]["geometry"] is not None
    kept = strict_json(rows[0]["extra_fields"])
    assert kept["geojson"]["coordinates"][0][1] == [0, math.inf]
    buffer.seek(0)
    raw_geo = pq.ParquetFile(buffer).schema_arrow.metadata[b"geo"].decode()
    assert strict_json(raw_geo)["columns"]["geometry"]["bbox"] == [10.0, 50.0, 11.0, 51.0]


def test_one_unfit_source_does_not_fail_the_extract_file(tmp_path):
    target = tmp_path / "sources.parquet"
    pages = [[a_source(id="src_A")], [a_source(id="src_B", alt_id="\ud800", hectares=math.inf)]]
    assert write_extract(target, pages, "parquet") == (str(target), 2)
    assert pq.read_table(target).column("id").to_pylist() == ["src_A", "src_B"]


# NDJSON and GeoJSON stay valid JSON in valid UTF-8


@pytest.mark.parametrize("output_format", ["ndjson", "geojson"])
def test_a_lone_surrogate_and_an_infinity_still_give_valid_json(tmp_path, output_format):
    target = tmp_path / f"sources.{output_format}"
    odd = a_source(alt_id="FIELD-\ud800", pa_name="Réserve", hectares=math.inf, score=math.nan)
    write_extract(target, [[odd, a_source()]], output_format)

    text = target.read_bytes().decode("utf-8")  # strict: raises on invalid UTF-8
    if output_format == "ndjson":
        features = [strict_json(line) for line in text.splitlines()]
    else:
        features = strict_json(text)["features"]
    first = features[0]["properties"]
    assert first["alt_id"] == "FIELD-\ud800" and first["pa_name"] == "Réserve"
    assert first["hectares"] == math.inf and first["score"] is None
    assert features[1]["properties"]["pa_name"] == "Réserve naturelle"
    assert "Réserve naturelle" in text  # lines without a surrogate keep non-ASCII as is
