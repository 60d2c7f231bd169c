"""Loops the provider is measured against.

``LimitClient`` is the naive loop: one ``requests.Session`` that keeps ``trust_env=True``
(each request rescans the environment and netrc), stdlib ``json`` decoding, one
``json.dumps`` a line. ``TightClient`` is the honest requests limit (environment resolved
once, msgspec decoding, one page alive); ``Urllib3Client`` the per-call limit below
requests; ``read_only`` the serve-only ceiling of an extract. None retries, renews tokens
or validates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import IO, Any

import requests

from benchmarks.emulator_process import EMAIL, PASSWORD


class LimitClient:
    """The naive loop: one session, one token fetched up front, the header set once."""

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


class TightClient:
    """The fastest honest loop over ``requests``: the environment (proxies) resolved once,
    then ``trust_env=False`` so no request rescans it or netrc; msgspec decoding."""

    def __init__(self, base_url: str) -> None:
        import msgspec

        self.base_url = base_url
        self.session = requests.Session()
        self.session.proxies.update(requests.utils.get_environ_proxies(base_url))
        self.session.trust_env = False
        self._decode = msgspec.json.Decoder().decode
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
        return self._decode(response.content)

    def create_one(self, feature: Mapping[str, Any]) -> str:
        """One feature per ``POST /sources`` (API v1), the body encoded by msgspec."""
        import msgspec

        body = msgspec.json.encode({"type": "FeatureCollection", "features": [feature]})
        response = self.session.post(
            f"{self.base_url}/sources",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        response.raise_for_status()
        return str(self._decode(response.content)["id"])

    def page_bodies(self, page_size: int) -> Iterator[bytes]:
        """The raw bodies of ``GET /sources`` until a short page (no decoding)."""
        import msgspec

        count_items = msgspec.json.Decoder(list[msgspec.Raw]).decode
        offset = 0
        while True:
            response = self.session.get(
                f"{self.base_url}/sources",
                params={"limit": page_size, "offset": offset},
                timeout=30,
            )
            response.raise_for_status()
            body = response.content
            del response
            count = len(count_items(body))
            yield body
            del body  # not kept alive while the next page is fetched
            offset += count
            if count < page_size:
                return

    def pages(self, page_size: int) -> Iterator[list[dict[str, Any]]]:
        for body in self.page_bodies(page_size):
            page = self._decode(body)
            del body  # one page alive, not two
            yield page
            del page


class Urllib3Client:
    """The per-call limit below ``requests``: one ``urllib3`` pool, a fixed header."""

    def __init__(self, base_url: str) -> None:
        import msgspec
        import urllib3

        self.base_url = base_url
        self.pool = urllib3.PoolManager(maxsize=1)
        self._decode = msgspec.json.Decoder().decode
        response = self.pool.request(
            "POST",
            f"{base_url}/token",
            body=json.dumps({"email": EMAIL, "password": PASSWORD}),
            headers={"Content-Type": "application/json"},
        )
        self.headers = {"Authorization": f"Bearer {json.loads(response.data)['token']}"}

    def get_source(self, source_id: str) -> Any:
        response = self.pool.request(
            "GET", f"{self.base_url}/sources/", fields={"id": source_id}, headers=self.headers
        )
        if response.status >= 400:
            raise RuntimeError(f"GET source: {response.status}")
        return self._decode(response.data)


def feature_of(source: dict[str, Any]) -> dict[str, Any]:
    properties = dict(source)
    properties.pop("id", None)
    properties.pop("geojson", None)
    return {
        "type": "Feature",
        "id": source.get("id"),
        "geometry": source.get("geojson"),
        "properties": properties,
    }


def write_ndjson_tight(pages: Iterator[list[dict[str, Any]]], handle: IO[bytes]) -> int:
    """The tight loop: one reused compact stdlib encoder, one write a page."""
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    count = 0
    for page in pages:
        if page:
            handle.write(("\n".join(encode(feature_of(s)) for s in page) + "\n").encode())
        count += len(page)
        del page
    return count


def write_ndjson_msgspec(pages: Iterator[list[dict[str, Any]]], handle: IO[bytes]) -> int:
    """The same loop encoding with one ``msgspec.json.Encoder`` into one buffer a page."""
    import msgspec

    encoder = msgspec.json.Encoder()
    count = 0
    for page in pages:
        buffer = bytearray()
        for source in page:
            encoder.encode_into(feature_of(source), buffer, -1)
            buffer += b"\n"
        handle.write(buffer)
        count += len(page)
        del page, buffer
    return count


def read_only(client: TightClient, page_size: int) -> int:
    """The serve-only ceiling: fetch and split every page, write nothing."""
    import msgspec

    count_items = msgspec.json.Decoder(list[msgspec.Raw]).decode
    return sum(len(count_items(body)) for body in client.page_bodies(page_size))
