"""GeoParquet extracts: what the file holds, that other tools read it, and how it is written.

Read back three ways: pyarrow.parquet (rows, schema, the ``geo`` metadata), geopandas (the
geometry and its CRS) and DuckDB's plain ``read_parquet`` (no spatial extension).
"""

from __future__ import annotations

import io
import json
import sys
from datetime import datetime, timezone

import pytest

pq = pytest.importorskip(
    "pyarrow.parquet", reason="needs the airflow-provider-meti[parquet] extra (pyarrow)"
)
shapely = pytest.importorskip(
    "shapely", reason="needs the airflow-provider-meti[parquet] extra (shapely)"
)

from airflow_provider_meti.exceptions import MetiApiError, MetiConfigError  # noqa: E402
from airflow_provider_meti.operators.meti import MetiListSourcesOperator  # noqa: E402
from airflow_provider_meti.outputs.formats import resolve_output_format  # noqa: E402
from airflow_provider_meti.outputs.parquet import write_geoparquet  # noqa: E402
from tests.features import APITEST2  # noqa: E402

SQUARE = {
    "type": "Polygon",
    "coordinates": [[[10.0, 50.0], [10.0, 51.0], [11.0, 51.0], [11.0, 50.0], [10.0, 50.0]]],
}


def a_source(**fields) -> dict:
    source = {
        "id": "src_AAAAAAAAAAAAA",
        "alt_id": "FIELD-1",
        "start_at": "2024-11-01T16:25:00.000Z",
        "end_at": "2024-11-10T16:25:00.000Z",
        "geojson": SQUARE,
        "hectares": 41.14,
        "country": "US",
        "centroid": [10.5, 50.5],
        "conflict": True,
        "conflict_with": ["src_BBBBBBBBBBBBB"],
        "percent_overlap": 0.25,
        "methodology": "m1",
        "steward_id": None,
        "project_id": "p1",
        "outcome_reporting_year": "2024",
        "tags": ["a", "b"],
        "created_at": "2024-11-01T16:25:00+00:00",
        "updated_at": "2024-11-02T10:00:00.123456+02:00",
    }
    source.update(fields)
    return source


def written(pages) -> io.BytesIO:
    buffer = io.BytesIO()
    write_geoparquet(buffer, pages)
    buffer.seek(0)
    return buffer


def geo_metadata(source) -> dict:
    return json.loads(pq.ParquetFile(source).schema_arrow.metadata[b"geo"])


# The file


def test_typed_columns_and_one_row_group_per_page():
    import pyarrow as pa

    buffer = written([[a_source()], [a_source(id="src_CCCCCCCCCCCCC")] * 2])
    parquet = pq.ParquetFile(buffer)
    assert parquet.metadata.num_rows == 3
    assert parquet.metadata.num_row_groups == 2
    schema = parquet.schema_arrow
    utc = pa.timestamp("us", tz="UTC")
    assert schema.field("id").type == pa.string()
    assert schema.field("start_at").type == utc and schema.field("end_at").type == utc
    assert schema.field("hectares").type == pa.float64()
    assert schema.field("conflict").type == pa.bool_()
    assert schema.field("conflict_with").type == pa.list_(pa.string())
    assert schema.field("outcome_reporting_year").type == pa.int64()
    assert schema.field("geometry").type == pa.binary()

    row = parquet.read().to_pylist()[0]
    assert row["start_at"] == datetime(2024, 11, 1, 16, 25, tzinfo=timezone.utc)
    assert row["updated_at"] == datetime(2024, 11, 2, 8, 0, 0, 123456, tzinfo=timezone.utc)
    assert row["conflict"] is True and row["conflict_with"] == ["src_BBBBBBBBBBBBB"]
    assert row["hectares"] == 41.14 and row["outcome_reporting_year"] == 2024
    assert row["centroid"] == [10.5, 50.5] and row["tags"] == ["a", "b"]
    assert row["steward_id"] is None and row["extra_fields"] is None
    assert shapely.from_wkb(row["geometry"]).equals(shapely.geometry.shape(SQUARE))


def test_geo_metadata_is_geoparquet_1_1_with_the_bounding_box_of_every_page():
    far = {"type": "Polygon", "coordinates": [[[-96, 32], [-96, 33], [-95, 33], [-96, 32]]]}
    metadata = geo_metadata(written([[a_source()], [a_source(geojson=far)]]))
    assert metadata["version"] == "1.1.0"
    assert metadata["primary_column"] == "geometry"
    column = metadata["columns"]["geometry"]
    assert column["encoding"] == "WKB"
    assert column["geometry_types"] == ["Polygon"]
    assert column["bbox"] == [-96.0, 32.0, 11.0, 51.0]
    assert "crs" not in column  # absent means OGC:CRS84 in GeoParquet


