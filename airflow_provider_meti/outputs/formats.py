"""Which format an extract is written in, and writing it there.

``ndjson`` (one GeoJSON Feature per line), ``geojson`` (one FeatureCollection) or ``parquet``
(GeoParquet 1.1, needs the ``airflow-provider-meti[parquet]`` extra). When no format is given
the file name's suffix chooses, so existing ``.ndjson``/``.geojson`` paths keep their format.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from airflow_provider_meti._compat import ObjectStoragePath
from airflow_provider_meti.exceptions import MetiConfigError
from airflow_provider_meti.outputs.features import (
    FEATURE_COLLECTION_EXTENSIONS,
    write_feature_bytes,
)
from airflow_provider_meti.outputs.files import open_output, suffix

OUTPUT_FORMATS = ("ndjson", "geojson", "parquet")
PARQUET_EXTENSIONS = (".parquet", ".geoparquet")
PARQUET_EXTRA = "airflow-provider-meti[parquet]"

OutputPath = str | os.PathLike[str] | ObjectStoragePath


def check_output_format(output_format: str | None) -> None:
    """Refuse a format that is not one of ``OUTPUT_FORMATS`` (None means "from the suffix").

    :param output_format: the format asked for
    """
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise MetiConfigError(
            f"output_format {output_format!r} is not one of {', '.join(OUTPUT_FORMATS)} "
            "(or None, to choose by the output_path suffix)."
        )


def resolve_output_format(output_path: OutputPath, output_format: str | None = None) -> str:
    """The format to write: ``output_format`` if given, else the one the suffix names.

    :param output_path: where the extract goes
    :param output_format: ``ndjson``, ``geojson``, ``parquet`` or None
    """
    check_output_format(output_format)
    if output_format is not None:
        return output_format
    extension = suffix(output_path).lower()
    if extension in PARQUET_EXTENSIONS:
        return "parquet"
    if extension in FEATURE_COLLECTION_EXTENSIONS:
        return "geojson"
    return "ndjson"


def require_writer(output_format: str) -> None:
    """Fail with a hint naming the extra when ``output_format``'s libraries are missing.

    Called before the first request, so a missing install costs no API call.

    :param output_format: a resolved format
    """
    if output_format != "parquet":
        return
    try:
        import airflow_provider_meti.outputs.parquet  # noqa: F401  (pyarrow and shapely)
    except ImportError as error:
        raise MetiConfigError(
            f"output_format 'parquet' needs pyarrow and shapely ({error}). Install them "
            f"with: pip install '{PARQUET_EXTRA}'"
        ) from error


def write_extract(
    output_path: OutputPath, pages: Iterable[Sequence[dict[str, Any]]], output_format: str
) -> tuple[str, int]:
    """Stream ``pages`` of sources to ``output_path``; return the path written and the count.

    :param output_path: local path, ``file://`` URL or ``ObjectStoragePath`` (URL)
    :param pages: lists of sources; for NDJSON and GeoJSON also ``raw_pages.RawPage``
    :param output_format: a resolved format (see ``resolve_output_format``)
    """
    if output_format == "parquet":
        from airflow_provider_meti.outputs.parquet import write_geoparquet

        with open_output(output_path, binary=True) as (handle, shown_path):
            count = write_geoparquet(handle, pages)
        return shown_path, count
    with open_output(output_path, binary=True) as (handle, shown_path):
        count = write_feature_bytes(handle, pages, as_collection=output_format == "geojson")
    return shown_path, count
