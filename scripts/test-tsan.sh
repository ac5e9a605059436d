#!/usr/bin/env bash
# Runs the test suite under ThreadSanitizer.
#
# A racy Swift Testing or XCTest case can still print "passed"; only the exit status and TSan's own
# "WARNING: ThreadSanitizer" lines show the race. This script fails on either. It first runs one
# deliberately racy test and insists that it is caught, so a silent sanitizer cannot pass for a clean one.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "test-tsan: self-check (a deliberate race must be reported)"
# TSan names the deliberate race either way, depending on which of the two accesses it instruments
# first: as a plain data race or, through Swift's access markers, as a "Swift access race". Up to three
# attempts: once, on the first build of a fresh clone, the race went unreported (the test took 16 ms
# instead of the usual 120); six reruns of the same build all reported it. A sanitizer that is really
# off misses all three.
caught=no
for attempt in 1 2 3; do
    KSYNC_TSAN_SELF_CHECK=1 swift test --sanitize=thread --scratch-path .build-tsan \
        --filter deliberateDataRaceForSanitizerSelfCheck >"$log" 2>&1 || true
    if grep -qE "WARNING: ThreadSanitizer: (data race|Swift access race)" "$log"; then
        caught=yes
        break
    fi
    echo "test-tsan: self-check attempt $attempt: the deliberate race was not reported" >&2
done
if [ "$caught" != yes ]; then
    cat "$log"
    echo "test-tsan: the deliberate race was not reported; ThreadSanitizer is not working" >&2
    exit 1
fi
echo "test-tsan: self-check caught the deliberate race"

status=0
swift test --sanitize=thread --scratch-path .build-tsan "$@" 2>&1 | tee "$log" || status=$?
if grep -q "WARNING: ThreadSanitizer" "$log"; then
    echo "test-tsan: ThreadSanitizer reported a data race (see above)" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "test-tsan: swift test exited with status $status" >&2
    exit "$status"
fi
echo "test-tsan: clean"