def test_unknown_fields_and_values_that_do_not_fit_are_kept_as_json():
    source = a_source(colour="green", nested={"k": [1, 2]}, hectares="lots", start_at="not a date")
    row = pq.read_table(written([[source]])).to_pylist()[0]
    assert row["hectares"] is None and row["start_at"] is None
    assert json.loads(row["extra_fields"]) == {
        "colour": "green",
        "nested": {"k": [1, 2]},
        "hectares": "lots",
        "start_at": "not a date",
    }


def test_a_source_without_geometry_has_a_null_geometry():
    buffer = written([[a_source(geojson=None), a_source(geojson={"type": "Nonsense"})]])
    rows = pq.read_table(buffer).to_pylist()
    assert [row["geometry"] for row in rows] == [None, None]
    assert json.loads(rows[1]["extra_fields"]) == {"geojson": {"type": "Nonsense"}}
    buffer.seek(0)
    metadata = geo_metadata(buffer)["columns"]["geometry"]
    assert metadata["geometry_types"] == [] and "bbox" not in metadata


def test_an_empty_listing_writes_a_valid_empty_file():
    buffer = written([])
    parquet = pq.ParquetFile(buffer)
    assert parquet.metadata.num_rows == 0
    assert parquet.schema_arrow.field("geometry")
    buffer.seek(0)
    assert geo_metadata(buffer)["columns"]["geometry"]["geometry_types"] == []


# Other readers


def test_geopandas_reads_the_geometry_and_crs_back(tmp_path):
    geopandas = pytest.importorskip("geopandas", reason="test-only dependency geopandas")
    target = tmp_path / "sources.parquet"
    target.write_bytes(written([[a_source()]]).getvalue())
    frame = geopandas.read_parquet(target)
    assert frame.crs == "OGC:CRS84"
    assert frame.geometry.iloc[0].equals(shapely.geometry.shape(SQUARE))
    assert frame["alt_id"].tolist() == ["FIELD-1"]


# The operator, against the emulator


def test_the_operator_writes_geoparquet_by_suffix(
    meti_connection, emulator, task_context, tmp_path
):
    geopandas = pytest.importorskip("geopandas", reason="test-only dependency geopandas")
    duckdb = pytest.importorskip("duckdb", reason="test-only dependency duckdb")
    emulator.ledger.seed(25)
    target = tmp_path / "out" / "sources.parquet"
    operator = MetiListSourcesOperator(task_id="l", output_path=str(target), page_size=10)
    assert operator.execute(task_context) == {"path": str(target), "count": 25}

    parquet = pq.ParquetFile(target)
    assert parquet.metadata.num_rows == 25 and parquet.metadata.num_row_groups == 3
    ids = set(parquet.read(columns=["id"]).column("id").to_pylist())
    assert ids == {source["id"] for source in emulator.ledger.all()}
    frame = geopandas.read_parquet(target)
    assert frame.crs == "OGC:CRS84" and set(frame.geom_type) == {"Polygon"}
    with duckdb.connect() as connection:
        rows = connection.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchall()
    assert rows == [(25,)]
    assert list(target.parent.iterdir()) == [target]  # no temporary file left behind


def test_the_geometry_round_trips_exactly(meti_connection, task_context, tmp_path):
    from airflow_provider_meti.hooks.meti import MetiHook

    MetiHook().create_sources({"type": "FeatureCollection", "features": [APITEST2]})
    target = tmp_path / "one.parquet"
    MetiListSourcesOperator(task_id="l", output_path=str(target)).execute(task_context)
    row = pq.read_table(target).to_pylist()[0]
    assert row["alt_id"] == APITEST2["id"]
    expected = shapely.geometry.shape(APITEST2["geometry"])
    assert shapely.from_wkb(row["geometry"]).equals_exact(expected, tolerance=0)


def test_output_format_overrides_the_suffix(meti_connection, emulator, task_context, tmp_path):
    emulator.ledger.seed(3)
    target = tmp_path / "sources.data"
    operator = MetiListSourcesOperator(
        task_id="l", output_path=str(target), output_format="parquet"
    )
    assert operator.execute(task_context)["count"] == 3
    assert pq.ParquetFile(target).metadata.num_rows == 3


