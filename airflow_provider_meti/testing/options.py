"""What a test asks of the fixtures: the ``@pytest.mark.meti(...)`` settings, checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

CONNECTION_KEYS = ("api_version", "conn_id", "extra", "sandbox")
"""Settings of the connection alone: also accepted as ``meti_connection``'s indirect param."""
EMULATOR_KEYS = ("documented_only", "fault_rate", "fault_kinds", "seed", "shared")
MODE_KEYS = (
    "reply_shape",
    "max_page_size",
    "list_envelope",
    "envelope_extras",
    "echo_request_in_errors",
    "token_reply_form",
)
"""The emulator's odd-but-legal answering modes (see ``MetiEmulator``) the marker can set."""
REPLY_SHAPES = ("current", "2024")
LIST_ENVELOPES = ("data", "sources", "items", "results")
ENVELOPE_EXTRAS = ("total", "limit", "offset")


@dataclass(frozen=True)
class MetiOptions:
    """Settings of the METI fixtures for one test.

    :param api_version: the API generation ``meti_connection`` speaks (1 or 2)
    :param conn_id: the connection id ``meti_connection`` defines
    :param extra: connection extras merged into the ones the API version needs
    :param documented_only: the emulator does only what METI documents
    :param fault_rate: share (0..1) of ``/sources`` requests that fail
    :param fault_kinds: the faults to choose from (None: 503, 429 and dropped connections)
    :param seed: seeds the fault decisions and, on a test's own emulator, the source ids
    :param shared: use the session-wide emulator, reset before the test, instead of starting
        one for the test
    :param sandbox: the connection goes to METI's sandbox (extra ``sandbox``), and the
        emulator's helpers (``sources()``, ``create_sources()``, ...) use the sandbox's store
    :param reply_shape: ``"current"``, or ``"2024"`` for v1 GET replies in the 2024 names
    :param max_page_size: the emulator caps every listing's ``limit`` at this many
    :param list_envelope: None (a bare array) or the key wrapping listed pages
    :param envelope_extras: the keys beside an enveloped page, among total, limit, offset
    :param echo_request_in_errors: error bodies quote the request body
    :param token_reply_form: token endpoints answer with a form-encoded body
    """

    api_version: int = 1
    conn_id: str = "meti_default"
    extra: Mapping[str, Any] = field(default_factory=dict)
    documented_only: bool = True
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] | None = None
    seed: int = 0
    shared: bool = False
    sandbox: bool = False
    reply_shape: str = "current"
    max_page_size: int | None = None
    list_envelope: str | None = None
    envelope_extras: tuple[str, ...] = ENVELOPE_EXTRAS
    echo_request_in_errors: bool = False
    token_reply_form: bool = False

    def __post_init__(self) -> None:
        if self.api_version not in (1, 2) or isinstance(self.api_version, bool):
            raise ValueError(f"api_version must be 1 or 2, got {self.api_version!r}")
        if not isinstance(self.conn_id, str) or not self.conn_id.strip():
            raise ValueError(f"conn_id must be a non-empty string, got {self.conn_id!r}")
        if not isinstance(self.extra, Mapping):
            raise ValueError(f"extra must be a dict, got {self.extra!r}")
        for name in (
            "documented_only",
            "shared",
            "sandbox",
            "echo_request_in_errors",
            "token_reply_form",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        rate = self.fault_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"fault_rate must be a number between 0 and 1, got {rate!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        self._check_modes()

    def _check_modes(self) -> None:
        if self.reply_shape not in REPLY_SHAPES:
            raise ValueError(f"reply_shape must be one of {REPLY_SHAPES}, got {self.reply_shape!r}")
        size = self.max_page_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"max_page_size must be a positive integer or None, got {size!r}")
        if self.list_envelope is not None and self.list_envelope not in LIST_ENVELOPES:
            raise ValueError(
                f"list_envelope must be None or one of {LIST_ENVELOPES}, got {self.list_envelope!r}"
            )
        if not set(self.envelope_extras) <= set(ENVELOPE_EXTRAS):
            raise ValueError(
                f"envelope_extras must be among {ENVELOPE_EXTRAS}, got {self.envelope_extras!r}"
            )

    def modes(self) -> dict[str, Any]:
        """The emulator's answering modes, as ``MetiEmulator.set_modes`` takes them."""
        return {
            "reply_shape": self.reply_shape,
            "max_page_size": self.max_page_size,
            "envelope_extras": self.envelope_extras,
            "echo_request_in_errors": self.echo_request_in_errors,
            "token_reply_form": self.token_reply_form,
        }

    def updated(
        self, settings: Mapping[str, Any], allowed: Sequence[str], where: str
    ) -> MetiOptions:
        """A copy with ``settings`` applied; only the ``allowed`` names are accepted.

        :param where: names the source of the settings in error messages
        :raises ValueError: an unknown name or a bad value
        """
        unknown = sorted(set(settings) - set(allowed))
        if unknown:
            raise ValueError(
                f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(allowed)}"
            )
        values = dict(settings)
        for name in ("fault_kinds", "envelope_extras"):
            items = values.get(name)
            if items is not None:
                values[name] = (items,) if isinstance(items, str) else tuple(items)
        if values.get("extra") is None:
            values.pop("extra", None)
        try:
            return replace(self, **values)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None


def merged_marker_kwargs(closest_first: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The settings of several ``meti`` markers, the closest one winning key by key.

    A test-level ``meti(fault_rate=0.5)`` under a module-level ``meti(api_version=2,
    conn_id="meti_prod")`` gives all three settings. Keys merge at the top level only: a
    closer ``extra`` replaces an outer one whole.

    :param closest_first: each marker's keyword arguments, test level first (as
        ``item.iter_markers("meti")`` yields them)
    """
    merged: dict[str, Any] = {}
    for kwargs in reversed(list(closest_first)):
        merged.update(kwargs)
    return merged


def options_for(marker_kwargs: Mapping[str, Any] | None, param: Any = None) -> MetiOptions:
    """The options of one test: defaults, then the markers, then an indirect param.

    :param marker_kwargs: the merged keyword arguments of the ``meti`` markers, if any
        (see :func:`merged_marker_kwargs`)
    :param param: ``meti_connection``'s indirect param: a dict of connection settings, or
        an int (the API version)
    """
    options = MetiOptions()
    if marker_kwargs:
        options = options.updated(
            marker_kwargs, CONNECTION_KEYS + EMULATOR_KEYS + MODE_KEYS, "meti marker"
        )
    if param is not None:
        if isinstance(param, int) and not isinstance(param, bool):
            param = {"api_version": param}
        if not isinstance(param, Mapping):
            raise ValueError(
                "meti_connection's param must be a dict of "
                f"{', '.join(CONNECTION_KEYS)} or an API version, got {param!r}"
            )
        options = options.updated(param, CONNECTION_KEYS, "meti_connection param")
    return options
