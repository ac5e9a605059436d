#!/usr/bin/env bash
# The remove-path benchmark of issue 7: builds the C + liburcu peer and ksync-bench (release), runs the
# matrix, and draws throughput against threads.
#
#   scripts/bench-remove-path.sh                                  # the whole matrix (several minutes)
#   scripts/bench-remove-path.sh --threads 1,2 --groups 4 --repetitions 3 --seconds 0.2
#
# Arguments go to ksync-bench (see `ksync-bench --help`). Results: results.json, results.csv, ratios.csv
# and remove-path.png in .build-bench-results/, or in the --output-dir given. Debian's liburcu-dev is
# installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/install-liburcu.sh
out=.build-bench-results
mkdir -p "$out"
gcc -O2 -Wall -Wextra -std=gnu11 -pthread scripts/peers/remove_peer.c -o "$out/remove-peer" -lurcu-memb -lurcu-common

# The plot goes beside the results, wherever an --output-dir among the arguments puts them.
results=$out
previous=""
for argument in "$@"; do
    [ "$previous" = "--output-dir" ] && results=$argument
    case "$argument" in --output-dir=*) results=${argument#--output-dir=} ;; esac
    previous=$argument
done

swift build -c release --product ksync-bench
"$(swift build -c release --show-bin-path)/ksync-bench" --c-peer "$out/remove-peer" --output-dir "$out" "$@"

python3 scripts/plot-bench.py "$results/results.json" "$results/remove-path.png"
