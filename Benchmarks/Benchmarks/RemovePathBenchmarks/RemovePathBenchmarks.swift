// The regression guard of the remove path (issue 7, section 5): one probe+remove cycle of the IOMMU
// model per variant, on one thread over a persistent system (group_device allocation, the group mutex
// twice, the RCU list updates, the variant's free), and on two threads through IOMMUWorkload.
//
// An iteration is 1,000 cycles (scalingFactor .kilo). The wall-clock p90 of each benchmark is checked
// against Benchmarks/Thresholds/RemovePathBenchmarks.<name>.p90.json by scripts/bench-guard.sh; a run
// more than `allowedRegression` percent slower fails (`allowedRegressionTwoThreads` on two threads). The validator is off. Names have no spaces or
// slashes: package-benchmark 1.38.1 writes threshold files with those replaced by "_" but looks them
// up by the raw name.
import Benchmark
import IOMMUModel
import KernelSync

/// Percent by which a run's p90 may exceed the checked-in threshold. One thread's iterations are
/// bimodal (those that include a batch of in-place drops take about twice as long), and which mode the
/// p90 lands in varies from run to run: on 2026-12-03 one run in five of unchanged code gave
/// freeUnderMutex 646 µs against its 389 µs threshold (+66%, which failed at the 60% allowed then).
/// A regression of the kind the guard exists for (twice as slow or worse) still fails.
let allowedRegression = 100.0
/// The same for two threads, whose runs are bimodal on two cores (the writers and the reclaimer thread
/// share them, and back-to-back runs differed by 90%): a regression of the kind the guard exists for
/// (several times slower) still fails.
let allowedRegressionTwoThreads = 150.0

let benchmarks: @Sendable () -> Void = {
    func configuration(allowing regression: Double) -> Benchmark.Configuration {
        Benchmark.Configuration(
            metrics: [.wallClock], scalingFactor: .kilo, maxDuration: .seconds(2), maxIterations: 2_000,
            thresholds: [.wallClock: BenchmarkThresholds(relative: [.p90: regression])])
    }

    for variant in RemoveVariant.allCases {
        // One system per benchmark, built in setup and shut down in teardown; the closure below only
        // runs cycles.
        let holder = SystemHolder()
        Benchmark("probe+remove_1_thread_4_groups:\(variant.rawValue)", configuration: configuration(allowing: allowedRegression), closure: { benchmark in
            let (system, groups, device) = holder.parts!
            for cycle in benchmark.scaledIterations {
                try system.addDevice(device, to: groups[cycle % groups.count])
                system.removeDevice(device)
            }
        }, setup: {
            Lockdep.mode = .off
            holder.start(variant: variant, groups: 4)
        }, teardown: {
            holder.stop()
        })

        Benchmark("probe+remove_2_threads_4_groups:\(variant.rawValue)", configuration: configuration(allowing: allowedRegressionTwoThreads)) { benchmark in
            let result = IOMMUWorkload.run(
                variant: variant, threads: 2, groups: 4, cycles: benchmark.scaledIterations.count)
            blackHole(result.cyclesPerSecond)
        }
    }
}

/// The system a one-thread benchmark runs on, between its setup and teardown.
final class SystemHolder: @unchecked Sendable {
    /// Set by setup, cleared by teardown; the benchmark runs in between, on the same thread.
    var parts: (IOMMUSystem, [IOMMUGroup], Device)?

    func start(variant: RemoveVariant, groups: Int) {
        let system = IOMMUSystem(.init(
            variant: variant, lockClasses: IOMMULockClasses(tag: "remove-path-\(variant.rawValue)"), bookkeeping: false))
        parts = (system, (0..<groups).map { _ in system.allocGroup() }, Device(name: "bench0", topology: -1))
    }

    func stop() {
        guard let parts else { return }
        let (system, groups, _) = parts
        for group in groups { group.put() }
        RCU.barrier()
        system.shutdown()
        self.parts = nil
    }
}
