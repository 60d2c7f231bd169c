"""``MetiEmulator``: start, steer and stop a local METI API server from Python."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from airflow_provider_meti.emulator.credentials import ALL_SCOPES, DEFAULT_ACCOUNT
from airflow_provider_meti.emulator.faults import DEFAULT_KINDS, DEFAULT_PATHS, FaultPlan
from airflow_provider_meti.emulator.ledger import Ledger
from airflow_provider_meti.emulator.routes import OAUTH_TOKEN_PATH
from airflow_provider_meti.emulator.server import MetiHTTPServer
from airflow_provider_meti.emulator.state import (
    DEFAULT_AUDIENCE,
    ENVELOPE_EXTRAS,
    EmulatorState,
    ServerModes,
)

STOP_TIMEOUT_S = 5.0


def _normalised_base_path(path: str) -> str:
    """``"meti/api/"`` -> ``"/meti/api"``; empty stays empty."""
    stripped = path.strip("/")
    return f"/{stripped}" if stripped else ""


def _ledger_options(concurrent_conflicts: str | None, countries: Any) -> dict[str, Any]:
    """Only the options given, so the ledger's own defaults hold otherwise."""
    options: dict[str, Any] = {}
    if concurrent_conflicts is not None:
        options["concurrent_conflicts"] = concurrent_conflicts
    if countries is not None:
        options["countries"] = countries
    return options


