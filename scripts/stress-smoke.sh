#!/usr/bin/env bash
# A short run of every ksync-stress scenario and of the four remove-path variants, each checked against
# its expected verdict, plus the deliberately broken modes that the checks must catch. CI runs it.
#
#   scripts/stress-smoke.sh          # debug build
#   scripts/stress-smoke.sh --tsan   # only the iommu scenario, under ThreadSanitizer
set -uo pipefail
cd "$(dirname "$0")/.."

failures=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# expect NAME STATUS PATTERN -- ARGS...: runs ksync-stress ARGS, wants exit STATUS and PATTERN in its output.
expect() {
    local name=$1 status=$2 pattern=$3
    shift 4
    local started=$SECONDS
    "$binary" "$@" >"$log" 2>&1
    local got=$?
    if [ "$got" -eq "$status" ] && grep -qE -- "$pattern" "$log"; then
        echo "stress-smoke: ok   $name (exit $got, $((SECONDS - started)) s)"
    else
        echo "stress-smoke: FAIL $name: wanted exit $status and /$pattern/, got exit $got; output:"
        tail -40 "$log"
        failures=$((failures + 1))
    fi
    if grep -q "WARNING: ThreadSanitizer" "$log"; then
        echo "stress-smoke: FAIL $name: ThreadSanitizer reported a race:"
        grep -A30 "WARNING: ThreadSanitizer" "$log" | head -60
        failures=$((failures + 1))
    fi
}

if [ "${1:-}" = "--tsan" ]; then
    swift build --sanitize=thread --scratch-path .build-tsan --product ksync-stress >/dev/null || exit 1
    binary=.build-tsan/debug/ksync-stress
    expect "iommu deferredDisableRCU under TSan" 0 "verdict PASS" -- iommu --variant deferredDisableRCU --duration 5 --quiet
    expect "iommu deferredDisable under TSan" 0 "verdict PASS" -- iommu --variant deferredDisable --duration 5 --quiet
    exit $((failures > 0))
fi

swift build --product ksync-stress >/dev/null || exit 1
binary=.build/debug/ksync-stress

expect "rcu" 0 "verdict PASS" -- rcu --duration 5 --quiet
expect "workqueue" 0 "verdict PASS" -- workqueue --duration 5 --quiet
expect "lockdep" 0 "verdict PASS" -- lockdep --duration 5 --quiet
expect "iommu (default variant)" 0 "verdict PASS" -- iommu --duration 8 --quiet --json "$log.json"
expect "iommu deferredDisableRCU" 0 "verdict PASS" -- iommu --variant deferredDisableRCU --duration 8 --quiet
expect "iommu freeUnderMutex fails with the circular dependency" 1 \
    "stopped at the first validator report: .*circular-dependency \[group->mutex#" -- iommu --variant freeUnderMutex --duration 10 --quiet
expect "iommu deferredCancel fails with a use after free" 1 \
    "stopped at the first validator report: .*rcu-use-after-free" -- iommu --variant deferredCancel --duration 10 --quiet
expect "rcu with broken grace periods must fail" 1 "End of test: FAILURE" -- rcu --duration 2 --break-grace-periods
expect "lockdep finds one injected inversion" 0 "verdict PASS" -- lockdep --duration 2 --inject-inversion --quiet
expect "the watchdog reports a real deadlock" 2 "blocked for more than .* seconds" -- lockdep --duration 1 --inject-hang --keep-going --hang-timeout 3 --quiet
expect "bad input is refused" 64 "--threads must be at least 1" -- --threads 0
if ! python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['scenarios'][0]['passed']" "$log.json" 2>/dev/null; then
    echo "stress-smoke: FAIL the JSON summary is missing or does not say PASS"
    failures=$((failures + 1))
fi
rm -f "$log.json"

echo "stress-smoke: $((11 - failures)) passed, $failures failed"
exit $((failures > 0))
