import Glibc
@testable import KernelSync
import Synchronization
import Testing

/// Where callbacks run: handed back to the thread that queued them once their grace period has passed
/// (the kernel's per-CPU invocation), taken over by the reclaimer from a thread that does not run them,
/// and all on the reclaimer with ``RCU/offloadsCallbacks`` (`rcu_nocbs`). Part of the serialized
/// callback suite: several of its tests change the backlog bound, which these would trip over.
extension RCUCallbackTests {
    /// An object whose deinit records whether it ran among the callbacks handed back to the thread that
    /// queued them. (A retire's own caller may drop the last reference too, when the object's grace
    /// period has passed before `retire` returns: that is not a handed-back callback.)
    final class Tracked: Sendable {
        let handedBack: Recorder<Bool>
        init(_ handedBack: Recorder<Bool>) { self.handedBack = handedBack }
        deinit { handedBack.append(ThreadCallbacks.currentIfRegistered?.ownerIsRunning == true) }
    }

    /// Retires objects on a new thread until one of them is dropped among the callbacks handed back to
    /// it, or `seconds` pass; returns how many it retired.
    private func retireUntilOneIsHandedBack(_ handedBack: Recorder<Bool>, seconds: Double) -> Int {
        let retired = Atomic<Int>(0)
        KernelThread(name: "rcu-test-retirer") {
            let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
            while !handedBack.values.contains(true) && monotonicNanoseconds() < deadline {
                for _ in 0..<64 { RCU.retire(Tracked(handedBack)) }
                retired.add(64, ordering: .relaxed)
            }
        }.join()
        return retired.load(ordering: .relaxed)
    }

    @Test func aThreadThatKeepsQueueingRunsItsOwnCallbacks() {
        RCU.barrier()
        // The default, set here so that the test holds with KSYNC_RCU_NOCBS=1 in the environment too.
        let offloading = RCU.offloadsCallbacks
        RCU.offloadsCallbacks = false
        defer { RCU.offloadsCallbacks = offloading }
        let handedBack = Recorder<Bool>()
        let retired = retireUntilOneIsHandedBack(handedBack, seconds: 10)
        RCU.barrier()
        #expect(handedBack.values.contains(true), "no retired object was dropped by the thread that retired it")
        #expect(handedBack.values.count == retired)
    }

    /// Retired objects whose deinit retires another object, as one holding an ``RCUPointer`` does.
    final class HoldsAPointer: Sendable {
        let pointer = RCUPointer<Plain>(Plain())
        let ranHandedBack: Recorder<Bool>
        init(_ ranHandedBack: Recorder<Bool>) { self.ranHandedBack = ranHandedBack }
        deinit { ranHandedBack.append(ThreadCallbacks.currentIfRegistered?.ownerIsRunning == true) }
    }
    final class Plain: Sendable {}

