"""Country boundaries for the emulator's ledger: the country of a source, from its centroid.

The ledger sets ``country`` to the ``name`` of the first row of its ``countries`` table whose
boundary contains the centroid (``ST_Contains``), and only finds conflicts within one
country; a centroid in no boundary gives NULL, which never equals anything, so such a
source never conflicts. METI's table is not published; users can load their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_meti.emulator.dependencies import missing_extra

try:
    import shapely
    from shapely.geometry import Point, shape
    from shapely.geometry.base import BaseGeometry
except ImportError as error:  # pragma: no cover - only without the [emulator] extra
    raise missing_extra(error) from error

NAME_PROPERTIES = ("name", "NAME", "ADMIN", "iso_a3", "ISO_A3", "iso", "ISO")
"""Tried in order for a boundary's name when ``name_property`` is not given."""


@dataclass(frozen=True)
class CountryBoundaries:
    """Named boundaries, searched in file order (the ledger's ``LIMIT 1``)."""

    boundaries: tuple[tuple[str, BaseGeometry], ...]

    @classmethod
    def load(
        cls, source: str | Path | Mapping[str, Any], *, name_property: str | None = None
    ) -> CountryBoundaries:
        """Boundaries from a GeoJSON FeatureCollection of (Multi)Polygons, or a file of one.

        :param source: the FeatureCollection, or the path of a ``.geojson`` file
        :param name_property: the property holding the country's name or ISO code (default:
            the first of ``NAME_PROPERTIES`` present)
        :raises ValueError: not a FeatureCollection, or a feature without a name or polygon
        """
        if isinstance(source, (str, Path)):
            source = json.loads(Path(source).read_text(encoding="utf-8"))
        if not isinstance(source, Mapping) or not isinstance(source.get("features"), list):
            raise ValueError("country boundaries must be a GeoJSON FeatureCollection")
        boundaries = []
        for index, feature in enumerate(source["features"]):
            properties = feature.get("properties") or {}
            keys: Sequence[str] = (name_property,) if name_property else NAME_PROPERTIES
            name = next((properties[key] for key in keys if properties.get(key)), None)
            if name is None:
                raise ValueError(f"country boundary {index} has no {' or '.join(keys)} property")
            geometry = shape(feature.get("geometry") or {})
            if geometry.geom_type not in ("Polygon", "MultiPolygon"):
                raise ValueError(f"country boundary {index} ({name}) is not a (Multi)Polygon")
            shapely.prepare(geometry)
            boundaries.append((str(name), geometry))
        return cls(tuple(boundaries))

    def country_of(self, lon: float, lat: float) -> str | None:
        """The first boundary containing the point, or None."""
        point = Point(lon, lat)
        for name, geometry in self.boundaries:
            if geometry.contains(point):
                return name
        return None
