"""The lowest versions the provider allows for some of its requirements.

    python scripts/lower_bounds.py requests aiohttp      prints "requests==2.31" ... a line each
    python scripts/lower_bounds.py --check requests ...  fails unless those are what imports

Reads the installed provider's metadata (pyproject.toml's dependencies and extras, as
``scripts/bootstrap.sh`` installed them); a name without a ``>=`` lower bound there is an error.
"""

from __future__ import annotations

import sys
from importlib.metadata import requires, version

from packaging.requirements import Requirement
from packaging.version import Version

DISTRIBUTION = "airflow-provider-meti"


def lower_bounds() -> dict[str, str]:
    bounds = {}
    for text in requires(DISTRIBUTION) or []:
        requirement = Requirement(text)
        lowest = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if lowest:
            bounds[requirement.name.lower()] = lowest[0]
    return bounds


def main(argv: list[str]) -> int:
    check = argv[:1] == ["--check"]
    names = argv[1:] if check else argv
    bounds = lower_bounds()
    missing = [name for name in names if name not in bounds]
    if missing:
        print(f"{DISTRIBUTION} sets no '>=' lower bound for: {', '.join(missing)}", file=sys.stderr)
        return 2
    if not check:
        for name in names:
            print(f"{name}=={bounds[name]}")
        return 0
    wrong = [
        f"{name} {version(name)} (lowest allowed: {bounds[name]})"
        for name in names
        if Version(version(name)) != Version(bounds[name])
    ]
    if wrong:
        print(f"not the lowest versions: {'; '.join(wrong)}", file=sys.stderr)
        return 1
    print("lowest versions in use: " + ", ".join(f"{n} {version(n)}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
