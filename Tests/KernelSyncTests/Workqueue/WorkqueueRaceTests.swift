import Synchronization
import Testing
@testable import KernelSync

/// Four threads queue, cancelSync, flush and disable/enable shared items while two workers run them.
@Suite struct WorkqueueRaceTests {
    /// What the test knows about one item, and the violations its function saw.
    final class Tracked: Sendable {
        /// Serialises queue and cancelSync on this item, so "cancelled and not queued since" is exact.
        /// The function never takes it (that would be hazard 2 itself).
        let queueOrCancel = Mutex<Void>(())
        /// Written under `queueOrCancel`: a cancelSync returned and no queue succeeded since.
        let mustNotRun = Atomic<Bool>(false)
        /// Threads between a returned disableSync and their enable.
        let disabledHolders = Atomic<Int>(0)
        let meter = ConcurrencyMeter()
        let violations = Counter()
        let runs = Counter()

        func functionBody() {
            meter.enter()
            if mustNotRun.load(ordering: .sequentiallyConsistent) { violations.increment() }
            if disabledHolders.load(ordering: .sequentiallyConsistent) > 0 { violations.increment() }
            runs.increment()
            if disabledHolders.load(ordering: .sequentiallyConsistent) > 0 { violations.increment() }
            meter.leave()
        }
    }

    @Test func queueCancelFlushAndDisableRaceWithoutBreakingTheContracts() {
        let seed: UInt64 = 0x5EED_2026
        let iterationsPerThread = 25_000
        let queue = Workqueue(name: "wq-race", maxActive: 2)
        let tracked = (0..<4).map { _ in Tracked() }
        let items = tracked.map { track in WorkItem(name: "race") { _ in track.functionBody() } }
        let callerViolations = Counter()

        KernelThread.runAll(count: 4, name: "racer") { thread in
            var random = SplitMix64(seed: seed &+ UInt64(thread))
            for _ in 0..<iterationsPerThread {
                let index = Int(random.next() % 4)
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
                        item.cancelSync()
                        if item.isPending || item.isRunning { callerViolations.increment() }
                        track.mustNotRun.store(true, ordering: .sequentiallyConsistent)
                    }
                case 2:
                    item.flush()
                default:
                    item.disableSync()
                    track.disabledHolders.wrappingAdd(1, ordering: .sequentiallyConsistent)
                    if item.isPending || item.isRunning { callerViolations.increment() }
                    track.disabledHolders.wrappingSubtract(1, ordering: .sequentiallyConsistent)
                    item.enable()
                }
            }
        }
        queue.flush()
        let runs = tracked.map(\.runs.value).reduce(0, +)
        #expect(callerViolations.value == 0, "seed \(seed)")
        #expect(tracked.allSatisfy { $0.violations.value == 0 }, "seed \(seed)")
        #expect(tracked.allSatisfy { $0.meter.peak <= 1 }, "seed \(seed)")
        #expect(runs > 0, "the functions ran \(runs) times")
        for item in items { item.cancelSync() }
        queue.destroy()
        #expect(Lockdep.reports(involving: queue.lockClass).isEmpty)
    }
}
