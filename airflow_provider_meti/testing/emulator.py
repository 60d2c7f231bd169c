"""``MetiTestEmulator``: the running emulator as the pytest fixtures hand it to a test."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from airflow_provider_meti.emulator import MetiEmulator
from airflow_provider_meti.emulator.faults import DEFAULT_KINDS, FaultPlan
from airflow_provider_meti.emulator.ledger import Ledger
from airflow_provider_meti.emulator.state import DEFAULT_CLIENTS, DEFAULT_USERS, ServerModes

V1_EMAIL, V1_PASSWORD = next(iter(DEFAULT_USERS.items()))
V2_CLIENT_ID, V2_CLIENT_SECRET = next(iter(DEFAULT_CLIENTS.items()))


class MetiTestEmulator:
    """A METI emulator serving on 127.0.0.1, with the calls a test needs.

    The fixtures ``meti_emulator`` and ``meti_emulator_session`` return one. It accepts the
    demo credentials (v1: :data:`V1_EMAIL` / :data:`V1_PASSWORD`; v2: :data:`V2_CLIENT_ID` /
    :data:`V2_CLIENT_SECRET` at :attr:`token_url`) and, unless told otherwise, does only what
    METI documents (``documented_only``). Everything else is on :attr:`emulator`, the
    underlying :class:`~airflow_provider_meti.emulator.MetiEmulator`.

    With :attr:`sandbox` set (``@pytest.mark.meti(sandbox=True)``), the helpers that read
    and write sources (:attr:`ledger`, :meth:`sources`, :meth:`create_sources`, ...) use the
    sandbox's store, where a connection with the ``sandbox`` extra writes.

    :param emulator: a started emulator
    :param sandbox: whether the source helpers use the sandbox's store
    """

    def __init__(self, emulator: MetiEmulator, *, sandbox: bool = False) -> None:
        self.emulator = emulator
        self.sandbox = sandbox

    def __repr__(self) -> str:
        return f"MetiTestEmulator(url={self.url!r})"

    # --- where it is and who may call it ---------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:40123``: a connection's host."""
        return self.emulator.url

    @property
    def token_url(self) -> str:
        """The OAuth2 token endpoint of API v2 connections (extra ``token_url``)."""
        return self.emulator.token_url

    def connection_fields(self, api_version: int = 1) -> dict[str, Any]:
        """``host``, ``login``, ``password`` and ``extra`` of a connection to this emulator.

        :param api_version: 1 (the demo user's email and password) or 2 (the demo OAuth2
            client, with ``api_version`` and ``token_url`` in the extras)
        """
        if api_version == 1:
            return {"host": self.url, "login": V1_EMAIL, "password": V1_PASSWORD, "extra": {}}
        if api_version == 2:
            return {
                "host": self.url,
                "login": V2_CLIENT_ID,
                "password": V2_CLIENT_SECRET,
                "extra": {"api_version": 2, "token_url": self.token_url},
            }
        raise ValueError(f"api_version must be 1 or 2, got {api_version!r}")

    # --- behaviour -------------------------------------------------------------------------

    @property
    def documented_only(self) -> bool:
        """Whether the listing ignores the filters METI does not document (default True)."""
        return self.emulator.state.documented_only

    @documented_only.setter
    def documented_only(self, value: bool) -> None:
        self.emulator.state.documented_only = bool(value)

    def set_modes(self, **settings: Any) -> ServerModes:
        """Change the emulator's odd-but-legal answering modes, e.g. ``max_page_size=100``,
        ``reply_shape="2024"``, ``echo_request_in_errors=True`` (see ``MetiEmulator``)."""
        return self.emulator.set_modes(**settings)

    def set_faults(
        self, rate: float, kinds: Sequence[str] = DEFAULT_KINDS, **options: Any
    ) -> FaultPlan:
        """Fail a share of the requests to ``/sources``, deterministically for a seed.

        ``meti_emulator.set_faults(0.2, ["503", "drop"], seed=1)``. The options are those of
        :meth:`MetiEmulator.set_faults <airflow_provider_meti.emulator.MetiEmulator.set_faults>`:
        ``seed``, ``retry_after``, ``latency``, ``methods``, ``paths``, ``count``, ``skip``.

        :param rate: probability (0..1) that a matching request fails
        :param kinds: among ``"500"``, ``"503"``, ``"429"``, ``"drop"``,
            ``"stored_then_drop"``, ``"latency"``
        :return: the plan now in force
        """
        return self.emulator.set_faults(rate, kinds, **options)

    def clear_faults(self) -> None:
        """Serve every request normally again."""
        self.emulator.clear_faults()

    def expire_all_tokens(self) -> int:
        """Expire every issued token, as if they ran out; return how many were valid."""
        return self.emulator.expire_all_tokens()

    def reset(self) -> None:
        """Back to a fresh state: no sources, tokens, counters or faults."""
        self.emulator.reset()
        self.emulator.clear_faults()
        self.emulator.state.modes = ServerModes()
        self.emulator.list_envelope = None

    # --- what it holds and what it saw -----------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        """The stored sources (the sandbox's when :attr:`sandbox`), for anything the helpers
        below do not cover."""
        return self.emulator.sandbox_ledger if self.sandbox else self.emulator.ledger

    def stats(self) -> dict[str, Any]:
        """Counters since the start (or the last :meth:`reset`).

        ``token_requests``, ``tokens_issued``, ``requests`` per ``"METHOD /path"``,
        ``responses`` per status code (a string), ``faults`` per kind, ``sources_created``,
        ``sources_stored``, ``active_tokens`` and ``fault_plan``.
        """
        return self.emulator.stats()

    def faults_injected(self) -> int:
        """How many requests got a fault so far."""
        return sum(self.stats()["faults"].values())

    def create_sources(self, feature_collection: Mapping[str, Any]) -> list[dict[str, str]]:
        """Store a GeoJSON FeatureCollection as METI would, conflicts included.

        :return: ``{"id": "src_...", "alt_id": ...}`` per feature, in order
        :raises airflow_provider_meti.emulator.rejections.CollectionRejected: an invalid
            feature (nothing is stored)
        """
        return self.ledger.create(feature_collection)

    def seed_sources(self, count: int, **properties: Any) -> int:
        """Add ``count`` generated sources that do not overlap anything (fast, for volume).

        Keyword arguments become properties, e.g. ``project_id="p1"``,
        ``methodology="..."``, ``start_at``/``end_at`` (ISO 8601).

        :return: the number of sources stored afterwards
        """
        return self.ledger.seed(count, **properties)

    def sources(self) -> list[dict[str, Any]]:
        """Every stored source, in creation order."""
        return self.ledger.all()

    def source(self, source_id: str) -> dict[str, Any] | None:
        """One stored source, or None."""
        return self.ledger.get(source_id)

    def delete_source(self, source_id: str) -> bool:
        """Withdraw a source (e.g. to settle a conflict a sensor waits on); False if absent."""
        return self.ledger.delete(source_id)


@contextmanager
def serve(
    *, documented_only: bool = True, seed: int = 0, sandbox: bool = False, **modes: Any
) -> Iterator[MetiTestEmulator]:
    """Run an emulator on a free port of 127.0.0.1 for the ``with`` block.

    :param documented_only: do only what METI documents (see :class:`MetiEmulator`)
    :param seed: seeds source ids, so a run is reproducible
    :param sandbox: the source helpers use the sandbox's store
    :param modes: answering modes of :class:`MetiEmulator` (``reply_shape``,
        ``max_page_size``, ``list_envelope``, ...)
    """
    with MetiEmulator(
        host="127.0.0.1", port=0, seed=seed, documented_only=documented_only, **modes
    ) as meti:
        yield MetiTestEmulator(meti, sandbox=sandbox)
