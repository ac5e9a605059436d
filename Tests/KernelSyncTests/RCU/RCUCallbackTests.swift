import Glibc
@testable import KernelSync
import Synchronization
import Testing

@Suite(.serialized) struct RCUCallbackTests {
    @Test func callbacksRunAfterTheirGracePeriodInQueueOrderManyPerBatch() {
        let runs = Recorder<(index: Int, batch: UInt64, elapsed: Bool)>()
        for index in 0..<200 {
            let cookie = RCU.snapshot()
            RCU.call {
                let batch = Reclaimer.shared.lock.withLock { Reclaimer.shared.batchNumber }
                runs.append((index, batch, RCU.poll(cookie)))
            }
        }
        RCU.barrier()
        let values = runs.values
        #expect(values.map(\.index) == Array(0..<200))
        #expect(values.allSatisfy { $0.elapsed })
        #expect(Set(values.map(\.batch)).count < 200)
    }

    @Test func retireKeepsTheObjectAliveUntilAGracePeriodHasPassed() {
        final class Tracked {
            let freed: Flag
            init(_ freed: Flag) { self.freed = freed }
            deinit { freed.raise() }
        }
        let freed = Flag(), inSection = Flag(), release = Flag()
        let reader = KernelThread(name: "rcu-test-retire-reader") {
            RCU.readLock()
            inSection.raise()
            while !release.isRaised { usleep(100) }
            RCU.readUnlock()
        }
        #expect(eventually { inSection.isRaised })
        RCU.retire(Tracked(freed))
        usleep(50_000)
        #expect(!freed.isRaised)
        release.raise()
        reader.join()
        RCU.barrier()
        #expect(freed.isRaised)
    }

    @Test func barrierWaitsUntilQueuedCallbacksHaveRunNotJustAGracePeriod() {
        let mayFinish = Flag(), finished = Flag()
        RCU.call {
            while !mayFinish.isRaised { usleep(100) }
            finished.raise()
        }
        let releaser = KernelThread(name: "rcu-test-barrier-releaser") {
            RCU.synchronize()
            usleep(50_000)
            mayFinish.raise()
        }
        RCU.barrier()
        #expect(finished.isRaised)
        releaser.join()
    }

    @Test func barrierFromACallbackIsReportedAndReturns() {
        let line: UInt = #line
        RCU.call { RCU.barrier(line: line) }
        RCU.barrier()
        #expect(rcuReports(.barrierFromCallback, line: line).count == 1)
    }

    @Test func theBacklogBoundIsHonouredUnderARetireStorm() {
        let bound = 256
        RCU.maxBacklog = bound
        defer { RCU.maxBacklog = Reclaimer.defaultMaxBacklog }
        RCU.barrier()
        RCU.resetPeakBacklog()
        let waitsBefore = Reclaimer.shared.lock.withLock { Reclaimer.shared.backPressureWaits }
        // Hold the reclaimer until the storm has had to wait, so the bound is certainly reached.
        RCU.call {
            _ = eventually { Reclaimer.shared.lock.withLock { Reclaimer.shared.backPressureWaits } > waitsBefore }
        }
        final class Payload {}
        KernelThread.runAll(count: 2, name: "rcu-test-storm") { _ in
            for _ in 0..<5_000 { RCU.retire(Payload()) }
        }
        RCU.barrier()
        #expect(RCU.peakBacklog <= bound)
        #expect(Reclaimer.shared.lock.withLock { Reclaimer.shared.backPressureWaits } > waitsBefore)
    }

    @Test func callingInsideAReadSectionNeverWaitsForTheBacklog() {
        RCU.withReadLock {
            let before = Reclaimer.shared.lock.withLock { Reclaimer.shared.overBoundAdmissions }
            Reclaimer.shared.lock.withLock { Reclaimer.shared.maxBacklog = 1 }
            defer { RCU.maxBacklog = Reclaimer.defaultMaxBacklog }
            for _ in 0..<4 { RCU.call {} }
            #expect(Reclaimer.shared.lock.withLock { Reclaimer.shared.overBoundAdmissions } > before)
        }
        RCU.barrier()
    }

    @Test func callingInAtomicContextNeverWaitsForTheBacklog() {
        RCU.barrier()
        let before = Reclaimer.shared.lock.withLock {
            (waits: Reclaimer.shared.backPressureWaits, overBound: Reclaimer.shared.overBoundAdmissions)
        }
        RCU.maxBacklog = 1
        defer { RCU.maxBacklog = Reclaimer.defaultMaxBacklog }
        // Counts in the backlog until it returns, so the bound is reached; returns once the next caller
        // has either been admitted above the bound or has waited.
        RCU.call {
            _ = eventually {
                Reclaimer.shared.lock.withLock {
                    Reclaimer.shared.overBoundAdmissions > before.overBound
                        || Reclaimer.shared.backPressureWaits > before.waits
                }
            }
        }
        Lockdep.withAtomicContext("rcu-test") { RCU.call {} }
        let after = Reclaimer.shared.lock.withLock { Reclaimer.shared.overBoundAdmissions }
        #expect(after > before.overBound)
        RCU.barrier()
    }

    @Test func waitingForTheBacklogWhileHoldingALockACallbackTakesIsACircularDependency() {
        let mutex = KernelMutex(name: "rcu-test-backlog-mutex")
        RCU.call { mutex.withLock {} }
        RCU.barrier()
        let waitsBefore = Reclaimer.shared.lock.withLock { Reclaimer.shared.backPressureWaits }
        RCU.maxBacklog = 1
        defer { RCU.maxBacklog = Reclaimer.defaultMaxBacklog }
        // Fills the backlog until the caller below has had to wait.
        RCU.call {
            _ = eventually { Reclaimer.shared.lock.withLock { Reclaimer.shared.backPressureWaits } > waitsBefore }
        }
        mutex.withLock { RCU.call {} }
        RCU.barrier()
        #expect(Reclaimer.shared.lock.withLock { Reclaimer.shared.backPressureWaits } > waitsBefore)
        #expect(Lockdep.reports(involving: mutex.lockClass).map(\.kind) == [.circularDependency])
    }

    @Test func barrierWhileHoldingALockACallbackTakesIsACircularDependencyEvenWithNothingQueued() {
        let mutex = KernelMutex(name: "rcu-test-barrier-mutex")
        RCU.call { mutex.withLock {} }
        RCU.barrier()
        KernelThread(name: "barrier-under-lock") { mutex.withLock { RCU.barrier() } }.join()
        #expect(Lockdep.reports(involving: mutex.lockClass).map(\.kind) == [.circularDependency])
    }
}