    /// The call that fills a thread's list (the hand-over threshold is its capacity by default) finds
    /// callbacks handed back to the thread, whose deinits queue more: the full list must be handed
    /// over first. It used to run them first, and their first queueing overflowed the list (a trap).
    @Test func aFullListIsHandedOverBeforeTheCallbacksHandedBackRun() async {
        await #expect(processExitsWith: .success) {
            RCU.offloadsCallbacks = false
            let capacity = ThreadCallbacks.capacity
            precondition(Reclaimer.shared.handOffThreshold.load(ordering: .relaxed) == capacity)
            let ranHandedBack = Recorder<Bool>()
            for _ in 0..<20 {
                // An empty list and nothing handed back; then a full list of such objects, handed over.
                RCU.barrier()
                for _ in 0..<capacity { RCU.retire(HoldsAPointer(ranHandedBack)) }
                let list = ThreadCallbacks.currentIfRegistered!
                // Their grace period passes and they come back to this thread (unless the reclaimer
                // takes them over first: the round then proves nothing, and the next one tries again).
                guard eventually(within: 5, { list.hasReturned.load(ordering: .relaxed) }) else { continue }
                // Inside a read section a retire runs nothing handed back, so the list fills to one
                // short of full with them still waiting.
                RCU.withReadLock { for _ in 0..<(capacity - 1) { RCU.retire(Plain()) } }
                RCU.retire(Plain())
            }
            RCU.barrier()
            precondition(ranHandedBack.values.contains(true), "no round ran the handed-back deinits on the full list's thread")
            exit(0)
        }
    }

    /// Records, when its deinit runs, whether the thread held `lock` and whether it was running the
    /// callbacks handed back to it.
    final class WatchesALock: Sendable {
        let lock: KernelMutex
        let deinits: Recorder<(held: Bool, handedBack: Bool)>
        init(_ lock: KernelMutex, _ deinits: Recorder<(held: Bool, handedBack: Bool)>) {
            self.lock = lock
            self.deinits = deinits
        }
        deinit {
            deinits.append((lock.isHeldByCurrentThread, ThreadCallbacks.currentIfRegistered?.ownerIsRunning == true))
        }
    }

    /// A thread that retires only while it holds a mutex never runs its handed-back callbacks inside
    /// that critical section; its unlock runs them, after it (as the kernel runs pending softirqs when
    /// a section that held them off ends). With the validator on here (the unlock's slow path), and
    /// off in a process of its own (the inlined fast path).
    @Test func handedBackCallbacksRunAfterTheUnlockNeverInsideTheCriticalSection() {
        let (ranAfterAnUnlock, ranInside) = RCUCallbackTests.retireUnderALock()
        #expect(ranAfterAnUnlock, "no handed-back callback ran on the retiring thread after an unlock")
        #expect(!ranInside, "a deinit ran inside the retiring thread's critical section")
    }

    @Test func handedBackCallbacksRunAfterTheUnlockWithTheValidatorOff() async {
        await #expect(processExitsWith: .success) {
            Lockdep.mode = .off
            let (ranAfterAnUnlock, ranInside) = RCUCallbackTests.retireUnderALock()
            precondition(ranAfterAnUnlock && !ranInside, "after an unlock: \(ranAfterAnUnlock), inside: \(ranInside)")
            exit(0)
        }
    }

    /// Retires on a new thread, only under a mutex, until a handed-back callback has run on it; returns
    /// whether one ran before the thread's exit (which runs what is left either way), and whether any
    /// handed-back callback ran inside the critical section. (A deinit may still run there as the
    /// retire's own release of its argument, when the reclaimer ran the callback before `retire`
    /// returned: in a debug build the retire's retain and release of its argument are not fused. That
    /// is the caller's reference, not a callback, and it happened under TSan in 3 of 15 runs of the
    /// suite.)
    static func retireUnderALock() -> (ranAfterAnUnlock: Bool, ranInside: Bool) {
        RCU.barrier()
        let offloading = RCU.offloadsCallbacks
        RCU.offloadsCallbacks = false
        defer { RCU.offloadsCallbacks = offloading }
        let lock = KernelMutex(name: "rcu-test-retire-under-lock")
        let deinits = Recorder<(held: Bool, handedBack: Bool)>()
        let ranBeforeExit = Flag()
        KernelThread(name: "rcu-test-retirer-under-lock") {
            let deadline = monotonicNanoseconds() + 5_000_000_000
            while !deinits.values.contains(where: { $0.handedBack }) && monotonicNanoseconds() < deadline {
                lock.withLock { for _ in 0..<64 { RCU.retire(WatchesALock(lock, deinits)) } }
            }
            if deinits.values.contains(where: { $0.handedBack }) { ranBeforeExit.raise() }
        }.join()
        RCU.barrier()
        return (ranBeforeExit.isRaised, deinits.values.contains(where: { $0.held && $0.handedBack }))
    }

    @Test func withOffloadingEveryCallbackRunsOnTheReclaimer() {
        RCU.barrier()
        RCU.offloadsCallbacks = true
        defer { RCU.offloadsCallbacks = false }
        let handedBack = Recorder<Bool>()
        let retired = retireUntilOneIsHandedBack(handedBack, seconds: 0.3)
        RCU.barrier()
        #expect(handedBack.values.filter { $0 }.count == 0)
        #expect(handedBack.values.count == retired)
    }

    /// Starts a thread that retires three objects, waits until they have been handed back to it (or
    /// dropped), then blocks without queueing again until `done` is raised. Returns once it blocks.
    private func startRetirerThatStopsQueueing(_ handedBack: Recorder<Bool>, until done: Flag) -> KernelThread {
        let waiting = Flag()
        let thread = KernelThread(name: "rcu-test-stops-queueing") {
            for _ in 0..<3 { RCU.retire(Tracked(handedBack)) }
            let list = ThreadCallbacks.currentIfRegistered!
            _ = eventually { list.hasReturned.load(ordering: .relaxed) || handedBack.values.count == 3 }
            waiting.raise()
            while !done.isRaised { usleep(100) }
        }
        #expect(eventually { waiting.isRaised })
        return thread
    }

    @Test func callbacksHandedBackToAThreadThatStopsQueueingRunWithoutIt() {
        // Only the reclaimer's take-over can drop them, and no barrier asks it to.
        let handedBack = Recorder<Bool>(), done = Flag()
        let caller = startRetirerThatStopsQueueing(handedBack, until: done)
        #expect(eventually { handedBack.values.count == 3 }, "the reclaimer takes them over without a barrier")
        #expect(!handedBack.values.contains(true))
        done.raise()
        caller.join()
    }

    @Test func barrierRunsCallbacksHandedBackToABlockedThread() {
        let handedBack = Recorder<Bool>(), done = Flag()
        let caller = startRetirerThatStopsQueueing(handedBack, until: done)
        RCU.barrier()
        #expect(handedBack.values.count == 3)
        done.raise()
        caller.join()
    }

    /// An object whose deinit, when it runs among its thread's handed-back callbacks, takes a while.
    final class SlowToDrop: Sendable {
        let started: Flag, finished: Flag, elsewhere: Flag
        init(started: Flag, finished: Flag, elsewhere: Flag) {
            self.started = started
            self.finished = finished
            self.elsewhere = elsewhere
        }
        deinit {
            guard ThreadCallbacks.currentIfRegistered?.ownerIsRunning == true else { return elsewhere.raise() }
            started.raise()
            usleep(300_000)
            finished.raise()
        }
    }

    @Test func barrierWaitsForACallbackItsThreadIsRunningWhileLaterOnesRunElsewhere() {
        // The barrier's callbacks are numbered: had it counted them, the closures another thread
        // queues after it (run on the reclaimer) would have made up for the deinit still running.
        RCU.barrier()
        let offloading = RCU.offloadsCallbacks
        RCU.offloadsCallbacks = false
        defer { RCU.offloadsCallbacks = offloading }
        // Tries until the slow object is dropped by its own thread (not, say, by the quarantine of a
        // debug-reclamation test running beside this suite).
        let deadline = monotonicNanoseconds() + 20_000_000_000
        while monotonicNanoseconds() < deadline {
            let started = Flag(), finished = Flag(), elsewhere = Flag()
            let retirer = KernelThread(name: "rcu-test-slow-drop") {
                RCU.retire(SlowToDrop(started: started, finished: finished, elsewhere: elsewhere))
                while !started.isRaised && !elsewhere.isRaised {
                    RCU.retire(Tracked(Recorder<Bool>()))
                    usleep(20)
                }
            }
            #expect(eventually { started.isRaised || elsewhere.isRaised })
            guard started.isRaised else {
                retirer.join()
                continue
            }
            let stop = Flag()
            let caller = KernelThread(name: "rcu-test-later-calls") {
                usleep(20_000)
                while !stop.isRaised { RCU.call {} }
            }
            RCU.barrier()
            #expect(finished.isRaised, "rcu_barrier returned while a callback queued before it was running")
            stop.raise()
            caller.join()
            retirer.join()
            RCU.barrier()
            return
        }
        Issue.record("no slow object was dropped by its own thread in 20 s of tries")
    }

    @Test func updatesUnderTheUpdateLockLeaveHandedBackObjectsForLater() {
        // `RCUPointer.assign`, `RCUList.delete` and `unlink` run under the update lock by contract: dropping a
        // batch of objects there would make every other updater wait for their deinits.
        final class Entry: RCUListElement, @unchecked Sendable {}
        let offloading = RCU.offloadsCallbacks
        RCU.offloadsCallbacks = false
        defer { RCU.offloadsCallbacks = offloading }
        let handedBack = Recorder<Bool>(), done = Flag(), droppedInside = Recorder<Bool>()
        let lock = KernelMutex(name: "rcu-test-update-lock")
        let pointer = RCUPointer<Entry>(Entry())
        let list = RCUList<Entry>()
        KernelThread(name: "rcu-test-update-under-lock") {
            for round in 0..<20 {
                for _ in 0..<3 { RCU.retire(Tracked(handedBack)) }
                let callbacks = ThreadCallbacks.currentIfRegistered!
                guard eventually(within: 5, { callbacks.hasReturned.load(ordering: .relaxed) }) else { continue }
                let entry = Entry()
                lock.withLock {
                    let before = handedBack.values.filter { $0 }.count
                    switch round % 3 {
                    case 0:
                        pointer.assign(Entry(), holding: lock)
                    case 1:
                        list.addTail(entry, holding: lock)
                        list.delete(entry, holding: lock)
                    default:
                        list.addTail(entry, holding: lock)
                        list.unlink(entry, holding: lock)
                    }
                    droppedInside.append(handedBack.values.filter { $0 }.count != before)
                }
            }
            done.raise()
        }.join()
        RCU.barrier()
        #expect(done.isRaised)
        #expect(!droppedInside.values.isEmpty, "the retirer never saw its objects handed back")
        #expect(!droppedInside.values.contains(true), "handed-back objects were dropped under the update lock")
    }

    @Test func aClosureHandedBackRunsOnTheReclaimerNotOnTheQueueingThread() {
        // The closure waits for the thread that queued it: run there, at that thread's next retire,
        // it would wait for itself.
        let ranOnReclaimer = Flag(), release = Flag()
        KernelThread(name: "rcu-test-closure-owner") {
            RCU.call {
                if Reclaimer.shared.isCurrentThread { ranOnReclaimer.raise() }
                _ = eventually { release.isRaised }
            }
            let droppedOn = Recorder<Bool>()
            _ = eventually {
                RCU.retire(Tracked(droppedOn))
                return ranOnReclaimer.isRaised
            }
            release.raise()
        }.join()
        #expect(ranOnReclaimer.isRaised)
        RCU.barrier()
    }

    @Test func mixedCallsAndRetiresOfEachThreadRunInTheOrderItQueuedThem() {
        final class Ordered: Sendable {
            let runs: Recorder<(thread: Int, index: Int)>
            let thread: Int, index: Int
            init(_ runs: Recorder<(thread: Int, index: Int)>, _ thread: Int, _ index: Int) {
                self.runs = runs
                self.thread = thread
                self.index = index
            }
            deinit { runs.append((thread, index)) }
        }
        let runs = Recorder<(thread: Int, index: Int)>()
        KernelThread.runAll(count: 2, name: "rcu-test-mixed-order") { thread in
            for index in 0..<20_000 {
                // Runs of closures and of retires, so that some segments are the thread's to run and
                // some the reclaimer's, and the queue changes hands.
                if (index / 700) % 2 == 0 {
                    RCU.call { runs.append((thread, index)) }
                } else {
                    RCU.retire(Ordered(runs, thread, index))
                }
            }
        }
        RCU.barrier()
        let values = runs.values
        #expect(values.count == 40_000)
        for thread in 0..<2 {
            let order = values.filter { $0.thread == thread }.map(\.index)
            let firstOutOfOrder = zip(order, 0...).first { $0 != $1 }
            #expect(firstOutOfOrder == nil, "thread \(thread): \(order.count) ran, first out of order at \(firstOutOfOrder.map { "\($0.1): \(order[max(0, $0.1 - 3)..<min(order.count, $0.1 + 4)])" } ?? "")")
        }
    }

    @Test func barrierFromADeinitRunOnTheRetiringThreadIsReportedAndReturns() {
        final class CallsBarrier: Sendable {
            let line: UInt
            let droppedOn: Recorder<Int32>
            init(line: UInt, _ droppedOn: Recorder<Int32>) {
                self.line = line
                self.droppedOn = droppedOn
            }
            deinit {
                droppedOn.append(KernelThread.currentID)
                RCU.barrier(line: line)
            }
        }
        let line: UInt = #line
        let droppedOn = Recorder<Int32>()
        KernelThread(name: "rcu-test-barrier-deinit") {
            // Inside a read section, so that no grace period, and so not the callback, can end before
            // `retire` returns: the caller's own reference to its argument is gone by then, and the
            // callback's is the last. (A debug build does not fuse `retire`'s retain and release of
            // its argument; when the reclaimer ran the callback first, the deinit ran outside any
            // callback and nothing was reported: 1 of 3 loaded TSan runs, found in review.)
            RCU.withReadLock { RCU.retire(CallsBarrier(line: line, droppedOn)) }
            // Keep retiring until the object has been dropped: here, most likely, or on the reclaimer
            // (a barrier elsewhere takes everything over). Either way the barrier must not wait.
            let others = Recorder<Bool>()
            _ = eventually { RCU.retire(Tracked(others)); return !droppedOn.values.isEmpty }
        }.join()
        RCU.barrier()
        #expect(droppedOn.values.count == 1)
        #expect(rcuReports(.barrierFromCallback, line: line).count == 1)
    }
}
