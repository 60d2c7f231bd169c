"""Many triggers on one event loop, in a fresh process, for section 7.

``python -m benchmarks.trigger_worker VARIANT BASE_URL TRIGGERS POLL_INTERVAL SECONDS
LATENCY RESULT``. Starts ``TRIGGERS`` triggers of one variant (see ``VARIANTS``) on one
event loop, their first checks spread over one poll interval as on a triggerer that has been
running for a while, lets them settle for one interval and measures for ``SECONDS``:

- every check's end, hence its lateness: when it ended, minus when it would have ended had
  it started on schedule (the previous check's end plus the poll interval) and taken only
  the server's ``LATENCY``;
- the loop's stalls: a ticker that sleeps 10 ms and records how late it wakes up, and how
  much of that was the garbage collector's (timed by ``gc.callbacks``);
- live threads (sampled by the ticker), resident memory (``VmRSS`` before the triggers,
  ``VmHWM`` after), and the process's CPU time.

Writes the figures as JSON to ``RESULT``. Every variant polls a source that does not exist
(404 each time), so none of them ever fires and every check is one ``GET``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from benchmarks.airflow_env import define_http_connection, define_meti_connection
from benchmarks.emulator_process import EMAIL, PASSWORD
from benchmarks.extract_worker import _memory_kib, _reset_peak_rss

MISSING_ID = "src_0000000000000"
TICK_S = 0.01


class CheckLog:
    """Ends of checks, per trigger, and the lateness of each against its schedule."""

    def __init__(self, poll_interval: float, latency: float) -> None:
        self.poll_interval = poll_interval
        self.latency = latency
        self.window: tuple[float, float] = (float("inf"), float("inf"))
        self.lateness: list[float] = []
        self.checks = 0
        self.errors = 0

    def timed(self, scheduled: float) -> Callable[[], float]:
        """Call the returned function when the check ends; it returns the next schedule."""

        def ended() -> float:
            now = time.monotonic()
            if self.window[0] <= now < self.window[1]:
                self.checks += 1
                self.lateness.append(now - scheduled - self.latency)
            return now + self.poll_interval

        return ended


def _provider_trigger(log: CheckLog, start: float) -> Any:
    """The provider's ``MetiSourceTrigger``, its checks timed."""
    from airflow_provider_meti.triggers.meti import MetiSourceTrigger

    class TimedTrigger(MetiSourceTrigger):
        scheduled = start

        async def _check(self, client: Any) -> dict[str, Any] | None:
            ended = log.timed(self.scheduled)
            try:
                return await super()._check(client)
            finally:
                self.scheduled = ended()

    return TimedTrigger


def _baseline_trigger(log: CheckLog, start: float) -> Any:
    """The trigger as it was before the asyncio client: the blocking client in a thread.

    Kept here, not in the library: ``check_source(client.get_source, ...)`` in
    ``asyncio.to_thread`` with the process-wide sync ``MetiClient``.
    """
    from airflow_provider_meti._compat import aget_connection, to_thread
    from airflow_provider_meti.conditions import check_source
    from airflow_provider_meti.exceptions import MetiApiError, MetiError
    from airflow_provider_meti.hooks.meti import client_from_connection
    from airflow_provider_meti.retries import is_retryable
    from airflow_provider_meti.triggers.meti import MetiSourceTrigger

    class ThreadedTrigger(MetiSourceTrigger):
        scheduled = start

        async def run(self) -> AsyncIterator[Any]:
            from airflow_provider_meti._compat import TriggerEvent

            connection = await aget_connection(self.meti_conn_id)
            client = await to_thread(client_from_connection, connection)
            yield TriggerEvent(await self._poll(client))

        async def _check(self, client: Any) -> dict[str, Any] | None:
            ended = log.timed(self.scheduled)
            try:
                done, source = await to_thread(
                    check_source, client.get_source, self.source_id, self.wait_for
                )
            except MetiApiError as error:
                if not is_retryable(error):
                    return self._error(error)
                return None
            except MetiError as error:
                return self._error(error)
            finally:
                self.scheduled = ended()
            return self._success(source) if done else None

    return ThreadedTrigger


