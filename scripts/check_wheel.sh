#!/usr/bin/env bash
# Build the sdist and the wheel, check what they contain, install the wheel into a clean
# virtual environment with Airflow from constraints.txt, and check that Airflow sees the
# provider. Leaves the files in dist/ (git-ignored); the clean venv is .venv-wheel-check.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

PYTHON="${PYTHON:-python3}"
VENV=.venv-wheel-check
rm -rf dist
mkdir -p .airflow
.venv/bin/python -m build --outdir dist . > .airflow/build.log 2>&1 \
    || { cat .airflow/build.log; exit 1; }
wheel="$(ls dist/*.whl)"
sdist="$(ls dist/*.tar.gz)"
echo "Built $wheel and $sdist"

# Every file must belong to the package, its metadata or the few top-level files an sdist
# carries; anything else (tests, example DAGs, scripts, local state) fails the check.
unzip -Z1 "$wheel" > .airflow/wheel-files.txt
tar tzf "$sdist" | cut -d/ -f2- | grep -v '/$' | grep -v '^$' > .airflow/sdist-files.txt
stray="$(
    grep -Ev '^airflow_provider_meti(/|-[0-9.]+\.dist-info/)' .airflow/wheel-files.txt || true
    grep -Ev '^(airflow_provider_meti(/|\.egg-info/)|(PKG-INFO|pyproject\.toml|setup\.cfg|README\.md|CHANGELOG\.md|LICENSE|NOTICE|MANIFEST\.in)$)' \
        .airflow/sdist-files.txt || true
)"
if [ -n "$stray" ]; then
    echo "Files that do not belong in a distribution:" >&2
    echo "$stray" >&2
    exit 1
fi
grep -qx 'airflow_provider_meti/py.typed' .airflow/wheel-files.txt \
    || { echo "py.typed is missing from the wheel" >&2; exit 1; }
echo "Contents OK: $(wc -l < .airflow/wheel-files.txt) files in the wheel, $(wc -l < .airflow/sdist-files.txt) in the sdist"

rm -rf "$VENV"
started=$(date +%s)
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt \
    "$(grep -i '^apache-airflow==' constraints.txt)" "${wheel}[emulator]"
echo "Installed the wheel with $(grep -i '^apache-airflow==' constraints.txt) in $(( $(date +%s) - started ))s"

# Run from an empty folder with its own AIRFLOW_HOME, so neither the source tree nor a
# developer's Airflow setup can stand in for the installed wheel.
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
venv_path="$PWD/$VENV"
(
    cd "$workdir"
    export AIRFLOW_HOME="$workdir/airflow-home"
    providers="$("$venv_path/bin/airflow" providers list 2>&1)"
    grep -q 'airflow-provider-meti' <<< "$providers" \
        || { echo "$providers" >&2; echo "airflow providers list lacks the provider" >&2; exit 1; }
    echo "airflow providers list: $(grep 'airflow-provider-meti' <<< "$providers" | tr -s ' ')"
    "$venv_path/bin/python" - <<'EOF'
import airflow_provider_meti
from airflow.providers_manager import _create_provider_info_schema_validator

assert "site-packages" in airflow_provider_meti.__file__, airflow_provider_meti.__file__
_create_provider_info_schema_validator().validate(airflow_provider_meti.get_provider_info())
print("get_provider_info() validates against Airflow's provider info schema")
EOF
    "$venv_path/bin/meti-emulator" --help > /dev/null
    echo "meti-emulator console script OK"
)
