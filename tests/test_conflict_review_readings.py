"""The conflict review reads plausible replies as ``conditions`` and ``replies`` define them
(#25.5): ``conflict_with`` without a flag, as a string, with null or object entries."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_meti.exceptions import MetiNotFoundError
from airflow_provider_meti.hooks.meti import MetiHook
from tests.test_conflict_review import ask, needs_hitl, review_dag

OURS = "src_OURS000000001"


@pytest.fixture
def asked(monkeypatch) -> list[dict[str, Any]]:
    """Every question the operator writes, instead of sending it to a task supervisor."""
    from airflow.providers.standard.operators import hitl

    questions: list[dict[str, Any]] = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **detail: questions.append(detail))
    return questions


@pytest.fixture
def replies(monkeypatch) -> tuple[dict[str, Any], list[str]]:
    """METI's answers by id, served by the hook without HTTP; records every id read."""
    served: dict[str, Any] = {}
    read: list[str] = []

    def get_source(self: MetiHook, source_id: str) -> dict[str, Any]:
        read.append(source_id)
        if source_id not in served:
            raise MetiNotFoundError("no such source", status_code=404)
        return served[source_id]

    monkeypatch.setattr(MetiHook, "get_source", get_source)
    return served, read


def partner(source_id: str) -> dict[str, Any]:
    return {"id": source_id, "alt_id": f"their-{source_id[-1]}", "conflict": True}


@needs_hitl
@pytest.mark.parametrize(
    ("conflict_with", "partners"),
    [
        (["src_P000000000001"], ["src_P000000000001"]),  # a partner but no flag
        ("src_P000000000001", ["src_P000000000001"]),  # a string, not a list of letters
        ([None, "src_P000000000001", None], ["src_P000000000001"]),
        (
            [{"id": "src_P000000000001"}, {"id": "src_P000000000002"}],
            ["src_P000000000001", "src_P000000000002"],
        ),
    ],
)
def test_the_review_asks_about_each_partner_once(
    replies,
    asked,
    task_context,
    conflict_with,
    partners,
):
    served, read = replies
    served[OURS] = {"id": OURS, "alt_id": "ours", "conflict_with": conflict_with}
    for partner_id in partners:
        served[partner_id] = partner(partner_id)

    body = ask(review_dag(OURS).get_task("review"), asked, task_context)["body"]

    assert read == [OURS, *partners]
    for partner_id in partners:
        assert f"`{partner_id}`" in body
