"""MetiCreateSourcesOperator passes its descriptive keyword arguments (templated) on v2, and
refuses them on v1 before any request."""

from __future__ import annotations

import pytest

from airflow_provider_meti.exceptions import MetiConfigError
from airflow_provider_meti.operators.meti import MetiCreateSourcesOperator
from tests.api_versions import v1_only, v2_only
from tests.features import collection, square_feature


def operator(**fields) -> MetiCreateSourcesOperator:
    fc = collection(square_feature("OP-0"), square_feature("OP-1", x=2))
    return MetiCreateSourcesOperator(task_id="register", feature_collection=fc, **fields)


@v2_only
def test_the_operator_sends_its_fields_on_v2(meti_connection, emulator, task_context):
    task = operator(methodology="Agriculture", steward_id="GM-1", project_id="P-7", tags=["a"])
    assert {"methodology", "steward_id", "project_id", "tags"} <= set(task.template_fields)
    created = task.execute(task_context)
    assert [item["alt_id"] for item in created] == ["OP-0", "OP-1"]
    methodologies = {s["methodology"] for s in emulator.ledger.all()}
    assert methodologies == {"Agriculture"}
    assert {s["project_id"] for s in emulator.ledger.all()} == {"P-7"}


@v1_only
def test_the_operator_refuses_fields_on_v1_before_any_request(
    meti_connection, emulator, task_context
):
    with pytest.raises(MetiConfigError, match="methodology"):
        operator(methodology="Agriculture").execute(task_context)
    assert emulator.ledger.all() == []
