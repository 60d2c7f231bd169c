"""Everything one running emulator holds: credentials, tokens, sources, faults and counters."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from airflow_provider_meti.emulator.credentials import CredentialDirectory, TokenStore
from airflow_provider_meti.emulator.faults import FaultInjector
from airflow_provider_meti.emulator.ledger import Ledger
from airflow_provider_meti.emulator.stats import Counters

LIST_ENVELOPES = ("data", "sources", "items", "results")
ENVELOPE_EXTRAS = ("total", "limit", "offset")
REPLY_SHAPES = ("current", "2024")
DEFAULT_USERS = {"demo@meti.local": "demo-password"}
DEFAULT_CLIENTS = {"demo-client": "demo-client-secret"}
# The same default as the provider's (airflow_provider_meti.auth.DEFAULT_AUDIENCE); not
# imported, so that the emulator needs nothing beyond the standard library.
DEFAULT_AUDIENCE = "https://api.meti.millpont.com"


@dataclass(frozen=True)
class ServerModes:
    """Odd but legal ways to answer, for testing a client against more than one server.

    :param reply_shape: ``"current"``, or ``"2024"``: v1 GET replies use the names of the
        GitBook page of 2024 (``internal_id``, ``claim_start``/``claim_end``, ``hectares`` as
        text, ``conflicting_sources``, a country name, ``+00:00`` timestamps)
    :param max_page_size: cap every listing's ``limit`` at this many sources (None: no cap
        beyond the usual bound); a larger ``limit`` is accepted and silently capped
    :param envelope_extras: the keys beside the sources in an enveloped listing, among
        ``total``, ``limit`` and ``offset``
    :param trickle_bytes_per_second: send the bodies of source replies this slowly (None: at
        once), ``trickle_chunk_bytes`` at a time
    :param trickle_chunk_bytes: bytes per write while trickling
    :param echo_request_in_errors: error bodies (4xx, 5xx) quote the request body, as some
        gateways do
    :param token_reply_form: the token endpoints answer 200 with a form-encoded body
        (``access_token=...&scope=...``) instead of JSON
    """

    reply_shape: str = "current"
    max_page_size: int | None = None
    envelope_extras: tuple[str, ...] = ENVELOPE_EXTRAS
    trickle_bytes_per_second: float | None = None
    trickle_chunk_bytes: int = 1
    echo_request_in_errors: bool = False
    token_reply_form: bool = False

    def __post_init__(self) -> None:
        if self.reply_shape not in REPLY_SHAPES:
            raise ValueError(f"reply_shape must be one of {', '.join(REPLY_SHAPES)}")
        size = self.max_page_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"max_page_size must be a positive integer or None, got {size!r}")
        extras = tuple(self.envelope_extras)
        if not set(extras) <= set(ENVELOPE_EXTRAS):
            raise ValueError(f"envelope_extras must be among {', '.join(ENVELOPE_EXTRAS)}")
        object.__setattr__(self, "envelope_extras", extras)
        rate = self.trickle_bytes_per_second
        if rate is not None and (isinstance(rate, bool) or not rate > 0):
            raise ValueError(f"trickle_bytes_per_second must be positive or None, got {rate!r}")
        chunk = self.trickle_chunk_bytes
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"trickle_chunk_bytes must be a positive integer, got {chunk!r}")
        for name in ("echo_request_in_errors", "token_reply_form"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")

    def updated(self, settings: Mapping[str, Any]) -> ServerModes:
        """A copy with ``settings`` applied.

        :raises ValueError: an unknown name or a bad value
        """
        known = {item.name for item in fields(self)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(known)}")
        values = dict(settings)
        if isinstance(values.get("envelope_extras"), list):
            values["envelope_extras"] = tuple(values["envelope_extras"])
        return replace(self, **values)

    def as_dict(self) -> dict[str, Any]:
        """The modes as JSON-friendly values."""
        result = asdict(self)
        result["envelope_extras"] = list(self.envelope_extras)
        return result


class EmulatorState:
    """The shared state behind the request handlers.

    :param users: email -> password of the v1 users that may ask for a token at ``/token``
    :param clients: client id -> client secret of the v2 clients that may ask for a token at
        ``/oauth/token``
    :param audience: the only ``audience`` the OAuth2 token endpoint accepts
    :param token_ttl: token lifetime in seconds
    :param seed: seeds source ids
    :param list_envelope: None to list sources as a bare JSON array, or the key
        (``data``, ``sources``, ``items`` or ``results``) of an object that wraps the page
        with ``total``, ``limit`` and ``offset``
    :param documented_only: ignore the listing filters METI does not document (see
        ``routes.UNDOCUMENTED_FILTERS``), as the real service ignores unknown parameters
    :param modes: odd but legal ways to answer (:class:`ServerModes`)
    :param ledger_options: further keyword arguments of both ledgers (e.g.
        ``concurrent_conflicts``, ``countries``)
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        clients: Mapping[str, str] | None = None,
        audience: str = DEFAULT_AUDIENCE,
        token_ttl: float = 3600,
        seed: int = 0,
        list_envelope: str | None = None,
        documented_only: bool = False,
        modes: ServerModes | None = None,
        ledger_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.users = CredentialDirectory(DEFAULT_USERS if users is None else users)
        self.clients = CredentialDirectory(DEFAULT_CLIENTS if clients is None else clients)
        self.audience = audience
        self.tokens = TokenStore(token_ttl)
        self._seed = seed
        self._ledger_options = dict(ledger_options or {})
        self.ledger = Ledger(seed, **self._ledger_options)
        self._sandbox_ledger: Ledger | None = None
        self._sandbox_lock = threading.Lock()
        self.modes = modes or ServerModes()
        self.faults = FaultInjector()
        self.counters = Counters()
        self.documented_only = documented_only
        self._list_envelope: str | None = None
        self.list_envelope = list_envelope

    @property
    def list_envelope(self) -> str | None:
        """The key wrapping listed sources, or None for a bare array."""
        return self._list_envelope

    @list_envelope.setter
    def list_envelope(self, key: str | None) -> None:
        if key is not None and key not in LIST_ENVELOPES:
            raise ValueError(f"list_envelope must be None or one of {', '.join(LIST_ENVELOPES)}")
        self._list_envelope = key

    @property
    def sandbox_ledger(self) -> Ledger:
        """The sandbox's own store (``/sandbox/...``), made on first use."""
        # docs leave open: "nothing persisted beyond the session"; the emulator keeps sandbox
        # sources until reset(), like production ones.
        with self._sandbox_lock:
            if self._sandbox_ledger is None:
                self._sandbox_ledger = Ledger(self._seed, sandbox=True, **self._ledger_options)
            return self._sandbox_ledger

    def ledger_for(self, sandbox: bool) -> Ledger:
        """The production ledger, or the sandbox's."""
        return self.sandbox_ledger if sandbox else self.ledger

    def stats(self) -> dict[str, Any]:
        """Counters plus what is stored now and the fault plan in force."""
        return {
            **self.counters.snapshot(),
            "sources_stored": self.ledger.count(),
            "sandbox_sources_stored": (
                0 if self._sandbox_ledger is None else self._sandbox_ledger.count()
            ),
            "modes": self.modes.as_dict(),
            "active_tokens": self.tokens.active_count(),
            "fault_plan": self.faults.plan.as_dict(),
        }

    def reset(self) -> None:
        """Drop sources, tokens and counters; credentials and settings (faults, TTL) stay."""
        self.ledger.clear()
        if self._sandbox_ledger is not None:
            self._sandbox_ledger.clear()
        self.tokens.expire_all()
        self.counters.reset()
