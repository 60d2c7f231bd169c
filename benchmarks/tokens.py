"""Section 2: how many tokens 10,000 calls from 8 threads ask for (expires_in = 3600)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from benchmarks import seed_snippet
from benchmarks.airflow_env import define_meti_connection
from benchmarks.emulator_process import EmulatorProcess
from benchmarks.measure import timed
from benchmarks.per_call import emulator_first_source
from benchmarks.results import Section, Table, Target
from benchmarks.sizes import Sizes


def _in_threads(threads: int, calls: int, call: Callable[[], Any]) -> None:
    """``calls`` calls spread over ``threads`` threads that start together."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(share: int) -> None:
        start.wait()
        try:
            for _ in range(share):
                call()
        except BaseException as error:  # reported after the join
            errors.append(error)

    shares = [calls // threads + (1 if i < calls % threads else 0) for i in range(threads)]
    workers = [threading.Thread(target=work, args=(share,)) for share in shares]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]


def _counts(emulator: EmulatorProcess) -> tuple[int, int]:
    stats = emulator.stats()
    gets = sum(v for k, v in stats["requests"].items() if k.startswith("GET /sources"))
    return stats["token_requests"], gets


def _count_tokens(
    emulator: EmulatorProcess, threads: int, calls: int, call: Callable[[str], Any]
) -> tuple[int, int, float]:
    """Token requests and GETs that the calls made (setup requests not counted), and wall s."""
    emulator.fresh(sources=10)  # no valid token anywhere
    source_id = emulator_first_source(emulator)
    tokens_before, gets_before = _counts(emulator)
    with timed() as timing:
        _in_threads(threads, calls, lambda: call(source_id))
    tokens_after, gets_after = _counts(emulator)
    return tokens_after - tokens_before, gets_after - gets_before, timing.wall


def run(emulator: EmulatorProcess, sizes: Sizes) -> Section:
    from airflow_provider_meti.hooks.meti import MetiHook

    threads = sizes.token_threads

    hook = MetiHook(define_meti_connection(emulator.url))
    provider = _count_tokens(emulator, threads, sizes.token_calls, hook.get_source)
    seed_snippet.configure(emulator.url)
    snippet = _count_tokens(emulator, threads, sizes.token_snippet_calls, seed_snippet.get_source)

    table = Table(["client", "calls", "threads", "token requests", "GET requests", "wall s"])
    for name, calls, (token_requests, gets, wall) in (
        ("provider: MetiHook.get_source", sizes.token_calls, provider),
        ("seed snippet (global token, no lock)", sizes.token_snippet_calls, snippet),
    ):
        table.rows.append(
            [name, f"{calls:,}", str(threads), str(token_requests), f"{gets:,}", f"{wall:.2f}"]
        )
    token_requests = provider[0]
    return Section(
        key="tokens",
        title="2. Token requests under threads",
        method=(
            f"One hook (one shared client) in a fresh connection; {sizes.token_calls:,} "
            f"`get_source` calls from {threads} threads that start together; the emulator "
            "issues tokens with `expires_in` = 3600 and counts `POST /token` "
            "(`token_requests` in `/_emulator/stats`; reset before each client, and the "
            "harness's own setup requests subtracted). The seed "
            "snippet runs the same way with fewer calls, to show its race on the first token."
        ),
        tables=[table],
        targets=[
            Target(
                f"2. token requests, {sizes.token_calls:,} calls from {threads} threads",
                "exactly 1",
                str(token_requests),
                token_requests == 1,
            )
        ],
        data={
            "provider_token_requests": token_requests,
            "snippet_token_requests": snippet[0],
        },
    )
