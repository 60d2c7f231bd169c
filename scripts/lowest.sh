#!/usr/bin/env bash
# The provider's own requirements at the lowest versions pyproject.toml allows (requests,
# tenacity, aiohttp, cryptography, the [parquet] extra's pyarrow and shapely, the [emulator]
# extra's geographiclib), over the pinned environment of .venv/: the client, trigger,
# GeoParquet, geodesic-area and token-cache tests run against them.
#
#   scripts/lowest.sh             install the lower bounds and run those tests
#   scripts/lowest.sh -x -k v1    pytest arguments
#
# The lower bounds go into .airflow/lowest/site, put first on PYTHONPATH. Tests that write
# to S3 are left out: s3fs's aiobotocore needs a newer aiohttp than ours.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

site=.airflow/lowest/site
mapfile -t lowest < <(.venv/bin/python scripts/lower_bounds.py requests tenacity aiohttp cryptography pyarrow shapely geographiclib)
stamp="$site/.installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${lowest[*]}" ]; then
    rm -rf "$site"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$site" "${lowest[@]}"
    echo "${lowest[*]}" > "$stamp"
fi

export PYTHONPATH="$PWD/$site${PYTHONPATH:+:$PYTHONPATH}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow/lowest/home}"
.venv/bin/python scripts/lower_bounds.py --check requests tenacity aiohttp cryptography pyarrow shapely geographiclib
.venv/bin/python -m pytest -q -p no:cacheprovider -m "not slow and not e2e" -k "not s3" \
    tests/test_client.py tests/test_client_replies.py tests/test_retry_budget.py \
    tests/test_reliability.py tests/test_create_and_delete_safety.py tests/test_secrets.py \
    tests/test_triggers.py tests/test_async_trigger.py tests/test_geoparquet.py \
    tests/test_emulator_ledger_areas.py tests/test_token_cache.py "$@"
