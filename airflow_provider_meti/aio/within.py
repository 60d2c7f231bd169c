"""within(): await a coroutine for at most some seconds, cancellation-safe on Python 3.11."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def within(awaited: Coroutine[Any, Any, T], seconds: float | None) -> tuple[bool, T | None]:
    """``(True, result)`` when ``awaited`` ends within ``seconds`` (None: however long it
    takes), else ``(False, None)`` after cancelling it.

    Not ``asyncio.wait_for``: before Python 3.12 it returns instead of raising when the
    caller is cancelled in the step ``awaited`` ends, and a cancelled trigger must stop.
    """
    task = asyncio.ensure_future(awaited)
    # ``seconds > 0`` is False for NaN too: no time, rather than a timer that never fires.
    timeout = None if seconds is None else (seconds if seconds > 0 else 0.0)
    try:
        ended, _ = await asyncio.wait({task}, timeout=timeout)
    finally:
        if not task.done():
            task.cancel()
            # Not ``await task``: a cancellation of the caller while the check unwinds would
            # go to the check, and suppressing the check's would swallow the caller's.
            await asyncio.wait({task})
    if not ended:
        if not task.cancelled():
            task.result()  # an error raised while it unwound surfaces; a late value is late
        return False, None
    return True, task.result()
