"""What a test asks of the fixtures: the ``@pytest.mark.meti(...)`` settings, checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

CONNECTION_KEYS = ("api_version", "conn_id", "extra")
"""Settings of the connection alone: also accepted as ``meti_connection``'s indirect param."""
EMULATOR_KEYS = ("documented_only", "fault_rate", "fault_kinds", "seed", "shared")


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
    """

    api_version: int = 1
    conn_id: str = "meti_default"
    extra: Mapping[str, Any] = field(default_factory=dict)
    documented_only: bool = True
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] | None = None
    seed: int = 0
    shared: bool = False

    def __post_init__(self) -> None:
        if self.api_version not in (1, 2) or isinstance(self.api_version, bool):
            raise ValueError(f"api_version must be 1 or 2, got {self.api_version!r}")
        if not isinstance(self.conn_id, str) or not self.conn_id.strip():
            raise ValueError(f"conn_id must be a non-empty string, got {self.conn_id!r}")
        if not isinstance(self.extra, Mapping):
            raise ValueError(f"extra must be a dict, got {self.extra!r}")
        for name in ("documented_only", "shared"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        rate = self.fault_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"fault_rate must be a number between 0 and 1, got {rate!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

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
        kinds = values.get("fault_kinds")
        if kinds is not None:
            values["fault_kinds"] = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        if values.get("extra") is None:
            values.pop("extra", None)
        try:
            return replace(self, **values)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None


def options_for(marker_kwargs: Mapping[str, Any] | None, param: Any = None) -> MetiOptions:
    """The options of one test: defaults, then the marker, then an indirect param.

    :param marker_kwargs: the keyword arguments of the closest ``meti`` marker, if any
    :param param: ``meti_connection``'s indirect param: a dict of connection settings, or
        an int (the API version)
    """
    options = MetiOptions()
    if marker_kwargs:
        options = options.updated(marker_kwargs, CONNECTION_KEYS + EMULATOR_KEYS, "meti marker")
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
