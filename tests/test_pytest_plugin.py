"""The ``meti`` pytest plugin, as a user meets it: a throwaway project run by ``pytest``.

Each test writes a small project (its own ``dags/`` folder and test file using nothing but the
plugin's fixtures) under ``tmp_path`` and runs ``python -m pytest`` there in a subprocess, with
its own ``AIRFLOW_HOME`` and DAGs folder and without any ``AIRFLOW_*`` variable of this run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SUBPROCESS_TIMEOUT = 240

DAG_FILE = '''\
"""Register three field boundaries with METI, then wait until the first is free of conflicts."""

from datetime import datetime

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_provider_meti.operators.meti import MetiCreateSourcesOperator
from airflow_provider_meti.sensors.meti import MetiSourceSensor


def field(alt_id, west):
    south, east, north = 32.770, west + 0.006, 32.776
    ring = [[west, north], [west, south], [east, south], [east, north], [west, north]]
    return {
        "type": "Feature",
        "id": alt_id,
        "properties": {"start_at": "2025-01-01T00:00:00Z", "end_at": "2026-01-01T00:00:00Z"},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


FIELDS = {
    "type": "FeatureCollection",
    "features": [field("FIELD-1", -95.99), field("FIELD-2", -95.98), field("FIELD-3", -95.97)],
}

with DAG("register_fields", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    register = MetiCreateSourcesOperator(task_id="register", feature_collection=FIELDS)
    wait = MetiSourceSensor(
        task_id="wait_until_free",
        source_id="{{ ti.xcom_pull(task_ids='register')[0]['id'] }}",
        wait_for="no_conflict",
        poke_interval=1,
        timeout=60,
    )
    register >> wait
'''

PYTEST_INI = """\
[pytest]
pythonpath = dags
addopts = --strict-markers -p no:cacheprovider
"""

# The user's tests save the emulator's stats beside themselves, for this file to check.
USER_TEST_HEADER = """\
import json
from pathlib import Path

import pytest

from register_fields import dag


def save_stats(name, emulator):
    (Path(__file__).parent / f"{name}.stats.json").write_text(json.dumps(emulator.stats()))
"""

PLAIN_TEST = """
def test_registers_every_field(meti_connection):
    dag_run = dag.test()

    save_stats("plain", meti_connection.emulator)
    assert dag_run.state == "success"
    stored = meti_connection.emulator.sources()
    assert sorted(s["alt_id"] for s in stored) == ["FIELD-1", "FIELD-2", "FIELD-3"]
"""

FAULTY_TEST = """
@pytest.mark.meti(api_version=2, fault_rate=0.5, fault_kinds=["503", "drop"], seed=1)
def test_registers_every_field_despite_faults(meti_connection, meti_emulator):
    dag_run = dag.test()

    save_stats("faulty", meti_emulator)
    assert dag_run.state == "success"
    assert len(meti_emulator.sources()) == 3
    assert meti_emulator.faults_injected() > 0
"""

# Runs without Airflow: the fixtures' own promises, over real HTTP to the emulator.
FIXTURE_TESTS = """
import json
import os
import sys

import pytest
import requests


def token_reply(spec):
    if spec.get("extra", {}).get("api_version") == 2:
        return requests.post(spec["extra"]["token_url"], json={
            "client_id": spec["login"], "client_secret": spec["password"],
            "audience": "https://api.meti.millpont.com", "grant_type": "client_credentials"})
    return requests.post(spec["host"] + "/token",
                         json={"email": spec["login"], "password": spec["password"]})


def test_a_v1_connection_by_default(meti_connection):
    assert meti_connection.conn_id == "meti_default"
    assert meti_connection.env_var == "AIRFLOW_CONN_METI_DEFAULT"
    spec = json.loads(os.environ["AIRFLOW_CONN_METI_DEFAULT"])
    assert spec["conn_type"] == "meti"
    assert spec["host"] == meti_connection.emulator.url
    assert spec["host"].startswith("http://127.0.0.1:")
    assert token_reply(spec).status_code == 200


