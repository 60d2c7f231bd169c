"""The aiohttp session one connection's triggers share, and what it takes from the environment.

Set up to behave like the ``requests`` session of the sync client: the same CA bundle
(certifi's, or ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, unless the connection names one),
the same proxy variables, the same user agent, redirects and retries left to the transport.
"""

from __future__ import annotations

import functools
import os
import ssl
import urllib.request

import aiohttp

from airflow_provider_meti.settings import ClientSettings

# Enough for thousands of triggers polling one connection (at 300 ms a request, 512
# connections serve some 1,700 checks a second) and below the usual limit of 1,024 open files.
MAX_CONNECTIONS = 512
USER_AGENT = "airflow-provider-meti"


def new_session(settings: ClientSettings, urls: tuple[str, ...]) -> aiohttp.ClientSession:
    """A session for one connection: its own pool, TLS setting, timeouts and user agent.

    Call it inside the event loop that will use the session.

    :param settings: the connection's settings
    :param urls: every URL the session will call (the API's and the token endpoint's)
    """
    tls = tls_setting(settings, urls)
    connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=tls)
    # The sync client's timeout covers connecting and each read, not the whole exchange, and
    # not the wait for a free pooled connection either.
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=settings.timeout, sock_read=settings.timeout
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
        # Proxies are looked up by proxy_for(); trust_env would also read .netrc in a thread.
        trust_env=False,
        raise_for_status=False,
    )


def tls_setting(settings: ClientSettings, urls: tuple[str, ...]) -> ssl.SSLContext | bool:
    """False when verification is off; else a context trusting what requests would trust.

    Only built when one of ``urls`` is ``https://``: loading a CA bundle takes milliseconds
    of the event loop's time, so contexts are also kept per bundle for the process.
    """
    if settings.verify is False:
        return False
    if not any(url.startswith("https://") for url in urls):
        return True  # never used for plain http
    if isinstance(settings.verify, str):
        return _context_for(settings.verify)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return _context_for(bundle or _certifi_bundle())


@functools.lru_cache(maxsize=8)
def _context_for(ca_bundle: str) -> ssl.SSLContext:
    if os.path.isdir(ca_bundle):
        return ssl.create_default_context(capath=ca_bundle)
    return ssl.create_default_context(cafile=ca_bundle)


def _certifi_bundle() -> str:
    import certifi  # requests' own dependency, and its default bundle

    return str(certifi.where())


def proxy_for(origin: str) -> str | None:
    """The proxy for ``scheme://host[:port]`` from ``HTTP(S)_PROXY``/``NO_PROXY``, or None,
    as requests would choose it (the transport asks once per origin)."""
    scheme, _, host = origin.partition("://")
    if urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(scheme) or proxies.get("all")