def _peer_trigger(log: CheckLog, start: float, token: str) -> Callable[..., Any]:
    """The HTTP provider's ``HttpSensorTrigger`` on the same endpoint, its checks timed."""
    from airflow.providers.http.triggers.http import HttpSensorTrigger

    class TimedHook:
        def __init__(self, hook: Any, scheduled: float) -> None:
            self.hook = hook
            self.scheduled = scheduled

        async def run(self, *args: Any, **kwargs: Any) -> Any:
            ended = log.timed(self.scheduled)
            try:
                return await self.hook.run(*args, **kwargs)
            finally:
                self.scheduled = ended()

    class TimedHttpSensorTrigger(HttpSensorTrigger):
        scheduled = start

        def _get_async_hook(self) -> Any:
            return TimedHook(super()._get_async_hook(), self.scheduled)

    def make(**_: Any) -> Any:
        return TimedHttpSensorTrigger(
            endpoint="/sources/",
            http_conn_id="meti_http_peer",
            method="GET",
            data={"id": MISSING_ID},
            headers={"Authorization": f"Bearer {token}"},
            poke_interval=log.poll_interval,
        )

    return make


class _LimitTrigger:
    """The limit: the same check with bare aiohttp, nothing else.

    One ``aiohttp.ClientSession`` (one connector, as large as the provider's pool) shared by
    every trigger of the process, the token fetched once before they start, then per
    trigger: ``GET /sources/?id=``, 404 means "not yet", sleep the poll interval. No
    retries, no token renewal, no Airflow connection lookup.
    """

    def __init__(self, log: CheckLog, session: Any, url: str, headers: dict[str, str]) -> None:
        self.log = log
        self.session = session
        self.url = url
        self.headers = headers
        self.scheduled = 0.0

    async def run(self) -> AsyncIterator[dict[str, Any]]:
        params = {"id": MISSING_ID}
        while True:
            ended = self.log.timed(self.scheduled)
            try:
                async with self.session.get(self.url, params=params, headers=self.headers) as r:
                    body = await r.read()  # read to the end, so the connection is reused
                    status = r.status
            except Exception as error:  # the check's only other outcome: report it
                body, status = repr(error).encode(), 0
            finally:
                self.scheduled = ended()
            if status == 0:
                yield {"status": "error", "message": body.decode()}
                return
            if status == 200:
                yield {"status": "success", "source": json.loads(body)}
                return
            if status != 404:
                yield {"status": "error", "message": f"HTTP {status}"}
                return
            await asyncio.sleep(self.log.poll_interval)


async def _limit_session(base_url: str) -> tuple[Any, dict[str, str]]:
    """The limit's one session, and its bearer header from one ``POST /token``."""
    import aiohttp

    from airflow_provider_meti.aio.session import MAX_CONNECTIONS

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=30),
        trust_env=False,
    )
    body = {"email": EMAIL, "password": PASSWORD}
    async with session.post(f"{base_url}/token", json=body) as reply:
        reply.raise_for_status()
        token = (await reply.json())["token"]
    return session, {"Authorization": f"Bearer {token}"}


def _peer_token(base_url: str) -> str:
    import requests

    reply = requests.post(
        f"{base_url}/token", json={"email": EMAIL, "password": PASSWORD}, timeout=30
    )
    reply.raise_for_status()
    return str(reply.json()["token"])


class GcClock:
    """Seconds this process has spent in the garbage collector, and its longest pause."""

    def __init__(self) -> None:
        self.total = 0.0
        self.longest_full = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.total += pause
        if info["generation"] == 2:
            self.longest_full = max(self.longest_full, pause)


async def _ticker(
    stop: asyncio.Event, figures: dict[str, Any], window: tuple[float, float], gc_clock: GcClock
):
    """Measures the loop's stalls and the live threads until ``stop`` is set."""
    while not stop.is_set():
        before, gc_before = time.monotonic(), gc_clock.total
        await asyncio.sleep(TICK_S)
        now = time.monotonic()
        if window[0] <= now < window[1]:
            stall = now - before - TICK_S
            outside_gc = stall - (gc_clock.total - gc_before)
            figures["stall_max_s"] = max(figures["stall_max_s"], stall)
            figures["stall_outside_gc_max_s"] = max(figures["stall_outside_gc_max_s"], outside_gc)
            figures["threads_peak"] = max(figures["threads_peak"], threading.active_count())


