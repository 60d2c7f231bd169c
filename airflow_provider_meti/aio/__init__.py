"""The asyncio client for the trigger path: one set of rules, a second transport.

``MetiSourceTrigger`` checks sources with :class:`~airflow_provider_meti.aio.client.AsyncMetiClient`
on the triggerer's event loop: no thread per check, and cancelling the trigger cancels its
request. Routes come from ``api.py``, token requests and their parsing from ``auth.py``,
retry classification, backoff, ``Retry-After`` and the deadline from ``retries.py``, reply
reading from ``replies.py`` and ``_http.py``: only sending differs.

Why aiohttp and not httpx. Both are installed wherever Airflow is (httpx by Airflow itself,
aiohttp by the HTTP provider and, on 3.x, not always: so it is a dependency of this package).
Measured on a 2-core machine, 400 concurrent pollers through one shared
``httpx.AsyncClient`` (httpcore 1.0) reached 25-30 % of the ideal check rate, CPU-bound in
httpcore's connection-pool scheduling; through one ``aiohttp.ClientSession`` they reached
88-100 %. A triggerer holding thousands of waits needs the latter.
"""
