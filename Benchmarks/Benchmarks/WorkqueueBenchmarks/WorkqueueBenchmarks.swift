// Work queue benchmarks: queue+run throughput against DispatchQueue.async doing the same work, and
// cancelSync latency of an idle and of a pending item.
//
// Run: cd Benchmarks && swift package benchmark --target WorkqueueBenchmarks
import Benchmark
import Dispatch
import KernelSync
import Synchronization

/// The work every peer does per item: one relaxed atomic increment.
private final class Tally: Sendable {
    let count = Atomic<Int>(0)
    func bump() { count.wrappingAdd(1, ordering: .relaxed) }
}

/// A queue whose only worker spins in a blocker, so every queued instance of `item` stays pending.
private final class PendingFixture: Sendable {
    let queue = Workqueue(name: "bench/pending")
    let item = WorkItem(name: "bench pending") { _ in }
    private let release = Tally()

    init() {
        let release = release
        queue.queue(WorkItem(name: "bench blocker") { _ in
            while release.count.load(ordering: .acquiring) == 0 {}
        })
    }

    func tearDown() {
        release.count.store(1, ordering: .releasing)
        queue.destroy()
    }
}

private let pendingFixture = PendingFixture()

/// Items queued per measured iteration; throughput is reported per item.
private let batch = 1_000

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .cpuTotal],
        timeUnits: .microseconds,
        maxDuration: .seconds(3),
        maxIterations: 10_000
    )

    for workers in [1, 2] {
        Benchmark("Workqueue queue+run, \(workers) worker(s), \(batch) items",
                  configuration: .init(scalingFactor: .kilo)) { benchmark in
            let queue = Workqueue(name: "bench/\(workers)", maxActive: workers)
            let tally = Tally()
            let items = (0..<batch).map { _ in WorkItem(name: "bench item") { _ in tally.bump() } }
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                for item in items { blackHole(queue.queue(item)) }
                queue.flush()
            }
            benchmark.stopMeasurement()
            blackHole(tally.count.load(ordering: .relaxed))
            queue.destroy()
        }

        Benchmark("DispatchQueue.async, \(workers == 1 ? "serial" : "concurrent"), \(batch) items",
                  configuration: .init(scalingFactor: .kilo)) { benchmark in
            let queue = workers == 1
                ? DispatchQueue(label: "bench.serial")
                : DispatchQueue(label: "bench.concurrent", attributes: .concurrent)
            let tally = Tally()
            let group = DispatchGroup()
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                for _ in 0..<batch { queue.async(group: group) { tally.bump() } }
                group.wait()
            }
            benchmark.stopMeasurement()
            blackHole(tally.count.load(ordering: .relaxed))
        }
    }

    Benchmark("cancelSync of an idle item", configuration: .init(metrics: [.wallClock], timeUnits: .nanoseconds)) { benchmark in
        let item = WorkItem(name: "bench idle") { _ in }
        for _ in benchmark.scaledIterations { blackHole(item.cancelSync()) }
    }

    Benchmark("cancelSync of a pending item",
              configuration: .init(metrics: [.wallClock], timeUnits: .nanoseconds),
              teardown: { pendingFixture.tearDown() }) { benchmark in
        pendingFixture.queue.queue(pendingFixture.item)
        benchmark.startMeasurement()
        blackHole(pendingFixture.item.cancelSync())
        benchmark.stopMeasurement()
    }
}