def test_the_variable_is_gone_after_the_test():
    assert "AIRFLOW_CONN_METI_DEFAULT" not in os.environ


@pytest.mark.meti(api_version=2, conn_id="meti_v2")
def test_v2_and_another_id_from_the_marker(meti_connection):
    spec = json.loads(os.environ["AIRFLOW_CONN_METI_V2"])
    assert spec["extra"]["api_version"] == 2
    assert token_reply(spec).json()["token_type"] == "Bearer"


@pytest.mark.parametrize("meti_connection", [1, {"api_version": 2, "conn_id": "p"}],
                         indirect=True)
def test_an_indirect_param(meti_connection):
    spec = json.loads(os.environ[meti_connection.env_var])
    assert token_reply(spec).status_code == 200


def test_documented_only_by_default(meti_emulator):
    assert meti_emulator.documented_only


@pytest.mark.meti(fault_rate=1.0, fault_kinds=["503"])
def test_a_fault_plan_from_the_marker(meti_emulator):
    assert requests.get(meti_emulator.url + "/sources").status_code == 503
    assert meti_emulator.stats()["faults"] == {"503": 1}


def test_seeding_and_expiring_tokens(meti_emulator, meti_connection):
    assert meti_emulator.seed_sources(5, project_id="p1") == 5
    assert token_reply(meti_connection.spec).status_code == 200
    assert meti_emulator.expire_all_tokens() == 1


@pytest.mark.meti(shared=True)
def test_shared_a(meti_emulator, meti_emulator_session):
    assert meti_emulator is meti_emulator_session
    meti_emulator.seed_sources(3)


@pytest.mark.meti(shared=True)
def test_shared_b_starts_clean(meti_emulator):
    assert meti_emulator.sources() == []
    assert meti_emulator.stats()["requests"] == {}


def test_airflow_was_never_imported():
    assert not [m for m in sys.modules if m == "airflow" or m.startswith("airflow.")]
"""


# Markers merging closest first, the sandbox and the answering modes, without Airflow.
MARKER_TESTS = """
import json
import os

import pytest
import requests

pytestmark = pytest.mark.meti(api_version=2, conn_id="meti_prod", reply_shape="2024")


def v2_token(spec):
    reply = requests.post(spec["extra"]["token_url"], json={
        "client_id": spec["login"], "client_secret": spec["password"],
        "audience": "https://api.meti.millpont.com", "grant_type": "client_credentials"})
    return reply.json()["access_token"]


@pytest.mark.meti(fault_rate=0.5)
def test_a_test_marker_merges_with_the_module_marker(meti_connection, meti_emulator):
    assert meti_connection.conn_id == "meti_prod"
    assert meti_connection.api_version == 2
    spec = json.loads(os.environ["AIRFLOW_CONN_METI_PROD"])
    assert spec["extra"]["api_version"] == 2
    assert "AIRFLOW_CONN_METI_DEFAULT" not in os.environ
    assert meti_emulator.stats()["fault_plan"]["rate"] == 0.5
    assert meti_emulator.emulator.modes.reply_shape == "2024"


class TestThreeLevels:
    pytestmark = pytest.mark.meti(conn_id="meti_class", seed=3)

    @pytest.mark.meti(api_version=1)
    def test_the_closest_wins_key_by_key(self, meti_connection, meti_emulator):
        assert meti_connection.conn_id == "meti_class"
        assert meti_connection.api_version == 1
        assert meti_emulator.emulator.modes.reply_shape == "2024"


