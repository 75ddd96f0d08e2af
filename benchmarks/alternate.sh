#!/bin/sh
# Old code against new on a noisy machine: SQLite-only runs of benchmarks/campaign.py, alternating
# between a copy of REV (default main) and this checkout, ROUNDS times (default 4); extra
# arguments go to campaign.py (default --n 10000 --raw-n 5000). Read the medians of the
# "SQLite campaign" lines: share of raw and CPU per message, each next to the raw row of its run.
#
#   sh benchmarks/alternate.sh [REV] [ROUNDS] [campaign.py arguments...]
set -eu
rev=${1:-main}
rounds=${2:-4}
[ $# -gt 2 ] && shift 2 || set -- --n 10000 --raw-n 5000
here=$(cd "$(dirname "$0")/.." && pwd)
old=$(mktemp -d)
trap 'rm -rf "$old"' EXIT
git -C "$here" archive "$rev" | tar -x -C "$old"
python="$here/.venv/bin/python"
flags="--no-postgresql --skip-fsync --skip-delayed"
i=1
while [ "$i" -le "$rounds" ]; do
    echo "== $rev, round $i"
    # shellcheck disable=SC2086
    PYTHONPATH="$old" "$python" "$old/benchmarks/campaign.py" $flags "$@" | grep -E "raw  |SQLite"
    echo "== this checkout, round $i"
    # shellcheck disable=SC2086
    "$python" "$here/benchmarks/campaign.py" $flags "$@" | grep -E "raw  |SQLite"
    i=$((i + 1))
done
