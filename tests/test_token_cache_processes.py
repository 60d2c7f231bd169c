"""Task processes of one host share one token, over real HTTP to the emulator.

Each worker below is a process of its own with a fresh ``MetiHook``, as Airflow runs every
task; they inherit the test's ``AIRFLOW_CONN_METI_DEFAULT`` and its cache folder
(``XDG_CACHE_HOME``, see ``conftest.private_token_cache``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api_versions import SECRETS, v1_only
from tests.test_token_cache import start_lock_holder

WORKER = """
import sys
from airflow_provider_meti.hooks.meti import MetiHook

hook = MetiHook("meti_default")
print("ready", flush=True)
sys.stdin.readline()  # every worker starts its calls at once
for _ in range(int(sys.argv[1])):
    next(iter(hook.iter_source_pages(page_size=1)), None)
print("done", flush=True)
"""


def run_workers(count: int, calls: int = 3) -> None:
    """``count`` task processes, released together, each making ``calls`` listing calls."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(calls)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        for worker in workers:
            _, errors = worker.communicate(timeout=120)
            assert worker.returncode == 0, errors
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(30)


@pytest.fixture
def issued_tokens(emulator, monkeypatch) -> list[str]:
    """Every token the emulator issues during the test."""
    issued: list[str] = []
    issue = emulator.state.tokens.issue

    def recording_issue(*args, **kwargs) -> str:
        token = issue(*args, **kwargs)
        issued.append(token)
        return token

    monkeypatch.setattr(emulator.state.tokens, "issue", recording_issue)
    return issued


def token_requests(emulator) -> int:
    return int(emulator.stats()["token_requests"])


def test_task_processes_started_together_ask_for_one_token(emulator, meti_connection):
    run_workers(3)

    assert token_requests(emulator) == 1


def test_after_every_token_is_revoked_the_processes_renew_once(emulator, meti_connection):
    run_workers(2)
    emulator.expire_all_tokens()
    responses_before = emulator.stats()["responses"].get("401", 0)

    run_workers(3)

    assert token_requests(emulator) == 2
    # Every new process tried the stored token first, and one renewal served them all.
    assert emulator.stats()["responses"].get("401", 0) - responses_before >= 1


@v1_only
def test_with_the_cache_off_each_process_asks_for_its_own(emulator, meti_connection):
    meti_connection(extra={"token_cache": False})
    run_workers(3)

    assert token_requests(emulator) == 3


@v1_only
def test_a_token_cache_dir_of_the_connection_is_where_tokens_are_kept(
    emulator, meti_connection, tmp_path, private_token_cache
):
    folder = tmp_path / "tokens"
    meti_connection(extra={"token_cache_dir": str(folder)})
    run_workers(2)

    assert token_requests(emulator) == 1
    assert len(list(folder.glob("*.token"))) == 1
    assert not private_token_cache.exists()


@v1_only
def test_another_password_for_the_same_login_never_uses_the_stored_token(
    emulator, meti_connection, meti_api_version
):
    from tests.api_versions import add_credentials

    run_workers(2)
    spec = meti_connection()
    login = spec["login"]
    # The same login with a second valid secret (e.g. during a rotation): its own token.
    add_credentials(emulator, meti_api_version, login, "a-second-valid-secret")
    meti_connection(password="a-second-valid-secret")
    run_workers(2)

    assert token_requests(emulator) == 2
    folder = Path(os.environ["XDG_CACHE_HOME"]) / "airflow-provider-meti"
    assert len(list(folder.glob("*.token"))) == 2


@v1_only
def test_test_connection_asks_for_a_token_even_when_one_is_stored(emulator, meti_connection):
    from airflow_provider_meti.hooks.meti import MetiHook

    run_workers(1)
    assert token_requests(emulator) == 1

    ok, message = MetiHook("meti_default").test_connection()

    assert ok, message
    assert token_requests(emulator) == 2


@v1_only
def test_a_token_read_from_the_cache_is_registered_with_the_masker_once(
    emulator, meti_connection, monkeypatch
):
    from airflow_provider_meti.hooks import meti as meti_hooks

    run_workers(1)
    masked: list[str] = []
    monkeypatch.setattr(meti_hooks, "mask_secret", masked.append)

    hook = meti_hooks.MetiHook("meti_default")
    first, second = hook.get_token(), hook.get_token()

    assert token_requests(emulator) == 1, "the token was not read from the cache"
    assert masked == [first] and first == second


@v1_only
def test_nothing_secret_is_written_to_the_cache_folder(emulator, meti_connection, issued_tokens):
    run_workers(2)
    folder = Path(os.environ["XDG_CACHE_HOME"]) / "airflow-provider-meti"
    spec = meti_connection()
    files = list(folder.iterdir())
    assert files

    for path in files:
        raw = path.read_bytes()
        for secret in {*SECRETS, spec["password"], spec["login"]}:
            assert secret not in path.name
            assert secret.encode() not in raw
        assert issued_tokens
        for issued in issued_tokens:
            assert issued not in path.name and issued.encode() not in raw


@pytest.mark.parametrize("meti_api_version", [2], ids=["v2"], indirect=True)
def test_the_triggerer_s_async_client_shares_the_workers_token(
    emulator, meti_connection, issued_tokens
):
    import asyncio

    from airflow_provider_meti.aio.shared import shared_client
    from airflow_provider_meti.connection import settings_from_connection
    from airflow_provider_meti.hooks.meti import MetiHook

    run_workers(2)
    parts = settings_from_connection(MetiHook.get_connection("meti_default"))

    async def token() -> str:
        async with shared_client("meti_default", parts) as client:
            return await client.get_token()

    value = asyncio.run(token())

    assert token_requests(emulator) == 1
    assert issued_tokens == [value]


@v1_only
def test_a_stuck_lock_holder_leaves_the_call_time_to_fetch_a_token_of_its_own(
    emulator, meti_connection
):
    """Another process holds the host lock and never lets go (stopped, hung): the call
    waits for at most half its budget, then asks METI itself instead of failing."""
    from airflow_provider_meti.hooks.meti import MetiHook, client_settings_from_connection

    meti_connection(extra={"max_retry_time": 2, "timeout": 1})
    parts = client_settings_from_connection(MetiHook.get_connection("meti_default"))
    cache = parts.host_token_cache()
    assert cache is not None
    cache.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    holder = start_lock_holder(cache.path.with_suffix(".lock"))
    try:
        token = MetiHook("meti_default").get_token()
    finally:
        holder.kill()
        holder.wait(30)

    assert token and token_requests(emulator) == 1
    assert not list(cache.path.parent.glob("*.token")), "stored without holding the lock"
