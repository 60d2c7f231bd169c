#!/usr/bin/env bash
# The whole test suite N times in a row (default 3) while two CPU-burning processes run
# beside it: the proof that no test depends on how fast the machine is.
#
#   scripts/stress_suite.sh            three stressed runs of the whole suite
#   scripts/stress_suite.sh 1 -x       one run; arguments after the count go to pytest
#
# Stops at the first red run. Each run's time is printed and kept in
# .airflow/stress/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
shift || true
scripts/bootstrap.sh

burners=()
stop_burners() {
    for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_burners EXIT
for _ in 1 2; do
    yes > /dev/null &
    burners+=($!)
done

mkdir -p .airflow/stress
summary=.airflow/stress/summary.txt
: > "$summary"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow/pytest-home}"
for run in $(seq 1 "$runs"); do
    started=$(date +%s)
    status=0
    .venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=$?
    seconds=$(( $(date +%s) - started ))
    echo "stressed run $run of $runs: pytest exit $status in ${seconds}s" | tee -a "$summary"
    [ "$status" -eq 0 ] || exit "$status"
done