@pytest.mark.meti(sandbox=True)
def test_the_sandbox_from_the_marker(meti_connection, meti_emulator):
    spec = meti_connection.spec
    assert spec["extra"]["sandbox"] is True
    headers = {"Authorization": "Bearer " + v2_token(spec)}
    feature = {"type": "Feature", "id": "F1",
               "properties": {"start_at": "2025-01-01T00:00:00Z", "end_at": "2026-01-01T00:00:00Z"},
               "geometry": {"type": "Polygon", "coordinates": [[[-95.99, 32.77], [-95.98, 32.77],
                            [-95.98, 32.78], [-95.99, 32.78], [-95.99, 32.77]]]}}
    body = {"feature_collection": {"type": "FeatureCollection", "features": [feature]}}
    reply = requests.post(spec["host"] + "/sandbox/sources", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    assert reply.json()[0]["id"].startswith("sandbox_")
    assert [s["alt_id"] for s in meti_emulator.sources()] == ["F1"]
    assert meti_emulator.emulator.ledger.count() == 0


@pytest.mark.meti(shared=True, max_page_size=2, list_envelope="data", envelope_extras=["total"])
def test_modes_on_the_shared_emulator(meti_emulator):
    assert meti_emulator.emulator.modes.max_page_size == 2
    assert meti_emulator.emulator.list_envelope == "data"


def test_the_shared_emulator_is_back_to_its_defaults(meti_emulator_session):
    assert meti_emulator_session.emulator.modes.max_page_size is None
    assert meti_emulator_session.emulator.list_envelope is None
"""


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory) -> Path:
    """An Airflow metadata database, migrated once: ``dag.test()`` needs one."""
    home = tmp_path_factory.mktemp("airflow-template")
    airflow = str(Path(sys.executable).with_name("airflow"))
    result = subprocess.run(
        [airflow, "db", "migrate"],
        env=_child_environment(home),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return home / "airflow.db"


@pytest.fixture
def user_project(tmp_path) -> Path:
    """A user's project: ``dags/register_fields.py``, ``pytest.ini`` and an empty ``tests/``."""
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "register_fields.py").write_text(DAG_FILE)
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    (tmp_path / "tests").mkdir()
    (tmp_path / "airflow_home").mkdir()
    return tmp_path


def _child_environment(airflow_home: Path, dags_folder: Path | None = None) -> dict[str, str]:
    """This environment without Airflow's or pytest's settings, plus the project's own."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "PYTEST_"))
    }
    env["AIRFLOW_HOME"] = str(airflow_home)
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    if dags_folder is not None:
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags_folder)
    return env


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=project,
        env=_child_environment(project / "airflow_home", project / "dags"),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    print(result.stdout[-5000:], result.stderr[-3000:])
    return result


def write_user_tests(project: Path, body: str, migrated_db: Path | None = None) -> None:
    (project / "tests" / "test_register_fields.py").write_text(USER_TEST_HEADER + body)
    if migrated_db is not None:
        shutil.copy(migrated_db, project / "airflow_home" / "airflow.db")


def saved_stats(project: Path, name: str) -> dict:
    return json.loads((project / "tests" / f"{name}.stats.json").read_text())


# --- a user's DAG test -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_users_dag_runs_against_the_emulator_with_only_meti_connection(user_project, migrated_db):
    write_user_tests(user_project, PLAIN_TEST, migrated_db)

    result = run_pytest(user_project)

    assert result.returncode == 0
    assert "1 passed" in result.stdout
    stats = saved_stats(user_project, "plain")
    assert stats["sources_created"] == 3
    assert stats["requests"]["POST /token"] == 1
    assert stats["requests"]["GET /sources/"] >= 1  # the sensor (v1 reads /sources/?id=)
    assert stats["faults"] == {}


@pytest.mark.slow
def test_a_fault_plan_from_the_marker_is_injected_and_the_dag_still_succeeds(
    user_project, migrated_db
):
    write_user_tests(user_project, FAULTY_TEST, migrated_db)

    result = run_pytest(user_project)

    assert result.returncode == 0
    assert "1 passed" in result.stdout
    stats = saved_stats(user_project, "faulty")
    assert stats["fault_plan"]["rate"] == 0.5
    assert sum(stats["faults"].values()) > 0
    assert set(stats["faults"]) <= {"503", "drop"}
    assert stats["requests"]["POST /oauth/token"] >= 1  # API v2, as the marker asked
    assert stats["sources_stored"] == 3


@pytest.mark.slow
def test_a_failing_dag_fails_the_users_test(user_project, migrated_db):
    # Every request to /sources fails and the connection allows no retry.
    body = """