class MetiEmulator:
    """A METI API server (v1 and v2) on a background thread, for development, demos and tests.

    Use it as a context manager (``with MetiEmulator() as meti: ... meti.url``) or call
    :meth:`start` and :meth:`stop`. v1 callers get tokens at ``POST /token``; v2 callers at
    ``POST /oauth/token`` (:attr:`token_url`), which plays the Auth0 tenant. Every credential
    belongs to an account (``acct_demo`` unless given another) and sees only its sources.

    :param host: interface to bind; keep the loopback default unless you mean otherwise
    :param port: port to bind; 0 picks a free one (read it back from :attr:`url`)
    :param users: email -> password accepted by ``POST /token``
        (default ``{"demo@meti.local": "demo-password"}``)
    :param clients: OAuth2 client id -> client secret accepted by ``POST /oauth/token``
        (default ``{"demo-client": "demo-client-secret"}``)
    :param audience: the ``audience`` the token endpoint accepts (the real service's default)
    :param token_ttl: token lifetime in seconds (``expires_in``)
    :param seed: seeds source ids, so a run is reproducible
    :param list_envelope: None to list sources as a bare array, or ``"data"``, ``"sources"``,
        ``"items"`` or ``"results"`` to wrap pages as ``{key: [...], "total", "limit", "offset"}``
    :param base_path: serve the API under this prefix (e.g. ``"/meti/api"``), as behind a
        gateway; :attr:`base_url` includes it, :attr:`url` does not
    :param documented_only: behave only as METI documents: the listing ignores the
        emulator's extra filters (v1: ``alt_id``, ``conflict``, ``created_since``,
        ``updated_since``; v2: the last three) as the real service ignores an unknown parameter
    :param reply_shape: ``"current"``, or ``"2024"`` for v1 GET replies in the GitBook 2024
        names (``internal_id``, ``claim_start``/``claim_end``, ``hectares`` as text,
        ``conflicting_sources``, a country name, ``+00:00`` timestamps)
    :param max_page_size: cap every listing's ``limit`` at this many (None: no cap)
    :param envelope_extras: with ``list_envelope``, the keys beside the page, among
        ``total``, ``limit``, ``offset`` (e.g. ``("total",)`` for ``{"data": [...], "total"}``)
    :param trickle_bytes_per_second: send the bodies of ``/sources`` replies this slowly
        (None: at once), ``trickle_chunk_bytes`` per write
    :param trickle_chunk_bytes: bytes per write while trickling
    :param echo_request_in_errors: 4xx and 5xx bodies quote the request body, as some gateways do
    :param token_reply_form: the token endpoints answer 200 with a form-encoded body
    :param concurrent_conflicts: passed to both ledgers (see :class:`Ledger`); None: its default
    :param countries: country boundaries for both ledgers (see :class:`Ledger`); None: none
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        users: Mapping[str, str] | None = None,
        clients: Mapping[str, str] | None = None,
        audience: str = DEFAULT_AUDIENCE,
        token_ttl: float = 3600,
        seed: int = 0,
        list_envelope: str | None = None,
        base_path: str = "",
        documented_only: bool = False,
        reply_shape: str = "current",
        max_page_size: int | None = None,
        envelope_extras: Sequence[str] = ENVELOPE_EXTRAS,
        trickle_bytes_per_second: float | None = None,
        trickle_chunk_bytes: int = 1,
        echo_request_in_errors: bool = False,
        token_reply_form: bool = False,
        concurrent_conflicts: str | None = None,
        countries: Any = None,
    ) -> None:
        self.host = host
        self.base_path = _normalised_base_path(base_path)
        self._requested_port = port
        self.state = EmulatorState(
            users=users,
            clients=clients,
            audience=audience,
            token_ttl=token_ttl,
            seed=seed,
            list_envelope=list_envelope,
            documented_only=documented_only,
            modes=ServerModes(
                reply_shape=reply_shape,
                max_page_size=max_page_size,
                envelope_extras=tuple(envelope_extras),
                trickle_bytes_per_second=trickle_bytes_per_second,
                trickle_chunk_bytes=trickle_chunk_bytes,
                echo_request_in_errors=echo_request_in_errors,
                token_reply_form=token_reply_form,
            ),
            ledger_options=_ledger_options(concurrent_conflicts, countries),
        )
        self._server: MetiHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> MetiEmulator:
        """Bind and serve on a background thread; return self."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server = MetiHTTPServer((self.host, self._requested_port), self.state, self.base_path)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="meti-emulator",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and wait for the threads; idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        server.close_connections()
        server.join_workers(STOP_TIMEOUT_S)
        thread.join(STOP_TIMEOUT_S)

    def __enter__(self) -> MetiEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (the requested one before :meth:`start`)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8765``."""
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Where the API lives: :attr:`url` plus the base path."""
        return self.url + self.base_path

    @property
    def token_url(self) -> str:
        """The OAuth2 token endpoint of v2 clients: :attr:`url` plus ``/oauth/token``."""
        return self.url + OAUTH_TOKEN_PATH

    # --- steering --------------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        """The stored sources (``get``, ``delete``, ``all``, ``count``, ``seed``, ...)."""
        return self.state.ledger

    @property
    def sandbox_ledger(self) -> Ledger:
        """The sandbox's stored sources (what ``/sandbox/sources`` serves)."""
        return self.state.sandbox_ledger

    @property
    def modes(self) -> ServerModes:
        """The odd-but-legal answering modes in force (see the class docstring)."""
        return self.state.modes

    def set_modes(self, **settings: Any) -> ServerModes:
        """Change answering modes at run time, e.g. ``set_modes(max_page_size=100)``.

        :param settings: any of ``reply_shape``, ``max_page_size``, ``envelope_extras``,
            ``trickle_bytes_per_second``, ``trickle_chunk_bytes``, ``echo_request_in_errors``,
            ``token_reply_form``
        :return: the modes now in force
        :raises ValueError: an unknown name or a bad value
        """
        self.state.modes = self.state.modes.updated(settings)
        return self.state.modes

    @property
    def token_ttl(self) -> float:
        """Lifetime of tokens issued from now on, in seconds."""
        return self.state.tokens.ttl

    @token_ttl.setter
    def token_ttl(self, seconds: float) -> None:
        self.state.tokens.ttl = seconds

    @property
    def list_envelope(self) -> str | None:
        """How listings are shaped (see the class docstring)."""
        return self.state.list_envelope

    @list_envelope.setter
    def list_envelope(self, key: str | None) -> None:
        self.state.list_envelope = key

    def set_faults(
        self,
        rate: float,
        kinds: Sequence[str] = DEFAULT_KINDS,
        *,
        seed: int = 0,
        retry_after: float = 1.0,
        latency: float = 0.0,
        methods: Sequence[str] | None = None,
        paths: Sequence[str] | None = None,
        count: int | None = None,
        skip: int = 0,
    ) -> FaultPlan:
        """Fail a share of matching requests, deterministically for a given seed.

        :param rate: probability (0..1) that a matching request fails
        :param kinds: among ``"500"``, ``"503"``, ``"429"``, ``"drop"``, ``"stored_then_drop"``,
            ``"latency"``
        :param seed: seeds the decisions (same seed, same requests: same faults)
        :param retry_after: seconds sent in ``Retry-After`` with a 429 (fractions allowed)
        :param latency: seconds a ``latency`` fault waits before answering normally
        :param methods: only these HTTP methods, e.g. ``["POST"]`` (default: all)
        :param paths: only paths starting with these prefixes (default ``["/sources"]``;
            add ``"/token"`` or ``"/oauth/token"`` to fault token requests too); sandbox
            paths are matched without their ``/sandbox`` prefix, so faults hit both stores
        :param count: stop after this many faults (default: no limit)
        :param skip: serve this many matching requests normally first (e.g. to fail a
            listing part-way)
        :return: the plan now in force
        """
        plan = FaultPlan(
            rate=rate,
            kinds=tuple(kinds),
            seed=seed,
            retry_after=retry_after,
            latency=latency,
            methods=None if methods is None else tuple(m.upper() for m in methods),
            paths=DEFAULT_PATHS if paths is None else tuple(paths),
            count=count,
            skip=skip,
        )
        self.state.faults.configure(plan)
        return plan

    def clear_faults(self) -> None:
        """Serve every request normally again."""
        self.state.faults.clear()

    def expire_all_tokens(self) -> int:
        """Expire every issued token; return how many were still valid."""
        return self.state.tokens.expire_all()

    def add_user(self, email: str, password: str, *, account_id: str = DEFAULT_ACCOUNT) -> None:
        """Accept another email/password at ``POST /token``.

        :param account_id: the account whose sources the user sees and creates
        """
        self.state.users.add(email, password, account_id)

    def add_client(
        self,
        client_id: str,
        client_secret: str,
        *,
        account_id: str = DEFAULT_ACCOUNT,
        scopes: Sequence[str] = ALL_SCOPES,
    ) -> None:
        """Accept another OAuth2 client at ``POST /oauth/token``.

        :param account_id: the account its tokens carry, whose sources it sees and creates
        :param scopes: the scopes its tokens may carry (a token request's ``scope`` can ask
            for fewer)
        """
        self.state.clients.add(client_id, client_secret, account_id, tuple(scopes))

    def stats(self) -> dict[str, Any]:
        """A snapshot: ``token_requests``, ``tokens_issued``, ``requests`` per
        ``"METHOD /path"``, ``responses`` per status, ``faults`` per kind,
        ``sources_created``, ``sources_stored``, ``active_tokens`` and ``fault_plan``."""
        return self.state.stats()

    def reset(self) -> None:
        """Drop every source, token and counter (credentials and settings stay)."""
        self.state.reset()