@pytest.mark.parametrize("storage", ["memory", "s3"])
def test_geoparquet_to_object_storage(meti_connection, emulator, task_context, request, storage):
    from airflow_provider_meti._compat import ObjectStoragePath

    request.getfixturevalue(f"{storage}_storage")
    emulator.ledger.seed(12)
    url = f"{storage}://extracts/daily/sources.parquet"
    operator = MetiListSourcesOperator(task_id="l", output_path=url, page_size=5)
    assert operator.execute(task_context)["count"] == 12
    path = ObjectStoragePath(url)
    path.fs.invalidate_cache()
    with path.open("rb") as handle:
        parquet = pq.ParquetFile(io.BytesIO(handle.read()))
    assert parquet.metadata.num_rows == 12 and parquet.metadata.num_row_groups == 3
    assert [name.rsplit("/", 1)[-1] for name in path.fs.find(str(path.parent.path))] == [
        "sources.parquet"
    ]


@pytest.mark.parametrize("storage", ["local", "memory", "s3"])
def test_a_failed_geoparquet_extract_leaves_the_previous_file_untouched(
    meti_connection, emulator, task_context, request, tmp_path, storage
):
    from airflow_provider_meti._compat import ObjectStoragePath

    if storage == "local":
        url = (tmp_path / "sources.parquet").as_uri()
    else:
        request.getfixturevalue(f"{storage}_storage")
        url = f"{storage}://extracts/daily/sources.parquet"
    path = ObjectStoragePath(url)
    with path.open("wb") as handle:  # not write_bytes: it bypasses the test's filesystem
        handle.write(b"yesterday's extract")
    meti_connection(extra={"max_retries": 0})
    emulator.ledger.seed(30)
    emulator.set_faults(rate=1.0, kinds=["500"], methods=["GET"], skip=3)  # page 4 of 6 fails

    operator = MetiListSourcesOperator(task_id="l", output_path=url, page_size=5)
    with pytest.raises(MetiApiError, match="HTTP 500"):
        operator.execute(task_context)

    assert emulator.stats()["responses"]["200"] >= 3  # it did fail part-way
    path.fs.invalidate_cache()
    with path.open("rb") as handle:
        assert handle.read() == b"yesterday's extract"
    names = [name.rsplit("/", 1)[-1] for name in path.fs.find(str(path.parent.path))]
    assert names == ["sources.parquet"]  # and no temporary file is left


# Choosing the format


@pytest.mark.parametrize(
    ("path", "given", "chosen"),
    [
        ("a.parquet", None, "parquet"),
        ("s3://b/a.PARQUET", None, "parquet"),
        ("a.geojson", None, "geojson"),
        ("a.json", None, "geojson"),
        ("a.ndjson", None, "ndjson"),
        ("a.parquet", "ndjson", "ndjson"),
        ("a.ndjson", "parquet", "parquet"),
    ],
)
def test_the_format_comes_from_the_suffix_unless_given(path, given, chosen):
    assert resolve_output_format(path, given) == chosen


def test_an_unknown_output_format_is_refused_when_the_dag_is_parsed():
    with pytest.raises(MetiConfigError, match=r"'csv' is not one of ndjson, geojson, parquet"):
        MetiListSourcesOperator(task_id="l", output_path="a.csv", output_format="csv")


def test_a_templated_output_format_is_checked_once_rendered(
    meti_connection, emulator, task_context, tmp_path
):
    operator = MetiListSourcesOperator(
        task_id="l", output_path=str(tmp_path / "a.x"), output_format="{{ params.fmt }}"
    )
    operator.output_format = "xlsx"  # what the template rendered to
    with pytest.raises(MetiConfigError, match="'xlsx' is not one of"):
        operator.execute(task_context)
    assert emulator.stats()["requests"] == {}


def test_parquet_without_the_extra_fails_before_any_request(
    meti_connection, emulator, task_context, tmp_path, monkeypatch
):
    # As if pyarrow were not installed: importing it raises ImportError.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    monkeypatch.delitem(sys.modules, "airflow_provider_meti.outputs.parquet")
    monkeypatch.delitem(sys.modules, "airflow_provider_meti.outputs.source_columns")
    emulator.ledger.seed(3)
    operator = MetiListSourcesOperator(task_id="l", output_path=str(tmp_path / "a.parquet"))
    with pytest.raises(MetiConfigError, match=r"pip install 'airflow-provider-meti\[parquet\]'"):
        operator.execute(task_context)
    stats = emulator.stats()
    assert stats["requests"] == {} and stats["token_requests"] == 0
    assert not (tmp_path / "a.parquet").exists()
