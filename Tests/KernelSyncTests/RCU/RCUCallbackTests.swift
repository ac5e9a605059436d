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

    @Test func barrierWaitsForCallbacksStillOnAnotherThreadsList() {
        // A few callbacks stay on their thread's own list (below the hand-over threshold) while that
        // thread blocks, and the reclaimer, busy in a callback, cannot collect them: the barrier must
        // collect and wait for them itself.
        let ran = Counter(), busy = Flag(), release = Flag(), queued = Flag(), done = Flag()
        RCU.call {
            busy.raise()
            while !release.isRaised { usleep(100) }
        }
        #expect(eventually { busy.isRaised })
        let caller = KernelThread(name: "rcu-test-list-owner") {
            for _ in 0..<3 { RCU.call { ran.increment() } }
            queued.raise()
            while !done.isRaised { usleep(100) }
        }
        #expect(eventually { queued.isRaised })
        let releaser = raiseSoon(release)
        RCU.barrier()
        #expect(ran.value == 3)
        done.raise()
        caller.join()
        releaser.join()
    }

    @Test func theBacklogCountsCallbacksStillOnTheThreadsLists() {
        // With the reclaimer held in a callback nothing runs, so the backlog can only grow; the three
        // callbacks below stay on this thread's list (below the hand-over threshold) unless a barrier
        // in another suite collects them, and they count either way.
        let busy = Flag(), release = Flag()
        RCU.call {
            busy.raise()
            while !release.isRaised { usleep(100) }
        }
        #expect(eventually { busy.isRaised })
        let before = RCU.backlog
        for _ in 0..<3 { RCU.call {} }
        #expect(RCU.backlog >= before + 3)
        release.raise()
        RCU.barrier()
    }

    @Test func anExitingThreadHandsItsCallbacksOver() {
        let ran = Counter()
        let caller = KernelThread(name: "rcu-test-list-exit") {
            for _ in 0..<3 { RCU.call { ran.increment() } }
        }
        caller.join()
        #expect(eventually { ran.value == 3 }, "the reclaimer runs them without a barrier")
        RCU.barrier()
        #expect(ran.value == 3)
    }

    @Test func aLoneCallbackWakesAnIdleReclaimer() {
        // One callback, far below the hand-over threshold, queued while the reclaimer sleeps with
        // nothing to do: the queueing itself must wake it (no barrier, no hand-over comes to help).
        for round in 0..<50 {
            RCU.barrier()
            usleep(2_000)
            let ran = Flag()
            RCU.call { ran.raise() }
            guard eventually(within: 10, { ran.isRaised }) else {
                Issue.record("round \(round): the callback never ran")
                return
            }
        }
    }

    @Test func eachThreadsCallbacksRunInTheOrderItQueuedThem() {
        let runs = Recorder<(thread: Int, index: Int)>()
        KernelThread.runAll(count: 3, name: "rcu-test-order") { thread in
            for index in 0..<2_000 { RCU.call { runs.append((thread, index)) } }
        }
        RCU.barrier()
        let values = runs.values
        #expect(values.count == 6_000)
        for thread in 0..<3 {
            #expect(values.filter { $0.thread == thread }.map(\.index) == Array(0..<2_000))
        }
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

    /// Retired objects whose deinit enters a read section and never leaves it.
    final class LeaksAReadSection: Sendable {
        deinit { RCU.readLock() }
    }

    /// A callback, or a retired object's deinit, that returns inside a read section would hold up every
    /// later grace period from its thread: reported and ended there, in every validator mode. (Before,
    /// the next `synchronize` hung, silently; the alarm turns such a hang into a failure.)
    @Test func aCallbackThatLeavesAReadSectionOpenIsReportedAndGracePeriodsGoOn() async {
        await #expect(processExitsWith: .success) {
            Lockdep.mode = .off
            alarm(30)
            RCU.call { RCU.readLock(); RCU.readLock() }
            RCU.barrier()
            RCU.synchronize()
            for _ in 0..<300 { RCU.retire(LeaksAReadSection()) }
            RCU.barrier()
            RCU.synchronize()
            precondition(!RCU.isInReadSection, "a deinit's section was left on this thread")
            let leaks = Lockdep.reports.filter { $0.kind == .leakedReadSection }
            precondition(leaks.contains { $0.text.contains("RCU nest depth 2->0") }, "\(leaks.map(\.text))")
            exit(0)
        }
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
        // Counts in the backlog until it returns, so the bound is reached; returns once the next caller
        // has either been admitted above the bound or has waited. Queued and running before the bound
        // is lowered, so that its own queueing never waits for room (other suites queue callbacks too),
        // and compared with counts taken once it runs.
        let running = Flag()
        let before = Mutex<(waits: Int, overBound: Int)?>(nil)
        RCU.call {
            running.raise()
            _ = eventually {
                guard let before = before.withLock({ $0 }) else { return false }
                return Reclaimer.shared.lock.withLock {
                    Reclaimer.shared.overBoundAdmissions > before.overBound
                        || Reclaimer.shared.backPressureWaits > before.waits
                }
            }
        }
        #expect(eventually { running.isRaised })
        RCU.maxBacklog = 1
        defer { RCU.maxBacklog = Reclaimer.defaultMaxBacklog }
        let counts = Reclaimer.shared.lock.withLock {
            (waits: Reclaimer.shared.backPressureWaits, overBound: Reclaimer.shared.overBoundAdmissions)
        }
        before.withLock { $0 = counts }
        Lockdep.withAtomicContext("rcu-test") { RCU.call {} }
        let after = Reclaimer.shared.lock.withLock { Reclaimer.shared.overBoundAdmissions }
        #expect(after > counts.overBound)
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
