#!/usr/bin/env python3
"""Draws ksync-bench's results.json: cycles per second against writer threads, one panel per group
count (KernelSync's variants solid, the C + liburcu peer in the same colour dashed, the NSLock and Mutex
peers grey), and a panel with the group mutex's hold time p50/p99 per variant.

    python3 scripts/plot-bench.py .build-bench-results/results.json .build-bench-results/remove-path.png

matplotlib comes from PyPI and is installed for the user when missing.
"""
import json
import subprocess
import sys

try:
    import matplotlib
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--user", "matplotlib"])
    import site
    import importlib
    sys.path.append(site.getusersitepackages())
    importlib.invalidate_caches()
    import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

VARIANT_COLOURS = {
    "freeUnderMutex": "tab:red",
    "deferredCancel": "tab:orange",
    "deferredDisable": "tab:blue",
    "deferredDisableRCU": "tab:green",
}
PEER_STYLES = {"NSLock+ARC": ("dimgray", ":"), "Mutex+ARC": ("black", ":")}


def series(rows, groups):
    """{(label, colour, style): [(threads, median, min, max)]} for one group count."""
    lines = {}
    for row in rows:
        if row["section"] != "throughput" or row["groups"] != groups:
            continue
        implementation, variant = row["implementation"], row.get("variant")
        if implementation in PEER_STYLES:
            colour, style = PEER_STYLES[implementation]
            key = (implementation, colour, style)
        else:
            colour = VARIANT_COLOURS.get(variant, "tab:purple")
            key = (f"{variant} ({implementation})", colour, "-" if implementation == "KernelSync" else "--")
        rate = row["cyclesPerSecond"]
        lines.setdefault(key, []).append(
            (row["threads"], rate["median"] / 1e6, rate["minimum"] / 1e6, rate["maximum"] / 1e6))
    return lines


def main(source, target):
    report = json.load(open(source))
    rows = report["rows"]
    group_counts = sorted({row["groups"] for row in rows if row["section"] == "throughput"})
    holds = [row for row in rows if row.get("groupMutexHold")]
    panels = len(group_counts) + (1 if holds else 0)
    if panels == 0:
        sys.exit(f"{source}: no throughput rows to draw")
    columns = min(2, panels)
    rows_of_panels = (panels + columns - 1) // columns
    figure, grid = plt.subplots(rows_of_panels, columns, figsize=(7 * columns, 5.5 * rows_of_panels), squeeze=False)
    axes = list(grid.flat)
    for spare in axes[panels:]:
        spare.remove()
    axes = axes[:panels]
    for axis, groups in zip(axes, group_counts):
        for (label, colour, style), points in sorted(series(rows, groups).items()):
            points.sort()
            threads = [p[0] for p in points]
            axis.plot(threads, [p[1] for p in points], style, color=colour, marker="o", markersize=4, label=label)
            axis.fill_between(threads, [p[2] for p in points], [p[3] for p in points], color=colour, alpha=0.12)
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted({row["threads"] for row in rows}), labels=[str(t) for t in sorted({row["threads"] for row in rows})])
        axis.set_yscale("log")
        axis.set_xlabel("writer threads")
        axis.set_ylabel("million probe+remove cycles / s (log)")
        axis.set_title(f"{groups} group{'s' if groups != 1 else ''}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    if holds:
        axis = axes[-1]
        group_choice = max({row["groups"] for row in holds}, key=lambda g: (g == 4, -g))
        for variant, colour in VARIANT_COLOURS.items():
            points = sorted((row["threads"], row["groupMutexHold"]) for row in holds
                            if row["variant"] == variant and row["groups"] == group_choice)
            if not points:
                continue
            threads = [p[0] for p in points]
            axis.plot(threads, [p[1]["p50Nanoseconds"] for p in points], "-", color=colour, marker="o",
                      markersize=4, label=f"{variant} p50")
            axis.plot(threads, [p[1]["p99Nanoseconds"] for p in points], "--", color=colour, marker="s",
                      markersize=4, label=f"{variant} p99")
        axis.set_xscale("log", base=2)
        axis.set_xticks(threads, labels=[str(t) for t in threads])
        axis.set_yscale("log")
        axis.set_xlabel("writer threads")
        axis.set_ylabel("group mutex hold time, ns (log)")
        axis.set_title(f"KernelSync group->mutex hold, {group_choice} groups")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(f"ksync-bench remove path (median of {report['repetitions']} runs; band: min–max)")
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    print(f"wrote {target}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: plot-bench.py RESULTS.json OUTPUT.png")
    main(sys.argv[1], sys.argv[2])
