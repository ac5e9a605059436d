#!/usr/bin/env bash
# Builds a portable bundle of the remove-path benchmark for a scaling run on another Linux x86-64
# machine that has neither Swift nor liburcu: ksync-bench with the Swift runtime linked statically,
# the C + liburcu peer with liburcu linked statically, and a script that runs the matrix there.
#
#   scripts/bench-bundle.sh                     # writes .build-bench-bundle/ and ksync-bench-bundle.tar.gz
#   # on the other machine:
#   tar xzf ksync-bench-bundle.tar.gz && ksync-bench-bundle/run.sh [ksync-bench arguments]
#
# run.sh writes results.json, results.csv and ratios.csv to ./results (or $OUT/results when $OUT is
# set), and the machine's core count, kernel and CPU to env.txt beside them; draw the plot back here
# with scripts/plot-bench.py. The other machine needs glibc at least as new as this one's.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/install-liburcu.sh
bundle=.build-bench-bundle/ksync-bench-bundle
rm -rf "$bundle"
mkdir -p "$bundle"

gcc -O2 -Wall -Wextra -std=gnu11 -pthread scripts/peers/remove_peer.c -o "$bundle/remove-peer" \
    -Wl,-Bstatic -lurcu-memb -lurcu-common -Wl,-Bdynamic

swift build -c release --product ksync-bench --static-swift-stdlib --scratch-path .build-static
cp "$(swift build -c release --static-swift-stdlib --scratch-path .build-static --show-bin-path)/ksync-bench" "$bundle/"
strip "$bundle/ksync-bench" "$bundle/remove-peer"

cat > "$bundle/run.sh" <<'EOF'
#!/usr/bin/env bash
# The remove-path matrix on this machine; arguments go to ksync-bench (default: the whole matrix).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-.}/results"
mkdir -p "$out"
{ echo "cores $(nproc)"; uname -srm; grep -m1 "model name" /proc/cpuinfo || true; ldd --version 2>&1 | sed -n 1p; } > "$out/env.txt"
"$here/ksync-bench" --c-peer "$here/remove-peer" --output-dir "$out" "$@" 2>&1 | tee "$out/output.txt"
EOF
chmod +x "$bundle/run.sh"

tar czf .build-bench-bundle/ksync-bench-bundle.tar.gz -C .build-bench-bundle ksync-bench-bundle
ls -l .build-bench-bundle/ksync-bench-bundle.tar.gz
