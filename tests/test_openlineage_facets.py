"""OpenLineage: the datasets the METI operators report, and Airflow's view of a meti:// asset.

Each operator runs for real against the emulator first; the facets describe what it did.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip(
    "airflow.providers.openlineage",
    reason="needs apache-airflow-providers-openlineage (pip install 'airflow-provider-meti"
    "[openlineage]'; the dev extra installs it)",
)

from airflow.providers.common.compat.openlineage.facet import LifecycleStateChange

from airflow_provider_meti._compat import asset
from airflow_provider_meti.assets import meti_sources_uri
from airflow_provider_meti.openlineage import FEATURE_PROPERTIES, extract_file_id
from airflow_provider_meti.operators.meti import (
    MetiCreateSourcesOperator,
    MetiDeleteSourceOperator,
    MetiListSourcesOperator,
)
from tests.api_versions import v2_only
from tests.features import collection, square_feature


def meti_namespace(emulator) -> str:
    return "meti://" + emulator.url.split("://", 1)[1].rstrip("/")


def only(datasets: list) -> object:
    assert len(datasets) == 1, datasets
    return datasets[0]


def row_count(dataset) -> int:
    return dataset.outputFacets["outputStatistics"].rowCount


def schema_names(dataset) -> list[str]:
    return [field.name for field in dataset.facets["schema"].fields]


# Create


def test_create_reports_meti_as_the_output_with_the_number_registered(
    meti_connection, emulator, task_context
):
    operator = MetiCreateSourcesOperator(
        task_id="register",
        feature_collection=collection(*(square_feature(f"F-{i}", x=i) for i in range(3))),
    )
    operator.execute(task_context)

    lineage = operator.get_openlineage_facets_on_complete(task_context["ti"])

    assert lineage.inputs == []
    output = only(lineage.outputs)
    assert (output.namespace, output.name) == (meti_namespace(emulator), "sources")
    assert row_count(output) == 3 == emulator.ledger.count()


def test_an_operator_that_did_not_run_reports_nothing():
    assert (
        MetiCreateSourcesOperator(
            task_id="c", feature_collection={}
        ).get_openlineage_facets_on_complete(None)
        is None
    )
    assert MetiListSourcesOperator(task_id="l").get_openlineage_facets_on_complete(None) is None
    assert (
        MetiDeleteSourceOperator(task_id="d", source_id="src_x").get_openlineage_facets_on_complete(
            None
        )
        is None
    )


# Extracts


def test_a_geoparquet_extract_reports_its_file_rows_and_columns(
    meti_connection, emulator, task_context, tmp_path
):
    pytest.importorskip("pyarrow", reason="GeoParquet needs the [parquet] extra")
    from airflow_provider_meti.outputs.source_columns import SOURCE_SCHEMA

    emulator.ledger.seed(7)
    target = tmp_path / "extracts" / "meti_sources.parquet"
    operator = MetiListSourcesOperator(task_id="extract", output_path=str(target), page_size=3)
    operator.execute(task_context)

    lineage = operator.get_openlineage_facets_on_complete(task_context["ti"])

    source = only(lineage.inputs)
    assert (source.namespace, source.name) == (meti_namespace(emulator), "sources")
    output = only(lineage.outputs)
    assert (output.namespace, output.name) == ("file", str(target))
    assert row_count(output) == 7
    assert schema_names(output) == SOURCE_SCHEMA.names
    fields = {field.name: field for field in output.facets["schema"].fields}
    assert fields["hectares"].type == "double"
    assert fields["start_at"].type == "timestamp[us, tz=UTC]"
    assert "WKB" in fields["geometry"].description


def test_an_ndjson_extract_reports_the_fields_of_a_feature(
    meti_connection, emulator, task_context, tmp_path
):
    emulator.ledger.seed(4)
    target = tmp_path / "sources.ndjson"
    operator = MetiListSourcesOperator(task_id="extract", output_path=target.as_uri())
    operator.execute(task_context)

    output = only(operator.get_openlineage_facets_on_complete(None).outputs)

    assert (output.namespace, output.name) == ("file", str(target))
    assert row_count(output) == 4
    assert schema_names(output) == ["type", "id", "geometry", "properties"]
    properties = output.facets["schema"].fields[-1]
    names = [field.name for field in properties.fields]
    assert "alt_id" in names and "hectares" in names and "geojson" not in names


def test_the_feature_properties_are_the_geoparquet_columns():
    pytest.importorskip("pyarrow", reason="the columns need the [parquet] extra")
    from airflow_provider_meti.outputs.source_columns import (
        EXTRA_COLUMN,
        GEOMETRY_COLUMN,
        SOURCE_SCHEMA,
    )

    columns = [name for name in SOURCE_SCHEMA.names if name not in ("id", EXTRA_COLUMN)]
    assert [name for name, _ in FEATURE_PROPERTIES] + [GEOMETRY_COLUMN] == columns


def test_an_extract_to_object_storage_names_the_bucket_and_key(
    meti_connection, emulator, task_context, memory_storage
):
    emulator.ledger.seed(5)
    operator = MetiListSourcesOperator(
        task_id="extract", output_path="memory://extracts/daily/sources.geojson", page_size=2
    )
    operator.execute(task_context)

    output = only(operator.get_openlineage_facets_on_complete(None).outputs)

    assert (output.namespace, output.name) == ("memory://extracts", "daily/sources.geojson")
    assert row_count(output) == 5


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://aws_default@my-bucket/meti/d.parquet", ("s3://my-bucket", "meti/d.parquet")),
        ("s3://my-bucket/meti/d.ndjson", ("s3://my-bucket", "meti/d.ndjson")),
        ("file:///data/x.parquet", ("file", "/data/x.parquet")),
        ("/data/x.parquet", ("file", "/data/x.parquet")),
    ],
)
def test_extract_file_names_follow_the_apache_providers(url, expected):
    from airflow_provider_meti._compat import ObjectStoragePath

    assert extract_file_id(url) == expected
    assert extract_file_id(ObjectStoragePath(url)) == expected


def test_an_extract_to_xcom_reports_only_its_input(meti_connection, emulator, task_context):
    emulator.ledger.seed(2)
    operator = MetiListSourcesOperator(task_id="extract")
    assert len(operator.execute(task_context)) == 2

    lineage = operator.get_openlineage_facets_on_complete(None)

    assert only(lineage.inputs).name == "sources"
    assert lineage.outputs == []


# Deletes


def test_a_delete_reports_the_source_dropped(meti_connection, emulator, task_context):
    emulator.ledger.seed(2)
    doomed, kept = (source["id"] for source in emulator.ledger.all())
    operator = MetiDeleteSourceOperator(task_id="delete", source_id=doomed)
    operator.execute(task_context)

    output = only(operator.get_openlineage_facets_on_complete(None).outputs)

    assert (output.namespace, output.name) == (meti_namespace(emulator), f"sources/{doomed}")
    change = output.facets["lifecycleStateChange"]
    assert change.lifecycleStateChange == LifecycleStateChange.DROP
    assert [source["id"] for source in emulator.ledger.all()] == [kept]


@v2_only
def test_a_delete_by_alt_id_names_the_alt_id(meti_connection, emulator, task_context):
    emulator.ledger.create(collection(square_feature("FIELD 9/a")))
    operator = MetiDeleteSourceOperator(task_id="delete", alt_id="FIELD 9/a")
    operator.execute(task_context)

    output = only(operator.get_openlineage_facets_on_complete(None).outputs)

    assert output.name == "sources?alt_id=FIELD%209%2Fa"
    assert output.facets["lifecycleStateChange"].lifecycleStateChange.value == "DROP"
    assert emulator.ledger.count() == 0


# Through Airflow's OpenLineage provider


def test_the_openlineage_provider_uses_the_operators_facets(
    meti_connection, emulator, task_context, tmp_path
):
    from airflow.providers.openlineage.extractors.manager import ExtractorManager
    from airflow.utils.state import TaskInstanceState

    emulator.ledger.seed(3)
    target = tmp_path / "sources.ndjson"
    operator = MetiListSourcesOperator(task_id="extract", output_path=str(target))
    operator.execute(task_context)

    lineage = ExtractorManager().extract_metadata(
        dagrun=SimpleNamespace(run_id="manual__1"),
        task=operator,
        task_instance_state=TaskInstanceState.SUCCESS,
        task_instance=task_context["ti"],
    )

    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        (meti_namespace(emulator), "sources")
    ]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", str(target))]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("meti://API.Meti.Millpont.com/sources", ("meti://api.meti.millpont.com", "sources")),
        ("meti://gateway:8443/meti/api/sources", ("meti://gateway:8443", "meti/api/sources")),
    ],
)
def test_airflow_translates_a_meti_asset_with_the_providers_converter(uri, expected):
    from airflow.providers.openlineage.utils.utils import translate_airflow_asset

    dataset = translate_airflow_asset(asset(uri), lineage_context=None)

    assert dataset is not None, "the provider's asset-uris converter was not used"
    assert (dataset.namespace, dataset.name) == expected


def test_operators_and_assets_name_meti_alike(meti_connection, emulator, task_context):
    from airflow.providers.openlineage.utils.utils import translate_airflow_asset

    operator = MetiCreateSourcesOperator(
        task_id="register", feature_collection=collection(square_feature("F-1"))
    )
    operator.execute(task_context)
    reported = only(operator.get_openlineage_facets_on_complete(None).outputs)

    translated = translate_airflow_asset(asset(meti_sources_uri(emulator.url)), None)

    assert (translated.namespace, translated.name) == (reported.namespace, reported.name)


def test_parsing_the_operators_imports_no_openlineage():
    # Airflow's provider discovery loads every provider's get_provider_info: that is not ours.
    discovery = {"airflow.providers.openlineage", "airflow.providers.openlineage.get_provider_info"}
    code = (
        "import sys\n"
        "import airflow_provider_meti.operators.meti\n"
        f"discovery = {sorted(discovery)!r}\n"
        "loaded = sorted(m for m in sys.modules if 'openlineage' in m and m not in discovery)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_facets_carry_the_v2_fields_with_their_types():
    pytest.importorskip("pyarrow", reason="the columns need the [parquet] extra")
    from airflow_provider_meti.openlineage import extract_schema

    columns = {field.name: field.type for field in extract_schema("parquet")}
    assert columns["outcome_reporting_year"] == "int64"
    assert columns["wdpaid"] == columns["source_type"] == columns["pa_name"] == "string"
    assert columns["attribute_type"] == "list<item: string>"
    assert columns["unep_overlap"] == "bool" and columns["percent_overlap"] == "double"
    properties = {field.name: field.type for field in extract_schema("ndjson")[-1].fields}
    assert properties["attribute_type"] == "array<string>"
    assert properties["outcome_reporting_year"] == "integer"
    assert properties["geometry_source"] == properties["wdpaid"] == "string"
    assert properties["unep_overlap"] == "boolean"
