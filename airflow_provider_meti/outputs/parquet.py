"""Sources as GeoParquet 1.1, streamed: one row group per page, the ``geo`` metadata at the end.

Needs the ``airflow-provider-meti[parquet]`` extra (pyarrow and shapely); importing this
module without it raises ImportError, which ``formats.require_writer`` turns into a hint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from airflow_provider_meti.outputs.source_columns import GEOMETRY_COLUMN, SOURCE_SCHEMA, page_table

GEOPARQUET_VERSION = "1.1.0"


class GeometryStats:
    """The bounding box and geometry types of everything written so far."""

    def __init__(self) -> None:
        self.bbox = [math.inf, math.inf, -math.inf, -math.inf]
        self.types: set[str] = set()

    def add(self, geometries: list[Any]) -> None:
        """Widen the box and the type set by one page's geometries (None entries skipped)."""
        present = [geometry for geometry in geometries if geometry is not None]
        if not present:
            return
        west, south, east, north = shapely.total_bounds(present).tolist()
        if not math.isnan(west):  # all geometries empty: nothing to widen by
            self.bbox = [
                min(self.bbox[0], west),
                min(self.bbox[1], south),
                max(self.bbox[2], east),
                max(self.bbox[3], north),
            ]
        for geometry in present:
            self.types.add(geometry.geom_type + (" Z" if geometry.has_z else ""))

    def geo_metadata(self) -> dict[str, Any]:
        """The GeoParquet ``geo`` file metadata for the geometries seen."""
        column: dict[str, Any] = {
            "encoding": "WKB",
            "geometry_types": sorted(self.types),
            # No "crs": GeoParquet reads its absence as OGC:CRS84 (lon/lat on WGS84), which
            # is what GeoJSON and so METI's polygons are.
        }
        if math.isfinite(self.bbox[0]):
            column["bbox"] = self.bbox
        return {
            "version": GEOPARQUET_VERSION,
            "primary_column": GEOMETRY_COLUMN,
            "columns": {GEOMETRY_COLUMN: column},
        }


def write_geoparquet(handle: IO[bytes], pages: Iterable[Sequence[dict[str, Any]]]) -> int:
    """Write sources as GeoParquet 1.1, one row group per page; return how many were written.

    Memory holds one page at a time. The ``geo`` metadata (with the bounding box of all
    pages) is only known at the end, so it goes into the footer when the writer closes.

    :param handle: a binary file open for writing; left open
    :param pages: lists of sources
    """
    stats = GeometryStats()
    count = 0
    # store_schema=False: pyarrow would otherwise serialise the Arrow schema (and with it its
    # metadata, still without "geo") when the file opens, and readers take that copy, not the
    # footer's key-value "geo" added at close. The Parquet types read back the same
    # (timestamps as UTC, lists as lists).
    writer = pq.ParquetWriter(handle, SOURCE_SCHEMA, store_schema=False, compression="zstd")
    try:
        for page in pages:
            if not page:
                continue
            table, geometries = page_table(page)
            writer.write_table(table, row_group_size=len(page))
            stats.add(geometries)
            count += len(page)
            del page, table, geometries  # one page in memory, not two
            # Arrow's allocator keeps what a page freed for its own reuse, while the next
            # page's Python objects and GEOS geometries come from other allocators: without
            # handing it back, the peak grew by about 7 MiB from 1,000 to 100,000 sources.
            pa.default_memory_pool().release_unused()
        writer.add_key_value_metadata({"geo": json.dumps(stats.geo_metadata())})
    finally:
        writer.close()  # closes the Parquet stream, not ``handle``
    return count
