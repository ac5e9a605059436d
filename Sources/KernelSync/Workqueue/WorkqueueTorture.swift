import Synchronization

/// Torture for the work queue: threads race queue, cancelSync, flush and disableSync/enable on shared
/// items while workers run them, and every work function checks the contracts from the inside.
///
/// What a run proves, for every item: its function never runs after a ``WorkItem/cancelSync(file:line:)``
/// returned unless it was queued again afterwards; never runs while a ``WorkItem/disableSync(file:line:)``
/// holder has it disabled; never runs on two workers at once; and on return from cancelSync or disableSync
/// the item is neither pending nor running. Each caller thread has its own seeded generator, so a seed
/// replays the same operation sequences (the interleaving is the scheduler's).
///
/// A correct run prints "SUCCESS" with zero violations.
public enum WorkqueueTorture {
    public struct Configuration: Sendable {
        public var seed: UInt64
        /// Caller threads racing on the items.
        public var threads: Int
        public var items: Int
        /// Worker threads of the queue (its `maxActive`).
        public var workers: Int
        /// Operations per caller thread; the run also ends at `durationSeconds`, whichever comes first.
        public var operationsPerThread: Int
        public var durationSeconds: Double

        public init(
            seed: UInt64, threads: Int = 4, items: Int = 4, workers: Int = 2,
            operationsPerThread: Int = .max, durationSeconds: Double = .infinity
        ) {
            self.seed = seed
            self.threads = threads
            self.items = items
            self.workers = workers
            self.operationsPerThread = operationsPerThread
            self.durationSeconds = durationSeconds
        }
    }

    public struct Result: Sendable, CustomStringConvertible {
        public let seed: UInt64
        public let operations: Int
        public let runs: Int
        public let cancelled: Int
        /// Contract violations seen by work functions or by callers; zero in a correct run.
        public let violations: Int
        /// The most workers ever inside one item's function at once; one in a correct run.
        public let peakConcurrency: Int

        public var passed: Bool { violations == 0 && peakConcurrency <= 1 && runs > 0 }

        public var description: String {
            "wq-torture: seed \(seed) operations \(operations) runs \(runs) cancelled \(cancelled) "
                + "violations \(violations) peak concurrency \(peakConcurrency)\n"
                + "wq-torture: --- End of test: \(passed ? "SUCCESS" : "FAILURE")\n"
        }
    }

    /// Runs the torture and returns its verdict.
    ///
    /// Context: may sleep; not in atomic context or a read section.
    public static func run(_ configuration: Configuration) -> Result {
        let queue = Workqueue(name: "wq-torture", maxActive: configuration.workers)
        let tracked = (0..<configuration.items).map { _ in TrackedItem() }
        let items = tracked.map { track in WorkItem(name: "wq-torture item") { _ in track.functionBody() } }
        let callerViolations = Atomic<Int>(0)
        let operations = Atomic<Int>(0)
        let cancelled = Atomic<Int>(0)
        let deadline = configuration.durationSeconds.isFinite
            ? monotonicNanoseconds() + UInt64(configuration.durationSeconds * 1e9) : UInt64.max

        KernelThread.runAll(count: configuration.threads, name: "wq-torture") { thread in
            var random = SplitMix64(seed: configuration.seed &+ UInt64(thread))
            var done = 0
            while done < configuration.operationsPerThread && (done & 255 != 0 || monotonicNanoseconds() < deadline) {
                let index = Int(random.next() % UInt64(items.count))
                let item = items[index]
                let track = tracked[index]
                switch random.next() % 4 {
                case 0:
                    track.queueOrCancel.withLock { _ in
                        let wasForbidden = track.mustNotRun.exchange(false, ordering: .sequentiallyConsistent)
                        if !queue.queue(item) && wasForbidden {
                            track.mustNotRun.store(true, ordering: .sequentiallyConsistent)
                        }
                    }
                case 1:
                    track.queueOrCancel.withLock { _ in
                        if item.cancelSync() { cancelled.wrappingAdd(1, ordering: .relaxed) }
                        if item.isPending || item.isRunning { callerViolations.wrappingAdd(1, ordering: .relaxed) }
                        track.mustNotRun.store(true, ordering: .sequentiallyConsistent)
                    }
                case 2:
                    item.flush()
                default:
                    item.disableSync()
                    track.disabledHolders.wrappingAdd(1, ordering: .sequentiallyConsistent)
                    if item.isPending || item.isRunning { callerViolations.wrappingAdd(1, ordering: .relaxed) }
                    track.disabledHolders.wrappingSubtract(1, ordering: .sequentiallyConsistent)
                    item.enable()
                }
                done += 1
            }
            operations.wrappingAdd(done, ordering: .relaxed)
        }
        queue.flush()
        for item in items { item.cancelSync() }
        queue.destroy()
        return Result(
            seed: configuration.seed, operations: operations.load(ordering: .relaxed),
            runs: tracked.reduce(0) { $0 + $1.runs.load(ordering: .relaxed) },
            cancelled: cancelled.load(ordering: .relaxed),
            violations: callerViolations.load(ordering: .relaxed)
                + tracked.reduce(0) { $0 + $1.violations.load(ordering: .relaxed) },
            peakConcurrency: tracked.map { $0.peak.load(ordering: .relaxed) }.max() ?? 0)
    }
}

/// What the torture knows about one item, and what its function saw.
///
/// Ordering: sequentially consistent on `mustNotRun` and `disabledHolders`, so that a function that
/// starts after a caller's store sees it; the counters are relaxed (read after the threads are joined).
private final class TrackedItem: Sendable {
    /// Serialises queue and cancelSync on this item, so "cancelled and not queued since" is exact. The
    /// function never takes it (that would be hazard 2 itself).
    let queueOrCancel = Mutex<Void>(())
    /// Written under `queueOrCancel`: a cancelSync returned and no queue succeeded since.
    let mustNotRun = Atomic<Bool>(false)
    /// Threads between a returned disableSync and their enable.
    let disabledHolders = Atomic<Int>(0)
    let inside = Atomic<Int>(0)
    let peak = Atomic<Int>(0)
    let violations = Atomic<Int>(0)
    let runs = Atomic<Int>(0)

    func functionBody() {
        let now = inside.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
        peak.max(now, ordering: .relaxed)
        if mustNotRun.load(ordering: .sequentiallyConsistent) { violations.wrappingAdd(1, ordering: .relaxed) }
        if disabledHolders.load(ordering: .sequentiallyConsistent) > 0 { violations.wrappingAdd(1, ordering: .relaxed) }
        runs.wrappingAdd(1, ordering: .relaxed)
        inside.wrappingSubtract(1, ordering: .sequentiallyConsistent)
    }
}
