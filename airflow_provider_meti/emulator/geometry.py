"""The ledger's geometry steps, with GEOS (shapely) doing what PostGIS does with GEOS.

- the conflict test's ``ST_Buffer(NEW.geometry::geography, -9)::geometry``: PostGIS projects
  the geography into the frame ``_ST_BestSRID`` picks, buffers there, and projects back to
  lon/lat; ``shrunk_for_conflicts`` does the same in a frame modelled on that choice;
- ``ST_Intersects`` is then planar in lon/lat (a field whose longitudes jump from 179 to -179
  is a 360°-wide band there, as in METI);
- ``percent_overlap`` compares areas in EPSG:6933, Lambert's cylindrical equal-area
  projection of WGS84 (``equal_area``);
- ``ST_Centroid`` is the planar centroid in lon/lat.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_meti.emulator.decisions import (
    CONFLICT_INSET_M,
    POLAR_LATITUDE,
    UTM_ZONE_WIDTH,
)
from airflow_provider_meti.emulator.dependencies import missing_extra

try:
    import numpy as np
    import shapely
    from numpy.typing import NDArray
    from shapely.geometry.base import BaseGeometry
except ImportError as error:  # pragma: no cover - only without the [emulator] extra
    raise missing_extra(error) from error

WGS84_A = 6_378_137.0
WGS84_F = 1 / 298.257223563
_E2 = WGS84_F * (2 - WGS84_F)
_E = math.sqrt(_E2)
UTM_K0 = 0.9996
BUFFER_QUAD_SEGMENTS = 8
"""ST_Buffer's default ``quad_segs``."""

BBox = tuple[float, float, float, float]
"""(min_x, min_y, max_x, max_y)"""
Coordinates = NDArray[np.float64]


