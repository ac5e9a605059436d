// Work queue benchmarks: queue+run throughput against DispatchQueue.async doing the same work, and the
// latency of cancelSync on an idle and on a pending item.
//
// Each iteration does 1,000 operations (scalingFactor .kilo), so scripts/bench.sh reports nanoseconds per
// operation; percentiles are over iterations (batches of 1,000), not over single operations. Names are
// "group: implementation"; each group's "(baseline)" runs in the same process. The validator is off,
// as it is for DispatchQueue.
import Benchmark
import Dispatch
import Glibc
import KernelSync
import Synchronization

/// The work every peer does per item: one relaxed atomic increment.
private final class Tally: Sendable {
    let count = Atomic<Int>(0)
    func bump() { count.wrappingAdd(1, ordering: .relaxed) }
}

/// A queue whose only worker spins in a blocker, so that a queued item stays pending until cancelled.
private final class BlockedQueue: Sendable {
    let queue = Workqueue(name: "bench/blocked")
    private let released = Atomic<Bool>(false)

    init() {
        queue.queue(WorkItem(name: "bench blocker") { [self] _ in
            while !released.load(ordering: .acquiring) { sched_yield() }
        })
    }

    func tearDown() {
        released.store(true, ordering: .releasing)
        queue.destroy()
    }
}

let benchmarks: @Sendable () -> Void = {
    Lockdep.mode = .off
    let perItem = Benchmark.Configuration(
        metrics: [.wallClock, .throughput], scalingFactor: .kilo, maxDuration: .seconds(2), maxIterations: 2_000)

    for workers in [1, 2] {
        let group = "queue+run \(workers) worker\(workers == 1 ? "" : "s")"
        let tally = Tally()
        let queue = Workqueue(name: "bench/\(workers)", maxActive: workers)
        let items = (0..<1_000).map { _ in WorkItem(name: "bench item") { _ in tally.bump() } }
        Benchmark("\(group): Workqueue", configuration: perItem, closure: { benchmark in
            for index in benchmark.scaledIterations { blackHole(queue.queue(items[index])) }
            queue.flush()
        }, teardown: { queue.destroy() })

        let dispatch = workers == 1
            ? DispatchQueue(label: "bench.serial")
            : DispatchQueue(label: "bench.concurrent", attributes: .concurrent)
        let done = DispatchGroup()
        Benchmark("\(group): DispatchQueue.async (baseline)", configuration: perItem) { benchmark in
            for _ in benchmark.scaledIterations { dispatch.async(group: done) { tally.bump() } }
            done.wait()
        }
    }

    let idle = WorkItem(name: "bench idle") { _ in }
    Benchmark("cancel latency: cancelSync of an idle item", configuration: perItem) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(idle.cancelSync()) }
    }

    let blocked = BlockedQueue()
    let pending = WorkItem(name: "bench pending") { _ in }
    Benchmark("cancel latency: queue + cancel (no wait) of a pending item (baseline)", configuration: perItem) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(blocked.queue.queue(pending))
            blackHole(pending.cancel())
        }
    }
    Benchmark("cancel latency: queue + cancelSync of a pending item", configuration: perItem, closure: { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(blocked.queue.queue(pending))
            blackHole(pending.cancelSync())
        }
    }, teardown: { blocked.tearDown() })
}
