"""The METI operators against the emulator over loopback, called as a task runner would."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from airflow_provider_meti._compat import AirflowException
from airflow_provider_meti.exceptions import (
    MetiApiError,
    MetiConfigError,
    MetiNotFoundError,
    MetiValidationError,
)
from airflow_provider_meti.operators.meti import (
    MetiCreateSourcesOperator,
    MetiDeleteSourceOperator,
    MetiGetSourceOperator,
    MetiListSourcesOperator,
    MetiOperator,
    source_to_feature,
    write_features,
)
from tests.airflow_context import make_context
from tests.api_versions import SECRETS, v1_only
from tests.features import collection, square_feature

OPERATORS = (
    MetiOperator,
    MetiCreateSourcesOperator,
    MetiGetSourceOperator,
    MetiListSourcesOperator,
    MetiDeleteSourceOperator,
)


def posts(emulator) -> int:
    return emulator.stats()["requests"].get("POST /sources", 0)


def listing_requests(emulator) -> int:
    return emulator.stats()["requests"].get("GET /sources", 0)


def grid(count: int, prefix: str = "F") -> dict:
    return collection(*(square_feature(f"{prefix}-{i}", x=i) for i in range(count)))


def seeded_ids(emulator, count: int) -> list[str]:
    emulator.ledger.seed(count)
    return [source["id"] for source in emulator.ledger.all()]


def stored_alt_ids(emulator) -> list[str]:
    return sorted(source["alt_id"] for source in emulator.ledger.all())


# Declarations


@pytest.mark.parametrize("operator_class", OPERATORS)
def test_every_operator_templates_its_connection_id(operator_class):
    assert "meti_conn_id" in operator_class.template_fields


def test_hooks_are_created_lazily(meti_connection):
    operator = MetiGetSourceOperator(task_id="get", source_id="src_x", meti_conn_id="{{ x }}")
    assert "hook" not in operator.__dict__
    operator.render_template_fields({"x": "meti_default"})
    assert operator.hook.meti_conn_id == "meti_default"


# MetiOperator


def test_generic_operator_returns_filtered_json(meti_connection, emulator, task_context):
    emulator.ledger.seed(3)
    operator = MetiOperator(
        task_id="list",
        endpoint="/sources",
        request_params={"limit": 2},
        response_filter=lambda body: [source["id"] for source in body],
    )
    ids = operator.execute(task_context)
    assert len(ids) == 2 and all(source_id.startswith("src_") for source_id in ids)


def test_generic_operator_posts_json(meti_connection, emulator, task_context, meti_api_version):
    fc = collection(square_feature("P"))
    data = fc if meti_api_version == 1 else {"feature_collection": fc}  # v2: SourceCreateRequest
    operator = MetiOperator(task_id="post", endpoint="/sources", method="POST", data=data)
    reply = operator.execute(task_context)
    assert (reply if meti_api_version == 1 else reply[0])["id"].startswith("src_")
    assert stored_alt_ids(emulator) == ["P"]


@pytest.mark.parametrize(
    "endpoint",
    [
        "/token",
        "token",
        "/oauth/token/",
        "//token",
        "token/.",
        "/./token",
        "/sources/../token",
        "/%74oken",
        "/TOKEN?x=1",
        "oauth//token",
    ],
)
def test_generic_operator_refuses_the_token_endpoint(
    meti_connection, emulator, task_context, endpoint
):
    operator = MetiOperator(task_id="t", endpoint=endpoint, method="POST")
    with pytest.raises(MetiConfigError, match="XCom"):
        operator.execute(task_context)
    assert emulator.stats()["requests"] == {}


# MetiCreateSourcesOperator


def test_create_from_a_dict_returns_ids_in_order(meti_connection, emulator, task_context):
    operator = MetiCreateSourcesOperator(task_id="create", feature_collection=grid(3))
    created = operator.execute(task_context)
    assert [item["alt_id"] for item in created] == ["F-0", "F-1", "F-2"]
    assert {item["id"] for item in created} == {s["id"] for s in emulator.ledger.all()}
    assert listing_requests(emulator) == 0  # no lookups on a first try


def test_create_from_a_json_string(meti_connection, emulator, task_context):
    operator = MetiCreateSourcesOperator(task_id="c", feature_collection=json.dumps(grid(2)))
    operator.render_template_fields(task_context)
    assert len(operator.execute(task_context)) == 2


@pytest.mark.parametrize("in_dag", [False, True])
def test_create_from_an_absolute_path_outside_any_template_folder(
    meti_connection, emulator, task_context, tmp_path, caplog, in_dag
):
    from airflow_provider_meti._compat import DAG

    path = tmp_path / "data" / "fields.geojson"
    path.parent.mkdir()
    path.write_text(json.dumps(grid(2)))
    templates = tmp_path / "templates"
    templates.mkdir()
    if in_dag:
        with DAG("absolute_path", schedule=None, template_searchpath=[str(templates)]):
            operator = MetiCreateSourcesOperator(task_id="c", feature_collection=str(path))
    else:
        operator = MetiCreateSourcesOperator(task_id="c", feature_collection=str(path))
    with caplog.at_level(logging.ERROR):
        operator.resolve_template_files()
    operator.render_template_fields(task_context)
    assert operator.feature_collection == str(path)
    assert len(operator.execute(task_context)) == 2
    assert not [record for record in caplog.records if "template" in record.getMessage()]


def test_create_from_a_relative_path_jinja_cannot_find(
    meti_connection, emulator, task_context, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    Path("fields.json").write_text(json.dumps(grid(1)))
    operator = MetiCreateSourcesOperator(task_id="c", feature_collection="fields.json")
    operator.render_template_fields(task_context)
    assert len(operator.execute(task_context)) == 1


def test_create_from_a_template_file_in_the_search_path(
    meti_connection, emulator, task_context, tmp_path
):
    from airflow_provider_meti._compat import DAG

    template = json.dumps(collection(square_feature("{{ params.prefix }}-1")))
    (tmp_path / "fields.geojson").write_text(template)
    with DAG("create_from_template", schedule=None, template_searchpath=[str(tmp_path)]):
        operator = MetiCreateSourcesOperator(task_id="c", feature_collection="fields.geojson")
    operator.render_template_fields({**task_context, "params": {"prefix": "north"}})
    assert operator.execute(task_context)[0]["alt_id"] == "north-1"


def test_rendering_a_collection_keeps_plain_strings_as_they_are(task_context):
    from airflow_provider_meti._compat import DAG

    features = collection(square_feature("123"), square_feature("{{ params.site }}-2", x=1))
    with DAG("native", schedule=None, render_template_as_native_obj=True):
        operator = MetiCreateSourcesOperator(task_id="c", feature_collection=features)
    operator.render_template_fields({**task_context, "params": {"site": "north"}})
    ids = [feature["id"] for feature in operator.feature_collection["features"]]
    assert ids == ["123", "north-2"]


def test_a_bad_collection_sends_nothing_and_names_every_bad_feature(
    meti_connection, emulator, task_context
):
    good = square_feature("OK")
    no_window = square_feature("NO-WINDOW")
    del no_window["properties"]["end_at"]
    open_ring = square_feature("OPEN-RING")
    open_ring["geometry"]["coordinates"][0].pop()
    short = square_feature("SHORT", end_at="2024-11-01T12:00:00Z")
    operator = MetiCreateSourcesOperator(
        task_id="c", feature_collection=collection(good, no_window, open_ring, short)
    )
    with pytest.raises(MetiValidationError) as raised:
        operator.execute(task_context)
    message = str(raised.value)
    for index, alt_id in ((1, "NO-WINDOW"), (2, "OPEN-RING"), (3, "SHORT")):
        assert f"feature {index} (id={alt_id!r})" in message
    assert "'OK'" not in message
    assert posts(emulator) == 0
    assert emulator.stats()["token_requests"] == 0


def test_a_missing_file_is_a_clear_error(meti_connection, emulator, task_context, tmp_path):
    missing = tmp_path / "nowhere.geojson"
    operator = MetiCreateSourcesOperator(task_id="c", feature_collection=str(missing))
    with pytest.raises(MetiValidationError, match="file not found"):
        operator.execute(task_context)
    assert posts(emulator) == 0


def test_a_retried_create_stores_no_duplicates(meti_connection, emulator, capfd):
    meti_connection(extra={"max_retries": 0})
    features = grid(6, prefix="R")
    # One POST is stored but its answer lost (the third POST METI sees): try 1 fails part-way.
    emulator.set_faults(rate=1.0, kinds=["stored_then_drop"], methods=["POST"], skip=2, count=1)
    one_per_post = {"max_workers": 1, "batch_size": 1}  # v2 would send all six in one POST
    first = MetiCreateSourcesOperator(task_id="c", feature_collection=features, **one_per_post)
    with pytest.raises(MetiApiError):
        first.execute(make_context(try_number=1))
    stored_by_first_try = emulator.ledger.count()
    assert 0 < stored_by_first_try < 6
    assert "registered before the failure" in capfd.readouterr().out

    emulator.clear_faults()
    posts_before = posts(emulator)
    second = MetiCreateSourcesOperator(task_id="c", feature_collection=features, **one_per_post)
    created = second.execute(make_context(try_number=2))

    assert stored_alt_ids(emulator) == [f"R-{i}" for i in range(6)]
    assert [item["alt_id"] for item in created] == [f"R-{i}" for i in range(6)]
    assert {item["id"] for item in created} == {s["id"] for s in emulator.ledger.all()}
    assert posts(emulator) - posts_before == 6 - stored_by_first_try


# MetiGetSourceOperator


def test_get_source_returns_it(meti_connection, emulator, task_context):
    (source_id,) = seeded_ids(emulator, 1)
    source = MetiGetSourceOperator(task_id="g", source_id=source_id).execute(task_context)
    assert source["id"] == source_id and "geojson" in source


def test_get_missing_source_raises_not_found(meti_connection, task_context):
    operator = MetiGetSourceOperator(task_id="g", source_id="src_0000000000000")
    with pytest.raises(MetiNotFoundError):
        operator.execute(task_context)


# MetiListSourcesOperator


def read_ndjson(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_list_10000_sources_to_ndjson(meti_connection, emulator, task_context, tmp_path):
    emulator.ledger.seed(10_000)
    target = tmp_path / "out" / "sources.ndjson"
    operator = MetiListSourcesOperator(task_id="l", output_path=str(target), page_size=1000)
    result = operator.execute(task_context)
    assert result == {"path": str(target), "count": 10_000}
    features = read_ndjson(target)
    assert len({feature["id"] for feature in features}) == 10_000
    first = features[0]
    assert first["type"] == "Feature" and first["geometry"]["type"] == "Polygon"
    assert "geojson" not in first["properties"] and "alt_id" in first["properties"]
    assert list(target.parent.iterdir()) == [target]  # no temporary file left behind


def test_list_to_a_geojson_feature_collection(meti_connection, emulator, task_context, tmp_path):
    emulator.ledger.seed(2_500)
    target = tmp_path / "sources.geojson"
    result = MetiListSourcesOperator(task_id="l", output_path=str(target)).execute(task_context)
    document = json.loads(target.read_text())
    assert document["type"] == "FeatureCollection"
    assert len(document["features"]) == result["count"] == 2_500


def test_list_to_a_file_url(meti_connection, emulator, task_context, tmp_path):
    emulator.ledger.seed(5)
    target = tmp_path / "nested" / "sources.jsonl"
    operator = MetiListSourcesOperator(task_id="l", output_path=target.as_uri())
    assert operator.execute(task_context) == {"path": str(target), "count": 5}
    assert len(read_ndjson(target)) == 5


def test_list_to_an_object_storage_path(meti_connection, emulator, task_context, tmp_path):
    from airflow_provider_meti._compat import ObjectStoragePath

    emulator.ledger.seed(3)
    target = ObjectStoragePath((tmp_path / "sources.geojson").as_uri())
    result = MetiListSourcesOperator(task_id="l", output_path=target).execute(task_context)
    assert result["count"] == 3
    assert len(json.loads((tmp_path / "sources.geojson").read_text())["features"]) == 3


def test_list_to_object_storage_writes_directly(
    meti_connection, emulator, task_context, memory_storage
):
    from airflow_provider_meti._compat import ObjectStoragePath

    emulator.ledger.seed(12)
    url = "memory://extracts/daily/sources.ndjson"
    operator = MetiListSourcesOperator(task_id="l", output_path=url, page_size=5)
    # str() of the path, not url: Airflow 2.11's universal-pathlib writes memory:///extracts
    assert operator.execute(task_context) == {"path": str(ObjectStoragePath(url)), "count": 12}
    lines = ObjectStoragePath(url).read_text().splitlines()
    assert len(lines) == 12 and json.loads(lines[0])["type"] == "Feature"


def test_a_failed_extract_to_object_storage_leaves_no_object(
    meti_connection, emulator, task_context, memory_storage
):
    from airflow_provider_meti._compat import ObjectStoragePath

    meti_connection(extra={"max_retries": 0})
    emulator.ledger.seed(50)
    emulator.set_faults(rate=0.5, kinds=["500"], methods=["GET"], seed=0)
    url = "memory://extracts/sources.geojson"
    operator = MetiListSourcesOperator(task_id="l", output_path=url, page_size=5)
    with pytest.raises(MetiApiError):
        operator.execute(task_context)
    assert not ObjectStoragePath(url).exists()


def test_list_with_no_match_writes_an_empty_collection(meti_connection, task_context, tmp_path):
    target = tmp_path / "none.json"
    result = MetiListSourcesOperator(task_id="l", output_path=str(target)).execute(task_context)
    assert result["count"] == 0
    assert json.loads(target.read_text()) == {"type": "FeatureCollection", "features": []}


def test_a_failed_extract_leaves_the_previous_file_untouched(
    meti_connection, emulator, task_context, tmp_path
):
    meti_connection(extra={"max_retries": 0})
    emulator.ledger.seed(50)
    target = tmp_path / "sources.ndjson"
    target.write_text("previous extract\n")
    emulator.set_faults(rate=0.5, kinds=["500"], methods=["GET"], seed=0)
    operator = MetiListSourcesOperator(task_id="l", output_path=str(target), page_size=5)
    with pytest.raises(MetiApiError):
        operator.execute(task_context)
    assert target.read_text() == "previous extract\n"
    assert list(tmp_path.iterdir()) == [target]


def test_list_into_xcom_returns_the_sources(meti_connection, emulator, task_context):
    emulator.ledger.seed(25)
    sources = MetiListSourcesOperator(task_id="l", page_size=10).execute(task_context)
    assert len(sources) == 25 and all(source["id"].startswith("src_") for source in sources)


def test_list_into_xcom_refuses_more_than_max_items(meti_connection, emulator, task_context):
    emulator.ledger.seed(30)
    operator = MetiListSourcesOperator(task_id="l", page_size=10, max_items=25)
    with pytest.raises(AirflowException, match="Use output_path"):
        operator.execute(task_context)
    assert listing_requests(emulator) == 3  # stopped as soon as the limit was passed


def test_list_into_xcom_is_capped_by_size_not_count(meti_connection, emulator, task_context):
    emulator.ledger.seed(30)
    one_source = len(json.dumps(emulator.ledger.all()[0], separators=(",", ":")))
    # Room for about 15 sources: the second page of 10 passes the cap.
    operator = MetiListSourcesOperator(task_id="l", page_size=10, max_xcom_bytes=15 * one_source)
    with pytest.raises(AirflowException, match=r"more than max_xcom_bytes=.*Use output_path"):
        operator.execute(task_context)
    assert listing_requests(emulator) == 2  # stopped as soon as the cap was passed
    roomy = MetiListSourcesOperator(task_id="l", page_size=10, max_xcom_bytes=40 * one_source)
    assert len(roomy.execute(task_context)) == 30


def test_list_into_xcom_defaults_to_about_a_megabyte(meti_connection, emulator, task_context):
    assert MetiListSourcesOperator(task_id="l").max_xcom_bytes == 1_000_000
    emulator.ledger.seed(2000)  # full polygons: well over 1 MB of JSON, far under 10,000
    with pytest.raises(AirflowException, match="max_xcom_bytes=1000000"):
        MetiListSourcesOperator(task_id="l").execute(task_context)


def test_list_passes_filters(meti_connection, emulator, task_context):
    a = square_feature("A", x=0)
    b = square_feature("B", x=0, y=0.1)  # overlaps A: both are in conflict
    c = square_feature("C", x=5)
    emulator.ledger.create(collection(a, b, c))
    emulator.ledger.seed(2, methodology="soil")
    operator = MetiListSourcesOperator(task_id="l", filters={"methodology": "{{ kind }}"})
    operator.render_template_fields({**task_context, "kind": "soil"})
    listed = operator.execute(task_context)
    assert [source["methodology"] for source in listed] == ["soil", "soil"]
    assert {"A", "B", "C"}.isdisjoint(source["alt_id"] for source in listed)


def test_list_by_project(meti_connection, emulator, task_context):
    emulator.ledger.seed(4, project_id="p1")
    emulator.ledger.seed(3, project_id="p2")
    operator = MetiListSourcesOperator(task_id="l", project_id="{{ project }}")
    operator.render_template_fields({**task_context, "project": "p2"})
    sources = operator.execute(task_context)
    assert [source["project_id"] for source in sources] == ["p2"] * 3


def test_named_filters_win_over_the_filters_dict():
    operator = MetiListSourcesOperator(
        task_id="l", project_id="p1", filters={"project_id": "p0", "tag": "x"}
    )
    assert operator.query() == {"project_id": "p1", "tag": "x"}


def test_progress_is_logged_every_ten_pages(meti_connection, emulator, task_context, capfd):
    emulator.ledger.seed(25)
    MetiListSourcesOperator(task_id="l", page_size=1).execute(task_context)
    logged = capfd.readouterr().out
    progress = [line for line in logged.splitlines() if "so far" in line]
    assert len(progress) == 2
    assert "Fetched 10 pages, 10 sources so far" in progress[0]
    assert "Fetched 20 pages, 20 sources so far" in progress[1]
    assert "Fetched 25 sources in 25 pages" in logged


def test_features_are_written_page_by_page(tmp_path):
    written_before_each_page = []
    with (tmp_path / "out.ndjson").open("w") as handle:

        def pages():
            for page in range(3):
                written_before_each_page.append(handle.tell())
                yield [{"id": f"src_{page}", "geojson": None}]

        assert write_features(handle, pages(), as_collection=False) == 3
    assert written_before_each_page[0] == 0
    assert written_before_each_page[1] < written_before_each_page[2]


def test_source_to_feature_moves_the_polygon_into_geometry():
    polygon = {"type": "Polygon", "coordinates": []}
    feature = source_to_feature({"id": "src_1", "geojson": polygon, "alt_id": "A", "conflict": 0})
    assert feature == {
        "type": "Feature",
        "id": "src_1",
        "geometry": polygon,
        "properties": {"alt_id": "A", "conflict": 0},
    }


# MetiDeleteSourceOperator


def test_delete_by_id(meti_connection, emulator, task_context):
    (source_id,) = seeded_ids(emulator, 1)
    MetiDeleteSourceOperator(task_id="d", source_id=source_id).execute(task_context)
    assert emulator.ledger.count() == 0


def test_delete_missing_source_fails_unless_told_or_retried(meti_connection, task_context):
    missing = "src_0000000000000"
    with pytest.raises(MetiNotFoundError):  # a mistyped id must not pass silently
        MetiDeleteSourceOperator(task_id="d", source_id=missing).execute(task_context)
    lenient = MetiDeleteSourceOperator(task_id="d", source_id=missing, missing_ok=True)
    lenient.execute(task_context)
    # On a retried try, "already gone" means an earlier try deleted it.
    MetiDeleteSourceOperator(task_id="d", source_id=missing).execute(make_context(try_number=2))


@v1_only
def test_delete_by_alt_id_needs_api_v2(meti_connection, task_context):
    operator = MetiDeleteSourceOperator(task_id="d", alt_id="A")
    with pytest.raises(MetiConfigError, match="v1 cannot delete by alt_id"):
        operator.execute(task_context)


@pytest.mark.parametrize("ids", [{}, {"source_id": "src_1", "alt_id": "A"}])
def test_delete_needs_exactly_one_id(ids):
    with pytest.raises(ValueError, match="exactly one"):
        MetiDeleteSourceOperator(task_id="d", **ids)


# Secrets


def test_no_operator_result_or_rendered_field_holds_a_secret(
    meti_connection, emulator, task_context
):
    operator = MetiCreateSourcesOperator(task_id="c", feature_collection=grid(2))
    operator.render_template_fields(task_context)
    created = operator.execute(task_context)
    token = operator.hook.get_token()
    rendered = json.dumps([getattr(operator, f) for f in operator.template_fields], default=str)
    for secret in (*SECRETS, token):
        assert secret not in json.dumps(created)
        assert secret not in rendered
