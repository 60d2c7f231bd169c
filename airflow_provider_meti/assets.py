"""The ``meti://`` asset URI scheme: METI's sources as an Airflow Asset and OpenLineage dataset.

``meti://<host>[:<port>][/<path prefix>]/sources`` names the sources an account sees at one
METI API base URL: ``meti://api.meti.millpont.com/sources`` for the public v1 API. Airflow
finds the three functions below through ``asset-uris`` in ``get_provider_info()``:
``sanitize_uri`` normalises every ``meti://`` URI an Asset is made with, ``create_asset`` is
the factory the hook lineage collector calls, and ``convert_asset_to_openlineage`` turns the
Asset into an OpenLineage dataset (namespace ``meti://<host>``, name ``sources``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from airflow_provider_meti._compat import Asset

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset as OpenLineageDataset

SCHEME = "meti"
SOURCES_PATH = "sources"


def meti_sources_uri(base_url: str) -> str:
    """The ``meti://`` URI of the sources behind a METI API base URL.

    :param base_url: scheme, host and optional path prefix, e.g. ``https://api.millpont.com``
    """
    parts = urlsplit(base_url)
    path = f"{parts.path.rstrip('/')}/{SOURCES_PATH}"
    return urlunsplit(sanitize_uri(SplitResult(SCHEME, parts.netloc, path, "", "")))


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Normalise a ``meti://`` URI: the host lower-cased, user info dropped, a host required.

    :param uri: the URI, split
    """
    if not uri.hostname:
        raise ValueError(
            f"A meti:// URI needs a host, e.g. meti://api.meti.millpont.com/sources; got "
            f"{urlunsplit(uri)!r}."
        )
    netloc = uri.hostname.lower()  # hostname is already lower-cased; kept explicit
    if ":" in netloc:  # an IPv6 address goes back in brackets
        netloc = f"[{netloc}]"
    if uri.port is not None:
        netloc = f"{netloc}:{uri.port}"
    return uri._replace(netloc=netloc)


def create_asset(*, base_url: str, extra: dict[str, Any] | None = None) -> Asset:
    """The Asset of the sources behind a METI API base URL (a Dataset on Airflow 2.11).

    :param base_url: scheme, host and optional path prefix of the API
    :param extra: the Asset's extra
    """
    uri = meti_sources_uri(base_url)
    return Asset(uri=uri, extra=extra) if extra else Asset(uri=uri)


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any) -> OpenLineageDataset:
    """The OpenLineage dataset of a ``meti://`` Asset: namespace ``meti://<host>``, name the path.

    :param asset: an Asset whose URI has the ``meti`` scheme
    :param lineage_context: what Airflow's OpenLineage provider passes; not needed here
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset as OpenLineageDataset

    parts = urlsplit(asset.uri)
    return OpenLineageDataset(
        namespace=f"{SCHEME}://{parts.netloc}", name=parts.path.lstrip("/") or SOURCES_PATH
    )
