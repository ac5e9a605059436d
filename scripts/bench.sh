#!/usr/bin/env bash
# Runs the benchmark suites (release build, package-benchmark) and prints each benchmark's median wall
# time with its ratio to the "(baseline)" of its group, measured in the same run.
#
#   scripts/bench.sh                 # every suite
#   scripts/bench.sh MutexBenchmarks # one suite
#
# Benchmark names are "group: implementation"; a group's baseline has "(baseline)" in its name. An
# iteration is 1,000 operations (scalingFactor .kilo) unless the group name says "[N ops]" or "[1 op]".
# Results: the table on standard output, the raw JMH JSON under .build-bench-results/.
# The RCU suite's C peer links liburcu (urcu-memb); Debian's liburcu-dev is installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/install-liburcu.sh
root=$(pwd)
out="$root/.build-bench-results"
mkdir -p "$out"

targets=()
for suite in "$@"; do targets+=(--target "$suite"); done

cd Benchmarks
swift package --allow-writing-to-package-directory benchmark "${targets[@]}" --skip "retire storm.*" \
    --format jmh --path "$out" --no-progress >"$out/run.log" 2>&1 || { cat "$out/run.log"; exit 1; }

# The retire storm is one 10-second iteration, which the JMH export cannot hold: read its table instead.
if [ $# -eq 0 ] || [[ " $* " == *" RCUBenchmarks "* ]]; then
    swift package benchmark --target RCUBenchmarks --filter "retire storm.*" --no-progress >"$out/storm.log" 2>&1 \
        || { cat "$out/storm.log"; exit 1; }
    echo "RCUBenchmarks — retire storm, 2 threads, 10 s, backlog bound 10,000:"
    grep -E "Metric|peak backlog" "$out/storm.log" | sed "s/^/  /"
fi

python3 - "$out/Current_run.jmh.json" <<'PY'
import json, re, sys
from collections import defaultdict

rows = json.load(open(sys.argv[1]))
groups = defaultdict(list)
for row in rows:
    suite, name = row["benchmark"].split(".")[2], row["benchmark"].split(".", 3)[3].replace("_", " ")
    wall = row["secondaryMetrics"].get("Time (wall clock)")
    if wall is None:
        continue
    group = name.split(":")[0] if ":" in name else name
    # The JMH export gives microseconds per iteration; divide by the operations in one iteration.
    count = re.search(r"\[(\d+) ops?\]", group)
    scale = 1000 / int(count.group(1)) if count else 1
    groups[(suite, group)].append((name, wall["scorePercentiles"]["50.0"] * scale,
                                   wall["scorePercentiles"]["99.0"] * scale))
    for metric, values in row["secondaryMetrics"].items():
        if metric not in ("Time (wall clock)", "Throughput (# / s)"):
            print(f"{suite} — {name}: {metric} = {values['scorePercentiles']['50.0']:g}")

for (suite, group), items in sorted(groups.items()):
    baseline = next((p50 for name, p50, _ in items if "(baseline)" in name), None)
    print(f"\n{suite} — {group} (median ns per operation; ratio to the group's baseline, same run)")
    for name, p50, p90 in sorted(items, key=lambda item: item[1]):
        ratio = f"{p50 / baseline:6.2f}x" if baseline else "   n/a"
        print(f"  {name.split(':', 1)[-1].strip():<60} p50 {p50:10.2f}  p99 {p90:10.2f}  {ratio}")
PY