def boxes_overlap(a: BBox, b: BBox) -> bool:
    """True when two closed boxes share at least a point."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def centroid(geometry: BaseGeometry) -> tuple[float, float]:
    """``ST_Centroid``: the area-weighted centroid in the lon/lat plane."""
    point = geometry.centroid
    return (float(point.x), float(point.y))


# --- authalic latitude (shared by EPSG:6933 and the polar frames) ---------------------------


def _q(lat_degrees: Coordinates) -> Coordinates:
    s = np.sin(np.radians(lat_degrees))
    return (1 - _E2) * (s / (1 - _E2 * s * s) - np.log((1 - _E * s) / (1 + _E * s)) / (2 * _E))


_QP = float(_q(np.array([90.0]))[0])
_E4, _E6 = _E2 * _E2, _E2 * _E2 * _E2
_C2 = _E2 / 3 + 31 * _E4 / 180 + 517 * _E6 / 5040
_C4 = 23 * _E4 / 360 + 251 * _E6 / 3780
_C6 = 761 * _E6 / 45360


def _latitude_of_q(q: Coordinates) -> Coordinates:
    beta = np.arcsin(np.clip(q / _QP, -1.0, 1.0))
    return np.degrees(
        beta + _C2 * np.sin(2 * beta) + _C4 * np.sin(4 * beta) + _C6 * np.sin(6 * beta)
    )


def equal_area(geometry: BaseGeometry) -> BaseGeometry:
    """The geometry in EPSG:6933 up to constant scale factors (which cancel in area ratios)."""

    def project(xy: Coordinates) -> Coordinates:
        return np.column_stack((xy[:, 0], _q(xy[:, 1])))

    return shapely.transform(geometry, project)


# --- the -9 m buffer ------------------------------------------------------------------------


@dataclass(frozen=True)
class BufferFrame:
    """A metric frame for one geometry, with the inset to use there."""

    forward: Callable[[Coordinates], Coordinates]
    inverse: Callable[[Coordinates], Coordinates]
    inset: float


def shrunk_for_conflicts(geometry: BaseGeometry, inset: float = CONFLICT_INSET_M) -> BaseGeometry:
    """``ST_Buffer(geometry::geography, -inset)::geometry``: in lon/lat, maybe empty."""
    frame = buffer_frame(geometry, inset)
    projected = shapely.transform(geometry, frame.forward)
    shrunk = shapely.buffer(projected, -frame.inset, quad_segs=BUFFER_QUAD_SEGMENTS)
    return shapely.transform(shrunk, frame.inverse)


def buffer_frame(geometry: BaseGeometry, inset: float = CONFLICT_INSET_M) -> BufferFrame:
    """The frame ``_ST_BestSRID`` would choose, as the emulator models it.

    Beyond ±70° (centre of the geodetic box, wholly in one hemisphere): PostGIS's polar
    Lambert azimuthal equal-area frames, exactly, so the buffer's ground distance depends on
    direction as in METI. Elsewhere: a local frame at the centre, whose inset is 9 m divided
    by the UTM scale factor there (PostGIS buffers 9 m in UTM, where a metre of map is 1/k of
    ground) when the geometry fits a UTM zone's width.
    """
    xy = shapely.get_coordinates(geometry)
    reference = xy[0, 0]
    lons = reference + _wrap(xy[:, 0] - reference)  # geodetic: the short way across 180°
    lon0 = float(_wrap(np.array([(lons.min() + lons.max()) / 2]))[0])
    lat_min, lat_max = float(xy[:, 1].min()), float(xy[:, 1].max())
    lat0 = (lat_min + lat_max) / 2
    if lat0 > POLAR_LATITUDE and lat_min > 0:
        return _polar_frame(north=True, inset=inset)
    if lat0 < -POLAR_LATITUDE and lat_max < 0:
        return _polar_frame(north=False, inset=inset)
    scale = 1.0
    if lons.max() - lons.min() < UTM_ZONE_WIDTH:
        scale = _utm_scale(lon0, lat0)
    return _local_frame(lon0, lat0, inset / scale)


def _wrap(delta: Coordinates) -> Coordinates:
    return (delta + 180.0) % 360.0 - 180.0


def _utm_scale(lon: float, lat: float) -> float:
    zone = min(59, math.floor((lon + 180.0) / 6.0))
    central = -177.0 + 6.0 * zone
    b = math.cos(math.radians(lat)) * math.sin(math.radians(lon - central))
    return UTM_K0 / math.sqrt(1 - b * b)


def _local_frame(lon0: float, lat0: float, inset: float) -> BufferFrame:
    s = math.sin(math.radians(lat0))
    w = math.sqrt(1 - _E2 * s * s)
    per_lon = WGS84_A / w * math.cos(math.radians(lat0)) * math.pi / 180
    per_lat = WGS84_A * (1 - _E2) / w**3 * math.pi / 180

    def forward(xy: Coordinates) -> Coordinates:
        return np.column_stack((_wrap(xy[:, 0] - lon0) * per_lon, (xy[:, 1] - lat0) * per_lat))

    def inverse(xy: Coordinates) -> Coordinates:
        return np.column_stack((_wrap(lon0 + xy[:, 0] / per_lon), lat0 + xy[:, 1] / per_lat))

    return BufferFrame(forward, inverse, inset)


def _polar_frame(*, north: bool, inset: float) -> BufferFrame:
    # EPSG:3574 (+proj=laea +lat_0=90 +lon_0=-40) and EPSG:3409 (+lat_0=-90 +lon_0=0).
    lon0 = -40.0 if north else 0.0
    sign = 1.0 if north else -1.0

    def forward(xy: Coordinates) -> Coordinates:
        rho = WGS84_A * np.sqrt(np.maximum(_QP - sign * _q(xy[:, 1]), 0.0))
        angle = np.radians(xy[:, 0] - lon0)
        return np.column_stack((rho * np.sin(angle), -sign * rho * np.cos(angle)))

    def inverse(xy: Coordinates) -> Coordinates:
        rho = np.hypot(xy[:, 0], xy[:, 1])
        q = sign * (_QP - (rho / WGS84_A) ** 2)
        lon = lon0 + np.degrees(np.arctan2(xy[:, 0], -sign * xy[:, 1]))
        return np.column_stack((_wrap(lon), _latitude_of_q(q)))

    return BufferFrame(forward, inverse, inset)
