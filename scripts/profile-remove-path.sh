#!/usr/bin/env bash
# Counts, per probe+remove cycle and per call site, the reference-count operations (swift_retain,
# swift_release and their _n forms) and mallocs of the remove path, with perf uprobes that record each
# call's return address. A developer tool (needs root and perf), not part of CI.
#
#   scripts/profile-remove-path.sh deferredDisableRCU          # totals per thread
#   scripts/profile-remove-path.sh deferredDisableRCU 1 -v     # and each call site at 0.3 a cycle or more
#
# Builds scripts/profile/main.swift (the workload on its own) into .build-profile/ first. A site is the
# function its return address falls in, so inlined code counts where it landed; a retain of nil (an
# `RCUPointer.assign(nil)`) is a call too and is counted.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
variant=${1:-deferredDisableRCU}
threads=${2:-1}
verbose=${3:-}
cycles=30000
warmup=20000

command -v perf >/dev/null || { echo "profile-remove-path: perf is missing (Debian: apt-get install linux-perf)" >&2; exit 1; }

driver=.build-profile/driver
mkdir -p "$driver/Sources/driver"
cp scripts/profile/main.swift "$driver/Sources/driver/main.swift"
# The dependency's identity is the checkout's directory name, whatever it is.
cat > "$driver/Package.swift" <<MANIFEST
// swift-tools-version: 6.0
import PackageDescription
let package = Package(
    name: "driver",
    dependencies: [.package(path: "$root")],
    targets: [.executableTarget(name: "driver", dependencies: [.product(name: "IOMMUModel", package: "$(basename "$root")")])])
MANIFEST
(cd "$driver" && swift build -c release >/dev/null)
binary=$(realpath "$driver/.build/release/driver")

swift_core=$(ldd "$binary" | awk '/libswiftCore.so/ {print $3}')
libc=$(ldd "$binary" | awk '/libc.so.6/ {print $3}')
perf probe -q -d 'ksprofile:*' >/dev/null 2>&1 || true
for function in swift_retain swift_release swift_retain_n swift_release_n; do
    perf probe -q -f -x "$swift_core" --add "ksprofile:$function=$function ra=+0(%sp):x64"
done
perf probe -q -f -x "$libc" --add 'ksprofile:malloc=__libc_malloc ra=+0(%sp):x64'
trap 'perf probe -q -d "ksprofile:*" >/dev/null 2>&1 || true; rm -f "$data"' EXIT
data=$(mktemp)

perf record -q -e 'ksprofile:*' -o "$data" "$binary" "$variant" "$threads" "$cycles" >/dev/null 2>&1
# (grep stops reading at the first match; perf's SIGPIPE is expected.)
base=$(perf script -i "$data" --show-mmap-events 2>/dev/null | grep -m1 "r-xp.*$binary" | sed -E 's/.*\[(0x[0-9a-f]+)\(.*/\1/' || true)
perf script -i "$data" -F comm,event,trace 2>/dev/null | awk '{print $1, $2, $4}' | sort | uniq -c |
python3 -c '
import subprocess, sys
base, binary, cycles, verbose = int(sys.argv[1], 16), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "-v"
rows = []
for line in sys.stdin:
    count, thread, event, ra = line.split()
    thread = thread.rstrip("0123456789").rstrip("/")
    rows.append((int(count), thread, event.split(":")[1], int(ra[3:], 16) - base))
names = subprocess.run(["addr2line", "-f", "-e", binary] + ["0x%x" % max(r[3], 0) for r in rows],
                       capture_output=True, text=True).stdout.split("\n")[0::2]
names = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(names),
                       capture_output=True, text=True).stdout.split("\n")
totals, sites = {}, {}
for (count, thread, event, _), name in zip(rows, names):
    totals[(thread, event)] = totals.get((thread, event), 0) + count
    sites[(thread, event, name)] = sites.get((thread, event, name), 0) + count
if verbose:
    for (thread, event, name), count in sorted(sites.items(), key=lambda item: (item[0][0], item[0][1], -item[1])):
        if count / cycles >= 0.3:
            print("%5.2f  %-14s %-16s %s" % (count / cycles, thread, event, name[:110]))
print("per cycle, by thread:")
for (thread, event), count in sorted(totals.items()):
    if count / cycles >= 0.1:
        print("  %-14s %-16s %6.2f" % (thread, event, count / cycles))
' "$base" "$binary" $((cycles + warmup)) "$verbose"
