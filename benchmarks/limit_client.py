"""The limit: a hand-written loop over one ``requests.Session`` with a fixed bearer header.

No retries, no token renewal, no validation: the least work a correct-on-a-good-day client
does. The provider is measured against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import IO, Any

import requests

from benchmarks.emulator_process import EMAIL, PASSWORD


class LimitClient:
    """One session, one token fetched up front, the header set once."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        response = self.session.post(
            f"{base_url}/token", json={"email": EMAIL, "password": PASSWORD}, timeout=30
        )
        response.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {response.json()['token']}"

    def get_source(self, source_id: str) -> Any:
        response = self.session.get(
            f"{self.base_url}/sources/", params={"id": source_id}, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def pages(self, page_size: int) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``GET /sources`` (limit/offset) until a short page, like the provider."""
        offset = 0
        while True:
            response = self.session.get(
                f"{self.base_url}/sources",
                params={"limit": page_size, "offset": offset},
                timeout=30,
            )
            response.raise_for_status()
            page = response.json()
            yield page
            offset += len(page)
            if len(page) < page_size:
                return

    def create_one(self, feature: Mapping[str, Any]) -> str:
        body = {"type": "FeatureCollection", "features": [feature]}
        response = self.session.post(f"{self.base_url}/sources", json=body, timeout=30)
        response.raise_for_status()
        return str(response.json()["id"])


def write_ndjson(pages: Iterator[list[dict[str, Any]]], handle: IO[str]) -> int:
    """Each source as a GeoJSON Feature on its own line (the provider's NDJSON output)."""
    count = 0
    for page in pages:
        for source in page:
            properties = {k: v for k, v in source.items() if k not in ("id", "geojson")}
            feature = {
                "type": "Feature",
                "id": source.get("id"),
                "geometry": source.get("geojson"),
                "properties": properties,
            }
            handle.write(json.dumps(feature, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += len(page)
    return count
