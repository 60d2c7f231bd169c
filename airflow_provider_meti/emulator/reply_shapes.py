"""How the emulator spells a stored source in its replies: v2's SourceResponse, and the 2024
GitBook shape of v1 that the ``reply_shape="2024"`` mode serves."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_meti.emulator.create_request import DESCRIPTIVE_FIELDS

SOURCE_RESPONSE_FIELDS = (
    "id",
    "alt_id",
    *DESCRIPTIVE_FIELDS,
    "created_at",
    "updated_at",
    "conflict",
    "conflict_with",
    "unep_overlap",
    "pa_name",
    "pa_designation",
    "wdpaid",
    "start_at",
    "end_at",
    "hectares",
    "country",
    "percent_overlap",
)
"""What a v2 SourceResponse carries (sandbox page, MillPont's client, the ledger schema)."""

ACRES_PER_HECTARE = 2.471053814671653
RENAMED_2024 = {
    "alt_id": "internal_id",
    "start_at": "claim_start",
    "end_at": "claim_end",
    "conflict_with": "conflicting_sources",
}
TIMESTAMPS_2024 = ("claim_start", "claim_end", "created_at", "updated_at")
COUNTRY_2024 = "United States of America"
"""The one country name the 2024 page shows."""


def source_response(source: Mapping[str, Any]) -> dict[str, Any]:
    """A stored source as a v2 SourceResponse: every documented field (null when the ledger
    has none), then whatever else the ledger keeps (e.g. ``geojson``)."""
    # docs leave open: whether SourceResponse carries the geometry; the emulator leaves the
    # ledger's extra keys in, as a client must ignore what it does not know.
    response = {name: source.get(name) for name in SOURCE_RESPONSE_FIELDS}
    response.update((key, value) for key, value in source.items() if key not in response)
    return response


def has_every_response_field(encoded: bytes) -> bool:
    """Whether an encoded stored source already carries every SourceResponse field."""
    source = json.loads(encoded)
    return all(name in source for name in SOURCE_RESPONSE_FIELDS)


def shape_2024(source: Mapping[str, Any]) -> dict[str, Any]:
    """A stored source in the names of the GitBook page of 2024-11-18 (keys renamed, not
    duplicated)."""
    shaped = {RENAMED_2024.get(key, key): value for key, value in source.items()}
    hectares = shaped.get("hectares")
    if isinstance(hectares, (int, float)) and not isinstance(hectares, bool):
        shaped["hectares"] = f"{hectares}ha ({hectares * ACRES_PER_HECTARE:.2f}ac)"
    # docs leave open: how the 2024 service named countries beyond its one example; the
    # emulator keeps a name the ledger gives and writes the example's for a code.
    country = shaped.get("country")
    if not isinstance(country, str) or len(country) <= 3:
        shaped["country"] = COUNTRY_2024
    for name in TIMESTAMPS_2024:
        value = shaped.get(name)
        if isinstance(value, str) and value.endswith(("Z", "z")):
            shaped[name] = value[:-1] + "+00:00"
    return shaped


def encoded_2024(encoded_sources: Iterable[bytes]) -> list[bytes]:
    """Stored sources (JSON bytes) re-encoded in the 2024 shape."""
    return [
        json.dumps(shape_2024(json.loads(item)), separators=(",", ":")).encode()
        for item in encoded_sources
    ]
