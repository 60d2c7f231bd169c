"""The clear error when the emulator's optional dependencies are missing."""

from __future__ import annotations

INSTALL_HINT = (
    "The METI emulator needs shapely and geographiclib: "
    "pip install 'airflow-provider-meti[emulator]'"
)


def missing_extra(error: ImportError) -> ImportError:
    """An ImportError naming the extra to install, for ``raise ... from error``."""
    return ImportError(f"{INSTALL_HINT} ({error})")
