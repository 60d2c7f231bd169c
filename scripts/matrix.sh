#!/usr/bin/env bash
# The test suite on each supported Airflow line, each in its own virtual environment.
#
#   scripts/matrix.sh                     2.11, 3.0, 3.1, 3.2 and 3.3, the whole suite
#   scripts/matrix.sh 2.11 3.0            only these lines
#   scripts/matrix.sh 3.0 -- -m "not e2e" pytest arguments after --
#
# Line X.Y installs into .venv-airflow-X.Y from constraints/airflow-X.Y.txt (3.3: the
# project's constraints.txt) and keeps its Airflow files in .airflow/matrix-X.Y. An install
# is skipped while pyproject.toml and the constraints file are unchanged.
#
# Airflow's own constraint files are out of reach here, so a line's file is made by this
# script: METI_MATRIX_REFREEZE=1 installs the line's newest patch release without pins (plus
# the few pins in seed_pins below), runs the suite and, if it passes, writes pip freeze.
# A summary with install and test times is printed at the end and kept in
# .airflow/matrix/summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
ALL_LINES=(2.11 3.0 3.1 3.2 3.3)

newest_release() {
    case "$1" in
        2.11) echo 2.11.2 ;;
        3.0) echo 3.0.6 ;;
        3.1) echo 3.1.8 ;;
        3.2) echo 3.2.2 ;;
        3.3) echo 3.3.2 ;;
        *) echo "unknown Airflow line: $1" >&2; return 1 ;;
    esac
}

constraints_file() {
    if [ "$1" = 3.3 ]; then echo constraints.txt; else echo "constraints/airflow-$1.txt"; fi
}

# Airflow 3.0 and 3.2 put no upper bounds on these, and today's releases break them. 3.0:
# with FastAPI, Cadwyn and Pydantic its execution API rejects task requests, with PyJWT its
# API server cannot issue tokens, with universal-pathlib 0.3 ObjectStoragePath refuses most
# schemes; these are the releases 3.0.6 shipped with. 3.2: those 3.3.2 passes with.
seed_pins() {
    case "$1" in
        3.0)
            echo "fastapi[standard]==0.116.1 cadwyn==5.4.4 starlette==0.47.2 pydantic==2.11.7"
            echo "pyjwt==2.10.1 universal-pathlib==0.2.6"
            ;;
        3.2)
            # With FastAPI 0.165 and Cadwyn 9 its execution API fails to build its routes; with
            # svcs 26 its in-process API (dag.test) finds no services registry.
            echo "fastapi[standard]==0.136.3 cadwyn==7.0.0 svcs==25.1.0"
            ;;
    esac
}

lines=()
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; pytest_args=("$@"); break ;;
        *) lines+=("$1"); shift ;;
    esac
done
[ ${#lines[@]} -gt 0 ] || lines=("${ALL_LINES[@]}")

mkdir -p .airflow/matrix
summary=.airflow/matrix/summary.txt
printf '%-6s %-8s %-9s %-9s %s\n' line airflow install tests result > "$summary"
failed=0

install_line() {
    local line=$1 venv=$2 constraints=$3 refreeze=$4
    local stamp="$venv/.meti-installed" wanted
    wanted="$(cat pyproject.toml "$constraints" 2>/dev/null | sha256sum | cut -d' ' -f1)"
    if [ "$refreeze" = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
        return 0
    fi
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv" || return 1
    local pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
    "${pip[@]}" --upgrade pip || return 1
    if [ "$refreeze" = 1 ]; then
        # shellcheck disable=SC2046  # the seed pins are separate words on purpose
        "${pip[@]}" "apache-airflow==$(newest_release "$line")" $(seed_pins "$line") -e ".[dev]" \
            || return 1
    else
        local airflow
        airflow="$(grep -i '^apache-airflow==' "$constraints")"
        "${pip[@]}" -c "$constraints" "$airflow" -e ".[dev]" || return 1
        echo "$wanted" > "$stamp"
    fi
}

freeze_line() {
    local line=$1 venv=$2 constraints=$3
    mkdir -p "$(dirname "$constraints")"
    {
        echo "# Airflow $line test environment: the versions scripts/matrix.sh $line passed with."
        echo "# Regenerate: METI_MATRIX_REFREEZE=1 scripts/matrix.sh $line"
        "$venv/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check
    } > "$constraints"
    cat pyproject.toml "$constraints" | sha256sum | cut -d' ' -f1 > "$venv/.meti-installed"
}

for line in "${lines[@]}"; do
    newest_release "$line" > /dev/null || exit 2
    venv=".venv-airflow-$line"
    constraints="$(constraints_file "$line")"
    refreeze="${METI_MATRIX_REFREEZE:-0}"
    [ -f "$constraints" ] || refreeze=1
    if [ "$line" = 3.3 ]; then
        refreeze=0  # constraints.txt is the development set: see its header
    fi

    echo "=== Airflow $line: installing into $venv ..."
    started=$(date +%s)
    install_line "$line" "$venv" "$constraints" "$refreeze"
    installed=$?
    install_secs=$(( $(date +%s) - started ))
    if [ $installed -ne 0 ]; then
        printf '%-6s %-8s %-9s %-9s %s\n' "$line" "?" "${install_secs}s" "-" "install failed" \
            >> "$summary"
        failed=1
        continue
    fi
    version="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))')"

    echo "=== Airflow $version: pytest ${pytest_args[*]:-}"
    started=$(date +%s)
    AIRFLOW_HOME="$PWD/.airflow/matrix-$line" "$venv/bin/python" -m pytest -p no:cacheprovider \
        "${pytest_args[@]}"
    status=$?
    test_secs=$(( $(date +%s) - started ))
    if [ $status -eq 0 ]; then
        result=passed
        if [ "$refreeze" = 1 ]; then
            freeze_line "$line" "$venv" "$constraints"
            result="passed; wrote $constraints"
        fi
    else
        result="failed (pytest exit $status)"
        failed=1
    fi
    printf '%-6s %-8s %-9s %-9s %s\n' "$line" "$version" "${install_secs}s" "${test_secs}s" \
        "$result" >> "$summary"
done

echo
cat "$summary"
exit $failed
