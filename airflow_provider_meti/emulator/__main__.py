"""``python -m airflow_provider_meti.emulator``: see :mod:`airflow_provider_meti.emulator.cli`."""

from __future__ import annotations

import sys

from airflow_provider_meti.emulator.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
