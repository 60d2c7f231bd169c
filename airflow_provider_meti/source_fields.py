"""The descriptive fields of a v2 ``SourceCreateRequest``, checked before anything is sent.

METI v2 takes ``methodology``, ``source_type``, ``geometry_source``, ``steward_id``,
``project_id`` (text), ``attribute_type``, ``tags`` (lists of text) and
``outcome_reporting_year`` (an integer) at the top level of a create request, one set per
POST. They come from the caller (the hook's ``source_fields``, the operator's keyword
arguments) and, per feature, from its ``properties``, whose values win for that feature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_meti.exceptions import FeatureProblem, MetiConfigError, MetiValidationError

TEXT_FIELDS = ("methodology", "source_type", "geometry_source", "steward_id", "project_id")
LIST_FIELDS = ("attribute_type", "tags")
YEAR_FIELDS = ("outcome_reporting_year",)
FIELD_NAMES: tuple[str, ...] = TEXT_FIELDS + LIST_FIELDS + YEAR_FIELDS
# A four-digit year: an int beyond it is a typo (2025000000000), not a reporting year.
YEAR_RANGE = (1000, 9999)

SourceFields = dict[str, Any]
FieldsKey = tuple[tuple[str, Any], ...]
"""A hashable form of a set of fields, for grouping features by what their POST carries."""


def field_reason(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be the descriptive field ``name``; None when it can."""
    if name in TEXT_FIELDS:
        if not isinstance(value, str) or not value.strip():
            return f"must be a non-empty string, got {_shown(value)}"
    elif name in LIST_FIELDS:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return f"must be a list of strings, got {_shown(value)}"
        if name == "attribute_type" and not value:
            return "must list at least one attribute type (e.g. ['CARBON_REMOVAL']), got []"
        for position, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                return f"item {position} must be a non-empty string, got {_shown(item)}"
    elif name in YEAR_FIELDS:
        # Text such as "2025" is refused, not coerced: METI's schema says integer, and a
        # silent conversion would hide a template that rendered the wrong thing.
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer year such as 2025, got {_shown(value)}"
        if not YEAR_RANGE[0] <= value <= YEAR_RANGE[1]:
            return f"must be a four-digit year, got {value!r}"
    else:
        known = ", ".join(FIELD_NAMES)
        return f"is not a descriptive field of METI v2 (known: {known})"
    return None


def checked_fields(fields: Mapping[str, Any] | None) -> SourceFields:
    """The set fields of ``fields`` (None values dropped); ``MetiConfigError`` naming the
    first field of the wrong type or name.

    :param fields: descriptive fields given by the caller, e.g. ``{"methodology": "..."}``
    """
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise MetiConfigError(
            f"source_fields must be a mapping of field names to values, got {_shown(fields)}."
        )
    result: SourceFields = {}
    for name, value in fields.items():
        if value is None:
            continue
        reason = field_reason(name, value)
        if reason is not None:
            raise MetiConfigError(f"The METI source field {name!r} {reason}.")
        result[name] = list(value) if name in LIST_FIELDS else value
    return result


def fields_of_features(
    features: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]
) -> list[SourceFields]:
    """Each feature's effective fields: ``defaults`` overridden by its ``properties``.

    A property that is None does not override. Raises ``MetiValidationError`` naming every
    feature (index and id) whose properties hold a field of the wrong type.

    :param features: validated features
    :param defaults: fields already checked by :func:`checked_fields`
    """
    problems: list[FeatureProblem] = []
    effective: list[SourceFields] = []
    for index, feature in enumerate(features):
        properties = feature.get("properties") or {}
        own: SourceFields = {}
        for name in FIELD_NAMES:
            value = properties.get(name)
            if value is None:
                continue
            reason = field_reason(name, value)
            if reason is not None:
                problems.append(
                    FeatureProblem(index, feature.get("id"), f"properties.{name}", reason)
                )
                continue
            own[name] = list(value) if name in LIST_FIELDS else value
        effective.append({**defaults, **own})
    if problems:
        raise MetiValidationError(problems)
    return effective


def fields_key(fields: Mapping[str, Any]) -> FieldsKey:
    """A hashable key equal for equal sets of fields."""
    return tuple(
        (name, tuple(value) if isinstance(value, list) else value)
        for name, value in sorted(fields.items())
    )


def _shown(value: Any) -> str:
    text = repr(value)
    shown = text if len(text) <= 60 else text[:57] + "..."
    return f"{shown} ({type(value).__name__})"
