"""Everything one running emulator holds: credentials, tokens, sources, faults and counters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_meti.emulator.credentials import CredentialDirectory, TokenStore
from airflow_provider_meti.emulator.faults import FaultInjector
from airflow_provider_meti.emulator.ledger import Ledger
from airflow_provider_meti.emulator.stats import Counters

LIST_ENVELOPES = ("data", "sources", "items", "results")
DEFAULT_USERS = {"demo@meti.local": "demo-password"}
DEFAULT_CLIENTS = {"demo-client": "demo-client-secret"}
# The same default as the provider's (airflow_provider_meti.auth.DEFAULT_AUDIENCE); not
# imported, so that the emulator needs nothing beyond the standard library.
DEFAULT_AUDIENCE = "https://api.meti.millpont.com"


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
    ) -> None:
        self.users = CredentialDirectory(DEFAULT_USERS if users is None else users)
        self.clients = CredentialDirectory(DEFAULT_CLIENTS if clients is None else clients)
        self.audience = audience
        self.tokens = TokenStore(token_ttl)
        self.ledger = Ledger(seed)
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

    def stats(self) -> dict[str, Any]:
        """Counters plus what is stored now and the fault plan in force."""
        return {
            **self.counters.snapshot(),
            "sources_stored": self.ledger.count(),
            "active_tokens": self.tokens.active_count(),
            "fault_plan": self.faults.plan.as_dict(),
        }

    def reset(self) -> None:
        """Drop sources, tokens and counters; credentials and settings (faults, TTL) stay."""
        self.ledger.clear()
        self.tokens.expire_all()
        self.counters.reset()
