"""AsyncTransport: one authenticated request to METI from a coroutine.

The asyncio twin of ``transport.Transport``, built from the same parts: the token request
body and its parsing (``auth``), the retry budget (``retries.AsyncCallBudget``), the error
and JSON readers (``transport.raise_for_reply``, ``transport.json_body``, ``_http``). What is its
own: sending through aiohttp, and turning aiohttp's failures into ``MetiError``s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from airflow_provider_meti._http import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    ReadReply,
    check_base_url,
    join_url,
    redirect_refusal,
)
from airflow_provider_meti._http import redact as redact_secrets
from airflow_provider_meti.aio.session import new_session, proxy_for
from airflow_provider_meti.aio.tokens import AsyncTokenManager
from airflow_provider_meti.auth import IssuedToken, TokenSource, token_payload
from airflow_provider_meti.exceptions import MetiApiError, MetiConnectionError
from airflow_provider_meti.retries import AsyncCallBudget
from airflow_provider_meti.settings import ClientSettings
from airflow_provider_meti.token_cache import HostTokenCache, lock_wait
from airflow_provider_meti.transport import json_body, raise_for_reply, request_name, retry_rule


class AsyncTransport:
    """Sends requests to one METI base URL with one account's token, from one event loop.

    The aiohttp session is opened on first use, in the loop that uses it; :meth:`close` it
    in that loop.

    :param settings: connection settings
    :param token_source: how to obtain tokens (see ``airflow_provider_meti.auth``)
    :param tokens: the token cache, shared with other transports of the same connection
    :param host_cache: the token shared by this host's processes (None: this process's own)
    :param clock: a monotonic clock for retry deadlines
    :param sleep: awaits the waits between retries (default ``asyncio.sleep``)
    """

    def __init__(
        self,
        settings: ClientSettings,
        token_source: TokenSource,
        tokens: AsyncTokenManager,
        *,
        host_cache: HostTokenCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        check_base_url(settings.base_url, allow_insecure_http=settings.allow_insecure_http)
        self.settings = settings
        self._token_source = token_source
        self._tokens = tokens
        self._host_cache = host_cache
        self._clock = clock
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}

    async def close(self) -> None:
        """Close pooled connections (requests still in flight fail)."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def new_budget(self) -> AsyncCallBudget:
        """A fresh retry budget for one call."""
        return self.settings.retry.async_budget(clock=self._clock, sleep=self._sleep)

    async def token(self, budget: AsyncCallBudget) -> str:
        """A valid token; a renewal, and the wait for another coroutine's, count against
        ``budget``."""
        return await self._tokens.get(
            lambda: self._fetch_token(budget), wait=budget.wait_limit(self.settings.timeout)
        )

    async def _fetch_token(self, budget: AsyncCallBudget) -> IssuedToken:
        url = self._token_source.token_url
        name = f"POST {url}"

        async def ask_endpoint() -> IssuedToken:
            issued: IssuedToken = await budget.run(
                name, lambda: self._post_token(url, name, budget)
            )
            return issued

        if self._host_cache is None:
            return await ask_endpoint()
        return await self._host_cache.aobtain(
            ask_endpoint, wait=lock_wait(budget.remaining(), self.settings.timeout)
        )

    async def _post_token(self, url: str, name: str, budget: AsyncCallBudget) -> IssuedToken:
        budget.admit(name)
        # The body goes straight into the call: never a local that a traceback could show.
        reply = await self._exchange(
            "POST",
            url,
            "POST",
            urlsplit(url).path or "/",
            self._request_timeout(),
            json=self._token_source.request_body(),
        )
        payload = token_payload(reply.status, reply, url, self._token_source.secrets)
        return self._token_source.issued_token(payload)

    async def request(
        self,
        method: str,
        endpoint: str,
        budget: AsyncCallBudget,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send a request, retried within ``budget``; return its parsed JSON body.

        Idempotent methods are retried on every retryable failure; POST and PATCH only when
        the server cannot have acted on them (connection refused, 429, 503).
        """
        method = method.upper()
        reply = await budget.run(
            request_name(method, endpoint, params),
            lambda: self.send(method, endpoint, budget, params=params, json=json),
            retry_if=retry_rule(method),
        )
        return json_body(reply, reply.status, method, endpoint, self._redacted)

    async def send(
        self,
        method: str,
        endpoint: str,
        budget: AsyncCallBudget,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> ReadReply:
        """One request with a bearer token, not retried; on 401, one renewal and one replay.

        The replay and the renewal pass ``budget`` like any request: a replay is one more
        sending of the same request.
        """
        name = request_name(method, endpoint, params)
        token = await self.token(budget)
        reply = await self._send_once(method, endpoint, token, params, json, budget, name)
        if reply.status == 401:
            self._tokens.invalidate(token)
            if self._host_cache is not None:
                self._host_cache.refuse(token)
            with budget.replaying():
                token = await self.token(budget)
                reply = await self._send_once(method, endpoint, token, params, json, budget, name)
        raise_for_reply(reply, reply.status, method, endpoint, self._redacted)
        return reply

    async def _send_once(
        self,
        method: str,
        endpoint: str,
        token: str,
        params: Mapping[str, Any] | None,
        json: Any,
        budget: AsyncCallBudget,
        name: str,
    ) -> ReadReply:
        budget.admit(name)
        # One timeout for the request and the redirects it follows.
        ends = time.monotonic() + self.settings.timeout
        url = join_url(self.settings.base_url, endpoint)
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(MAX_REDIRECTS + 1):
            timeout = self._request_timeout(ends - time.monotonic())
            reply = await self._exchange(
                method, url, method, endpoint, timeout, params=params, json=json, headers=headers
            )
            location = reply.headers.get("Location")
            if reply.status not in REDIRECT_STATUSES or not location:
                return reply
            url = self._redirect_target(url, location, reply.status, method, endpoint)
            params = None  # the Location carries the query
            if reply.status in (301, 302, 303) and method != "HEAD":
                method, json = "GET", None  # what browsers and requests do
        raise MetiApiError(
            f"request failed: more than {MAX_REDIRECTS} redirects", method=method, path=endpoint
        )

    def _request_timeout(self, seconds: float | None = None) -> aiohttp.ClientTimeout:
        """``seconds`` (default ``timeout``) for the whole exchange: connecting, the headers
        and the body."""
        total = self.settings.timeout if seconds is None else max(seconds, 0.001)
        return aiohttp.ClientTimeout(total=total, sock_connect=self.settings.timeout)

    @staticmethod
    def _redirect_target(url: str, location: str, status: int, method: str, path: str) -> str:
        """Where a redirect leads, if it stays within the origin (as the sync transport)."""
        target = urljoin(url, location)
        refusal = redirect_refusal(url, target, status)
        if refusal is not None:
            raise MetiApiError(refusal, method=method, path=path.split("?")[0])
        return target

    async def _exchange(
        self,
        method: str,
        url: str,
        shown_method: str,
        shown_path: str,
        timeout: aiohttp.ClientTimeout,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> ReadReply:
        """Send once, read the whole reply within ``timeout``; aiohttp's failures become
        ``MetiError``s."""
        session = self._session_in_loop()
        path = shown_path.split("?")[0]
        try:
            async with session.request(
                method,
                url,
                params=_query(params),
                json=json,
                headers=headers,
                allow_redirects=False,
                proxy=self._proxy_for(url),
                timeout=timeout,
            ) as response:
                content = await response.read()
                return ReadReply(response.status, response.headers, content, response.charset)
        except aiohttp.ConnectionTimeoutError:
            raise MetiConnectionError(
                f"timed out connecting after {self.settings.timeout} s",
                method=shown_method,
                path=path,
                request_sent=False,
            ) from None
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError):
            raise MetiConnectionError(
                f"no complete response within {self.settings.timeout} s",
                method=shown_method,
                path=path,
                request_sent=True,
            ) from None
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as error:
            raise MetiApiError(
                f"TLS verification failed: {_cause(error)}", method=shown_method, path=path
            ) from None
        except aiohttp.ClientConnectorError as error:
            raise MetiConnectionError(
                f"connection failed: {_cause(error)}",
                method=shown_method,
                path=path,
                request_sent=False,
            ) from None
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientResponseError,
        ) as error:
            # The request left, and the answer broke off, never came or was not HTTP.
            raise MetiConnectionError(
                f"the response could not be read: {_cause(error)}",
                method=shown_method,
                path=path,
                request_sent=True,
            ) from None
        except aiohttp.ClientError as error:
            raise MetiApiError(
                f"request failed: {_cause(error)}", method=shown_method, path=path
            ) from None

    def _session_in_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            urls = (self.settings.base_url, self._token_source.token_url)
            self._session = new_session(self.settings, urls)
        return self._session

    def _proxy_for(self, url: str) -> str | None:
        key = "/".join(url.split("/", 3)[:3])
        if key not in self._proxies:
            self._proxies[key] = proxy_for(key)
        return self._proxies[key]

    def _redacted(self, text: str) -> str:
        secrets = (*self._token_source.secrets(), *self._tokens.recent())
        return redact_secrets(text, secrets)


def _query(params: Mapping[str, Any] | None) -> list[tuple[str, str]] | None:
    """Query parameters as requests would send them; aiohttp refuses booleans and None."""
    if not params:
        return None
    query = []
    for key, value in params.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        query += [(key, str(item)) for item in values if item is not None]
    return query


def _cause(error: BaseException) -> str:
    """The error's type and text, without aiohttp's repetition of the URL."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
