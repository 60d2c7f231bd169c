"""OpenLineage facets of the METI operators: what a create, an extract or a delete touched.

Needs ``apache-airflow-providers-openlineage`` (the ``airflow-provider-meti[openlineage]``
extra). The operators import this module inside ``get_openlineage_facets_on_complete`` only,
which Airflow's OpenLineage provider calls after a task succeeded: parsing a DAG file never
imports OpenLineage.

Dataset names:

- METI's sources: namespace ``meti://<host>[:<port>]``, name ``[<path prefix>/]sources``,
  exactly what the ``meti://`` asset converter (``assets``) gives for the same base URL. A
  deleted source: name ``sources/<source id>``, or ``sources?alt_id=<alt id>`` when deleted
  by ``alt_id`` (the ids are not known then).
- An extract file: a local file is namespace ``file`` and its absolute path (what the
  ``file://`` asset converter of ``apache-airflow-providers-common-io`` gives); object storage
  is ``<scheme>://<bucket>`` and the key, as Airflow 3.1+'s ``ObjectStoragePath.namespace``
  and ``key`` name it (what ``FileTransferOperator`` reports), without the connection id of
  ``s3://conn@bucket/...``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote, urlsplit

from airflow.providers.common.compat.openlineage.facet import (
    InputDataset,
    LifecycleStateChange,
    LifecycleStateChangeDatasetFacet,
    OutputDataset,
    OutputStatisticsOutputDatasetFacet,
    SchemaDatasetFacet,
    SchemaDatasetFacetFields,
)
from airflow.providers.openlineage.extractors import OperatorLineage

from airflow_provider_meti._compat import ObjectStoragePath
from airflow_provider_meti.assets import convert_asset_to_openlineage, create_asset
from airflow_provider_meti.outputs.files import local_path

# The source fields of a GeoJSON Feature's properties, beside its ``id`` and ``geometry``:
# the fields METI's ledger documents (the typed columns of a GeoParquet extract, in their
# order). Sources may carry more; a schema facet lists what is known. The types are those of
# the GeoParquet columns; NDJSON keeps each value as it came (wdpaid may be a JSON number there).
FEATURE_PROPERTIES = (
    ("alt_id", "string"),
    ("start_at", "string"),
    ("end_at", "string"),
    ("hectares", "double"),
    ("country", "string"),
    ("centroid", "array<double>"),
    ("conflict", "boolean"),
    ("conflict_with", "array<string>"),
    ("percent_overlap", "double"),
    ("unep_overlap", "boolean"),
    ("pa_name", "string"),
    ("pa_designation", "string"),
    ("wdpaid", "string"),
    ("methodology", "string"),
    ("source_type", "string"),
    ("attribute_type", "array<string>"),
    ("geometry_source", "string"),
    ("steward_id", "string"),
    ("project_id", "string"),
    ("outcome_reporting_year", "integer"),
    ("tags", "array<string>"),
    ("created_at", "string"),
    ("updated_at", "string"),
)
GEOMETRY_DESCRIPTION = (
    "the source's Polygon or MultiPolygon as ISO WKB (GeoParquet 1.1, CRS OGC:CRS84)"
)


def meti_dataset_id(base_url: str) -> tuple[str, str]:
    """Namespace and name of METI's sources behind ``base_url`` (as the asset converter says).

    :param base_url: the METI API base URL
    """
    dataset = convert_asset_to_openlineage(create_asset(base_url=base_url), None)
    return dataset.namespace, dataset.name


def extract_file_id(output_path: str | os.PathLike[str] | ObjectStoragePath) -> tuple[str, str]:
    """Namespace and name of an extract's file: local, ``file://`` or object storage.

    :param output_path: the (rendered) ``output_path`` the extract was written to
    """
    local = local_path(output_path)
    if local is not None:
        return "file", local.as_posix()
    if isinstance(output_path, ObjectStoragePath):
        scheme, bucket, key = output_path.protocol, output_path.bucket, output_path.key
    else:  # from the URL itself: Airflow 2.11 and 3.0 make no bucket of memory://bucket/key
        parts = urlsplit(os.fspath(output_path))
        scheme, bucket, key = parts.scheme, parts.netloc, parts.path
    bucket = bucket.rpartition("@")[2]  # no connection id (before 3.1 it stays in the bucket)
    return (f"{scheme}://{bucket}" if bucket else scheme), key.lstrip("/")


def created_lineage(base_url: str, created: int) -> OperatorLineage:
    """METI's sources as the output of a create, with the number of sources registered.

    :param base_url: the METI API base URL
    :param created: how many sources the task registered (or found from an earlier try)
    """
    namespace, name = meti_dataset_id(base_url)
    return OperatorLineage(
        outputs=[OutputDataset(namespace=namespace, name=name, outputFacets=_row_count(created))]
    )


def extract_lineage(
    base_url: str,
    *,
    row_count: int,
    output_path: str | os.PathLike[str] | ObjectStoragePath | None = None,
    output_format: str | None = None,
) -> OperatorLineage:
    """METI's sources as the input of an extract; its file (if any) as the output.

    The file carries the row count and the schema of ``output_format``. Sources returned
    through XCom are no dataset: the lineage then has the input only.

    :param base_url: the METI API base URL
    :param row_count: how many sources were extracted
    :param output_path: where they were written, or None for XCom
    :param output_format: ``ndjson``, ``geojson`` or ``parquet``
    """
    namespace, name = meti_dataset_id(base_url)
    inputs = [InputDataset(namespace=namespace, name=name)]
    if output_path is None:
        return OperatorLineage(inputs=inputs)
    file_namespace, file_name = extract_file_id(output_path)
    output = OutputDataset(
        namespace=file_namespace,
        name=file_name,
        facets={"schema": SchemaDatasetFacet(fields=extract_schema(output_format or "ndjson"))},
        outputFacets=_row_count(row_count),
    )
    return OperatorLineage(inputs=inputs, outputs=[output])


def deleted_lineage(
    base_url: str, *, source_id: str | None = None, alt_id: str | None = None
) -> OperatorLineage:
    """The deleted source as an output with a lifecycle state change ``DROP``.

    :param base_url: the METI API base URL
    :param source_id: the METI id deleted, or None when deleted by ``alt_id``
    :param alt_id: the ``alt_id`` whose sources were deleted
    """
    namespace, sources = meti_dataset_id(base_url)
    if source_id is not None:
        name = f"{sources}/{quote(source_id, safe='')}"
    else:
        name = f"{sources}?alt_id={quote(alt_id or '', safe='')}"
    drop = LifecycleStateChangeDatasetFacet(lifecycleStateChange=LifecycleStateChange.DROP)
    return OperatorLineage(
        outputs=[
            OutputDataset(namespace=namespace, name=name, facets={"lifecycleStateChange": drop})
        ]
    )


def extract_schema(output_format: str) -> list[Any]:
    """The fields of an extract in ``output_format``: columns, or a GeoJSON Feature's fields.

    :param output_format: ``ndjson``, ``geojson`` or ``parquet``
    """
    if output_format == "parquet":
        return _parquet_columns()
    properties = [
        SchemaDatasetFacetFields(name=name, type=kind) for name, kind in FEATURE_PROPERTIES
    ]
    return [
        SchemaDatasetFacetFields(name="type", type="string", description='always "Feature"'),
        SchemaDatasetFacetFields(name="id", type="string", description="the METI source id"),
        SchemaDatasetFacetFields(
            name="geometry",
            type="struct",
            description="the source's Polygon or MultiPolygon (GeoJSON)",
        ),
        SchemaDatasetFacetFields(
            name="properties",
            type="struct",
            description="the source's other fields, unknown ones included",
            fields=properties,
        ),
    ]


def _parquet_columns() -> list[Any]:
    # Imported here: pyarrow (the [parquet] extra) is only there when parquet was written.
    from airflow_provider_meti.outputs.source_columns import GEOMETRY_COLUMN, SOURCE_SCHEMA

    return [
        SchemaDatasetFacetFields(
            name=column.name,
            type=str(column.type),
            description=GEOMETRY_DESCRIPTION if column.name == GEOMETRY_COLUMN else None,
        )
        for column in SOURCE_SCHEMA
    ]


def _row_count(rows: int) -> dict[str, Any]:
    return {"outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=rows)}
