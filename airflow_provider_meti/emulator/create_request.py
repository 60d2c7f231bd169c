"""The v2 ``SourceCreateRequest`` body, checked the way FastAPI and pydantic (lax mode) would.

METI's v2 service is FastAPI: a body that does not fit the request model is answered 422
with every problem in ``{"detail": [{"type", "loc", "msg", "input"}]}``. Written for the
emulator alone (the client has its own checks): the double must not share the client's rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TEXT_FIELDS = ("methodology", "source_type", "geometry_source", "steward_id", "project_id")
LIST_FIELDS = ("attribute_type", "tags")
INTEGER_FIELDS = ("outcome_reporting_year",)
DESCRIPTIVE_FIELDS = TEXT_FIELDS + LIST_FIELDS + INTEGER_FIELDS
"""The optional top-level fields of a SourceCreateRequest, in METI's client's order."""

_INTEGER_TEXT = re.compile(r"^\s*[+-]?\d+\s*$")


@dataclass(frozen=True)
class CreateRequest:
    """A SourceCreateRequest that fits the model.

    :param feature_collection: the ``feature_collection`` object, not yet checked as GeoJSON
        (the ledger does that)
    :param fields: the descriptive fields the body gave, coerced as pydantic would
    """

    feature_collection: Mapping[str, Any]
    fields: dict[str, Any]


class RequestInvalid(Exception):
    """The body does not fit the model; ``errors`` are FastAPI's ``detail`` items."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors


def error_item(loc: list[Any], kind: str, msg: str, given: Any) -> dict[str, Any]:
    """One item of a FastAPI 422 ``detail`` list."""
    return {"type": kind, "loc": loc, "msg": msg, "input": given}


def parse_create_request(body: Any) -> CreateRequest:
    """The request a JSON body stands for.

    :param body: the parsed JSON body
    :raises RequestInvalid: every way the body breaks the model, in field order
    """
    if not isinstance(body, dict):
        raise RequestInvalid(
            [
                error_item(
                    ["body"],
                    "model_attributes_type",
                    "Input should be a valid dictionary or object to extract fields from",
                    body,
                )
            ]
        )
    errors: list[dict[str, Any]] = []
    collection = body.get("feature_collection")
    if "feature_collection" not in body:
        errors.append(error_item(["body", "feature_collection"], "missing", "Field required", body))
    elif not isinstance(collection, dict):
        # docs leave open: the model of feature_collection; a dict (or a model of one) is
        # what METI's client sends, and either refuses a non-object this way.
        errors.append(
            error_item(
                ["body", "feature_collection"],
                "dict_type",
                "Input should be a valid dictionary",
                collection,
            )
        )
    fields: dict[str, Any] = {}
    for name in DESCRIPTIVE_FIELDS:
        if name not in body or body[name] is None:  # every field is Optional, default None
            continue
        value, problems = _coerced(name, body[name])
        errors.extend(problems)
        if not problems:
            fields[name] = value
    if errors:
        raise RequestInvalid(errors)
    assert isinstance(collection, dict)
    return CreateRequest(collection, fields)


def _coerced(name: str, value: Any) -> tuple[Any, list[dict[str, Any]]]:
    loc: list[Any] = ["body", name]
    if name in TEXT_FIELDS:
        if isinstance(value, str):
            return value, []
        return None, [error_item(loc, "string_type", "Input should be a valid string", value)]
    if name in LIST_FIELDS:
        if not isinstance(value, list):
            return None, [error_item(loc, "list_type", "Input should be a valid list", value)]
        problems = [
            error_item([*loc, index], "string_type", "Input should be a valid string", item)
            for index, item in enumerate(value)
            if not isinstance(item, str)
        ]
        # docs leave open: whether an empty list is refused; a plain list[str] accepts it.
        return list(value), problems
    return _integer(loc, value)


def _integer(loc: list[Any], value: Any) -> tuple[Any, list[dict[str, Any]]]:
    # docs leave open: whether METI's model is strict; pydantic's default (lax) mode takes
    # booleans, integral floats and integer text ("2025") as integers, and so does the emulator.
    if isinstance(value, bool):
        return int(value), []
    if isinstance(value, int):
        return value, []
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value), []
        if not math.isfinite(value):
            return None, [
                error_item(loc, "finite_number", "Input should be a finite number", value)
            ]
        return None, [
            error_item(
                loc,
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
                value,
            )
        ]
    if isinstance(value, str):
        if _INTEGER_TEXT.match(value):
            return int(value), []
        return None, [
            error_item(
                loc,
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
                value,
            )
        ]
    return None, [error_item(loc, "int_type", "Input should be a valid integer", value)]
