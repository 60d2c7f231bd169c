#!/usr/bin/env bash
# Airflow as teams deploy it, on this machine's loopback: PostgreSQL, Redis, the Celery
# executor with two workers, moto's S3 server and the METI emulator (5 % faults), then six
# registration runs and six daily extracts to s3:// at once, and the checks of
# scripts/topology/checks.py. Prints a summary; figures in .airflow/topology/summary.json.
#
# Needs root (or sudo) once, to install Debian's postgresql and redis-server when missing;
# their system services are not started: the run starts its own servers on free ports and
# stops everything it started, on success, failure or Ctrl-C.
# Python packages go to .venv-topology (constraints.txt, the "topology" extra), not .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

PYTHON="${PYTHON:-python3}"
VENV=.venv-topology
GROUPS_FILE=.airflow/topology/process-groups
case " $* " in  # main.py's folder for the executor, so a Celery and an edge run never meet
    *" --executor edge "* | *" --executor=edge "*) GROUPS_FILE=.airflow/topology-edge/process-groups ;;
esac

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo > /dev/null; then sudo "$@"; else
        echo "topology: need root or sudo to install $*" >&2; return 1
    fi
}

install_debian_packages() {
    local missing=()
    compgen -G "/usr/lib/postgresql/*/bin/postgres" > /dev/null || missing+=(postgresql)
    command -v redis-server > /dev/null || missing+=(redis-server)
    [ ${#missing[@]} -gt 0 ] || return 0
    echo "Installing ${missing[*]} (Debian packages; their services are not started) ..."
    # policy-rc.d answering 101 keeps the packages' system services from starting.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" > /dev/null
        as_root chmod +x "$policy"
        added_policy=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" > /dev/null
    if [ "$added_policy" = 1 ]; then as_root rm -f "$policy"; fi
}

install_python_packages() {
    local stamp="$VENV/.meti-installed" wanted
    wanted="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then return 0; fi
    echo "Installing Airflow with the Celery and Amazon providers into $VENV ..."
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    local pip=("$VENV/bin/python" -m pip install --quiet --quiet --disable-pip-version-check)
    "${pip[@]}" --upgrade pip
    "${pip[@]}" -c constraints.txt -e ".[topology]"
    echo "$wanted" > "$stamp"
}

# Should the Python side die without cleaning up, end the process groups it recorded.
sweep_process_groups() {
    [ -f "$GROUPS_FILE" ] || return 0
    while read -r pgid name; do
        if kill -0 -- "-$pgid" 2> /dev/null; then
            echo "topology: ending $name (process group $pgid), left by an unclean exit" >&2
            kill -KILL -- "-$pgid" 2> /dev/null || true
        fi
    done < "$GROUPS_FILE"
    rm -f "$GROUPS_FILE"
}

# PostgreSQL's folder lives under the temporary directory (the checkout may be out of its OS
# user's reach); should the Python side die before removing it, remove it here.
sweep_temp_dirs() {
    local listing
    listing="$(dirname "$GROUPS_FILE")/temp-dirs"  # the run's folder, beside the groups file
    [ -f "$listing" ] || return 0
    while read -r dir; do
        case "$(basename "$dir")" in meti-topology-pg-*) ;; *) continue ;; esac
        if [ -d "$dir" ]; then
            echo "topology: removing $dir, left by an unclean exit" >&2
            rm -rf -- "$dir"
        fi
    done < "$listing"
    rm -f "$listing"
}

on_exit() {
    sweep_process_groups
    sweep_temp_dirs
}
trap on_exit EXIT

install_debian_packages
install_python_packages
export METI_TOPOLOGY_SETUP_S=$(( $(date +%s) - started ))
"$VENV/bin/python" scripts/topology/main.py "$@"
