#!/usr/bin/env bash
# The remove path's regression guard (issue 7, section 5): runs the RemovePathBenchmarks suite of the
# Benchmarks/ package and checks each benchmark's wall-clock p90 against the static thresholds checked
# in under Benchmarks/Thresholds, with the tolerance the suite sets (allowedRegression). A regression
# fails: exit status 2 from package-benchmark, passed on. Improvements pass.
#
#   scripts/bench-guard.sh           # check
#   scripts/bench-guard.sh --update  # after an intended change: record new thresholds, then commit them
set -euo pipefail
cd "$(dirname "$0")/../Benchmarks"

if [ "${1:-}" = "--update" ]; then
    swift package --allow-writing-to-package-directory benchmark thresholds update \
        --target RemovePathBenchmarks --no-progress
    exit 0
fi

# Through `swift package`, the plugin's verdict arrives as exit status 1 with an error line naming it
# (benchmarkThresholdRegression / benchmarkThresholdImprovement), so the output is read as well.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
swift package benchmark thresholds check --target RemovePathBenchmarks --no-progress 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
if grep -aq "benchmarkThresholdRegression" "$log"; then status=2; fi
if [ $status -ne 0 ] && grep -aq "benchmarkThresholdImprovement" "$log"; then status=4; fi
case $status in
    0) echo "remove path: within the thresholds" ;;
    4) echo "remove path: faster than the thresholds (consider scripts/bench-guard.sh --update)"; status=0 ;;
    2) echo "remove path: REGRESSION against Benchmarks/Thresholds" ;;
    *) echo "remove path: the benchmark check failed (status $status)" ;;
esac
exit $status