async def _run_trigger(trigger: Any, delay: float, log: CheckLog) -> None:
    await asyncio.sleep(delay)
    async for event in trigger.run():  # none is expected: the source never appears
        log.errors += 1
        print(f"[trigger_worker] unexpected event: {event}", file=sys.stderr)


async def measure(
    variant: str, base_url: str, triggers: int, poll_interval: float, seconds: float, latency: float
) -> dict[str, Any]:
    log = CheckLog(poll_interval, latency)
    started = time.monotonic()
    limit_session = None
    if variant == "limit":
        limit_session, headers = await _limit_session(base_url)
        url = f"{base_url}/sources/"

        def make(**_: Any) -> Any:
            return _LimitTrigger(log, limit_session, url, headers)

    elif variant == "peer":
        define_http_connection(base_url)
        make = _peer_trigger(log, started, _peer_token(base_url))
    else:
        conn_id = define_meti_connection(base_url)
        cls = (_provider_trigger if variant == "provider" else _baseline_trigger)(log, started)

        def make(**_: Any) -> Any:
            return cls(conn_id, MISSING_ID, "exists", poll_interval, None)

    figures: dict[str, Any] = {
        "stall_max_s": 0.0,
        "stall_outside_gc_max_s": 0.0,
        "threads_peak": threading.active_count(),
    }
    gc_clock = GcClock()
    threads_before = threading.active_count()
    heap_objects = len(gc.get_objects())
    rss_before = _memory_kib("VmRSS")
    _reset_peak_rss()
    cpu_before = time.process_time()

    # Started over one poll interval, as on a triggerer that has been up for a while; their
    # first schedule is when they start.
    rng = random.Random(7)
    delays = [rng.uniform(0, poll_interval) for _ in range(triggers)]
    settle = poll_interval + 2 * latency + 1.0
    window = (started + settle, started + settle + seconds)
    log.window = window
    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(stop, figures, window, gc_clock))
    gc.callbacks.append(gc_clock)
    tasks = []
    for delay in delays:
        trigger = make()
        trigger.scheduled = started + delay
        tasks.append(asyncio.create_task(_run_trigger(trigger, delay, log)))
    await asyncio.sleep(window[1] - time.monotonic())
    cpu = time.process_time() - cpu_before
    rss_peak = _memory_kib("VmHWM")
    gc.callbacks.remove(gc_clock)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, ticker, return_exceptions=True)
    if limit_session is not None:
        await limit_session.close()

    lateness = sorted(log.lateness)

    def percentile(share: float) -> float:
        return lateness[min(len(lateness) - 1, int(share * len(lateness)))] if lateness else 0.0

    return {
        "variant": variant,
        "triggers": triggers,
        "poll_interval": poll_interval,
        "seconds": seconds,
        "checks": log.checks,
        "checks_per_s": log.checks / seconds,
        "lateness_p50_s": percentile(0.50),
        "lateness_p99_s": percentile(0.99),
        "lateness_max_s": lateness[-1] if lateness else 0.0,
        "stall_max_s": figures["stall_max_s"],
        "stall_outside_gc_max_s": figures["stall_outside_gc_max_s"],
        "gc_full_pause_max_s": gc_clock.longest_full,
        "heap_objects_before": heap_objects,
        "threads_before": threads_before,
        "threads_peak": figures["threads_peak"],
        "rss_before_kib": rss_before,
        "rss_peak_kib": rss_peak,
        "cpu_s": cpu,
        "unexpected_events": log.errors,
    }


def main(argv: list[str]) -> int:
    variant, base_url, triggers, poll_interval, seconds, latency, result = argv
    from benchmarks.airflow_env import quiet_task_logs

    quiet_task_logs()
    figures = asyncio.run(
        measure(
            variant, base_url, int(triggers), float(poll_interval), float(seconds), float(latency)
        )
    )
    Path(result).write_text(json.dumps(figures), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