@pytest.mark.meti(fault_rate=1.0, fault_kinds=["503"], extra={"max_retries": 0})
def test_registers_every_field(meti_connection):
    assert dag.test().state == "success"
"""
    write_user_tests(user_project, body, migrated_db)

    result = run_pytest(user_project)

    assert result.returncode == 1
    assert "1 failed" in result.stdout


def test_pytest_fixtures_lists_the_fixtures_with_their_docstrings(user_project):
    write_user_tests(user_project, PLAIN_TEST)

    result = run_pytest(user_project, "--fixtures", "-v")

    assert result.returncode == 0
    listing = result.stdout
    assert "fixtures defined from airflow_provider_meti.testing.pytest_plugin" in listing
    for name, first_line in [
        ("meti_emulator", "A METI API emulator (v1 and v2) on a free port of 127.0.0.1"),
        ("meti_emulator_session [session scope]", "One METI emulator for the whole test"),
        ("meti_connection", "An Airflow connection to ``meti_emulator``"),
    ]:
        assert name in listing
        assert first_line in listing
    assert "@pytest.mark.meti(fault_rate=0.2" in listing  # meti_emulator's example
    assert '@pytest.mark.parametrize("meti_connection", [1, 2], indirect=True)' in listing


# --- the fixtures themselves, without Airflow ------------------------------------------------


def test_the_fixtures_keep_their_promises_over_http(user_project):
    (user_project / "tests" / "test_fixtures.py").write_text(FIXTURE_TESTS)

    result = run_pytest(user_project)

    assert result.returncode == 0
    assert "11 passed" in result.stdout


def test_markers_merge_closest_first_and_set_the_sandbox_and_modes(user_project):
    (user_project / "tests" / "test_markers.py").write_text(MARKER_TESTS)

    result = run_pytest(user_project)

    assert result.returncode == 0
    assert "5 passed" in result.stdout


def test_a_misspelt_marker_setting_fails_the_test_and_names_it(user_project):
    (user_project / "tests" / "test_typo.py").write_text(
        "import pytest\n\n\n"
        "@pytest.mark.meti(api_versoin=2)\n"
        "def test_x(meti_connection):\n"
        "    pass\n"
    )

    result = run_pytest(user_project)

    assert result.returncode == 1
    assert "meti marker: unknown setting(s) api_versoin" in result.stdout


def test_the_marker_is_declared_for_strict_markers(user_project):
    result = run_pytest(user_project, "--markers")

    assert result.returncode == 0
    assert "@pytest.mark.meti(api_version=1, conn_id='meti_default'" in result.stdout


# --- cost for runs that do not use it ----------------------------------------------------------


def test_a_run_that_uses_no_fixture_imports_neither_airflow_nor_the_emulator(user_project):
    (user_project / "tests" / "test_plain.py").write_text(
        "import sys\n\n\n"
        "def test_nothing_of_meti_was_imported():\n"
        "    loaded = [m for m in sys.modules if m.split('.')[0] == 'airflow'\n"
        "              or m.startswith(('airflow_provider_meti.emulator',\n"
        "                               'airflow_provider_meti.testing.emulator'))]\n"
        "    assert loaded == []\n"
        "    assert 'airflow_provider_meti.testing.pytest_plugin' in sys.modules\n"
    )

    result = run_pytest(user_project)

    assert result.returncode == 0
    assert "1 passed" in result.stdout
    assert "airflow-provider-meti" in result.stdout  # pytest's "plugins:" header line


def test_importing_the_plugin_imports_only_itself():
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_meti.testing.pytest_plugin\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    new_modules = json.loads(result.stdout)
    ours = [m for m in new_modules if m.split(".")[0] in ("airflow", "airflow_provider_meti")]
    assert ours == [
        "airflow_provider_meti",
        "airflow_provider_meti.testing",
        "airflow_provider_meti.testing.pytest_plugin",
    ]
