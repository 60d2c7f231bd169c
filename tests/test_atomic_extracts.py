"""Extracts to object storage appear only complete: in memory and on a real S3 protocol server.

A re-run that fails part-way must leave yesterday's object as it was and no temporary object
behind; a run that succeeds replaces it whole.
"""

from __future__ import annotations

import json

import pytest

from airflow_provider_meti.exceptions import MetiApiError
from airflow_provider_meti.operators.meti import MetiListSourcesOperator

YESTERDAY = '{"yesterday": "a complete extract"}\n'


@pytest.fixture(params=["memory", "s3"])
def storage_url(request) -> str:
    """A directory URL on ``memory://`` or on moto's S3 server (bucket ``extracts``)."""
    if request.param == "memory":
        request.getfixturevalue("memory_storage")
        return "memory://extracts/daily"
    request.getfixturevalue("s3_storage")
    return "s3://extracts/daily"


def objects_under(url: str) -> dict[str, str]:
    """Every object below ``url``: name -> text."""
    from airflow_provider_meti._compat import ObjectStoragePath

    directory = ObjectStoragePath(url)
    fs = directory.fs
    fs.invalidate_cache()
    found = fs.find(str(directory.path))
    return {name.rsplit("/", 1)[-1]: fs.cat_file(name).decode() for name in found}


def write(url: str, text: str) -> None:
    from airflow_provider_meti._compat import ObjectStoragePath

    with ObjectStoragePath(url).open("w") as handle:
        handle.write(text)


@pytest.mark.parametrize("name", ["sources.ndjson", "sources.geojson"])
def test_a_rerun_that_fails_part_way_leaves_the_previous_object_untouched(
    meti_connection, emulator, task_context, storage_url, name
):
    meti_connection(extra={"max_retries": 0})
    emulator.ledger.seed(30)
    write(f"{storage_url}/{name}", YESTERDAY)
    emulator.set_faults(rate=1.0, kinds=["500"], methods=["GET"], skip=3)  # page 4 of 6 fails

    operator = MetiListSourcesOperator(
        task_id="l", output_path=f"{storage_url}/{name}", page_size=5
    )
    with pytest.raises(MetiApiError, match="HTTP 500"):
        operator.execute(task_context)

    assert emulator.stats()["responses"]["200"] >= 3  # it did fail part-way
    assert objects_under(storage_url) == {name: YESTERDAY}  # and no temporary object is left


def test_a_failed_first_extract_leaves_no_object(
    meti_connection, emulator, task_context, storage_url
):
    meti_connection(extra={"max_retries": 0})
    emulator.ledger.seed(30)
    write(f"{storage_url}/other.txt", "unrelated")
    emulator.set_faults(rate=1.0, kinds=["500"], methods=["GET"], skip=2)

    operator = MetiListSourcesOperator(
        task_id="l", output_path=f"{storage_url}/sources.ndjson", page_size=5
    )
    with pytest.raises(MetiApiError):
        operator.execute(task_context)

    assert objects_under(storage_url) == {"other.txt": "unrelated"}


def test_a_successful_rerun_replaces_the_object_whole(
    meti_connection, emulator, task_context, storage_url
):
    emulator.ledger.seed(12)
    target = f"{storage_url}/sources.ndjson"
    write(target, YESTERDAY)

    operator = MetiListSourcesOperator(task_id="l", output_path=target, page_size=5)
    assert operator.execute(task_context)["count"] == 12

    stored = objects_under(storage_url)
    assert list(stored) == ["sources.ndjson"]
    ids = [json.loads(line)["id"] for line in stored["sources.ndjson"].splitlines()]
    assert sorted(ids) == sorted(source["id"] for source in emulator.ledger.all())
