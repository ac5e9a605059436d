// The remove-path workload on its own, for profilers: `scripts/profile-remove-path.sh` builds it (release)
// and counts reference-count operations and allocations per cycle under perf uprobes.
//
// Usage: driver VARIANT [THREADS [CYCLES [READERS [GROUPS]]]]. A warm-up of 20,000 cycles runs first;
// the profile script divides its counts by CYCLES + 20,000.
import Foundation
import IOMMUModel
import KernelSync

let arguments = CommandLine.arguments
guard arguments.count > 1, let variant = RemoveVariant(rawValue: arguments[1]) else {
    FileHandle.standardError.write(Data("usage: driver VARIANT [THREADS [CYCLES [READERS [GROUPS]]]]\n".utf8))
    exit(2)
}
func argument(_ index: Int, default value: Int) -> Int { arguments.count > index ? Int(arguments[index]) ?? value : value }
let threads = argument(2, default: 1)
let cycles = argument(3, default: 300_000)
let readers = argument(4, default: 0)
let groups = argument(5, default: 4)

_ = IOMMUWorkload.run(variant: variant, threads: threads, groups: groups, cycles: 20_000, readers: readers)
let gracePeriodsBefore = RCU.completedGracePeriods
let result = IOMMUWorkload.run(variant: variant, threads: threads, groups: groups, cycles: cycles, readers: readers)
let gracePeriods = RCU.completedGracePeriods - gracePeriodsBefore
print(variant, threads, String(
    format: "%.2f M cycles/s, %.2f M reader passes/s, %.0f grace periods/s",
    result.cyclesPerSecond / 1e6, Double(result.readerPasses) / result.seconds / 1e6,
    Double(gracePeriods) / result.seconds))
