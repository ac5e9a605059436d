import Glibc
import Testing
@testable import KernelSync

/// The validator annotations of hazard 2 and the misuse reports that do not stop the process.
@Suite struct WorkqueueValidatorTests {
    @Test func cancelSyncUnderALockTheFunctionTakesIsReportedWithoutDeadlock() {
        let queue = Workqueue(name: "wq-hazard2")
        let groupLock = KernelMutex(name: "hazard2 group->mutex")
        let broken = WorkItem(name: "hazard2 broken_work") { _ in groupLock.withLock {} }
        queue.queue(broken)
        broken.flush()
        // The item is idle now: this cancelSync cannot deadlock, yet the order is recorded.
        groupLock.withLock { _ = broken.cancelSync() }
        let kinds = Lockdep.reports(involving: groupLock.lockClass).map(\.kind)
        #expect(kinds == [.circularDependency])
        #expect(Lockdep.reports(involving: broken.lockClass).map(\.kind) == [.circularDependency])
        queue.destroy()
    }

    @Test func cancelSyncAfterUnlockingIsNotReported() {
        let queue = Workqueue(name: "wq-hazard2-fixed")
        let groupLock = KernelMutex(name: "fixed group->mutex")
        let broken = WorkItem(name: "fixed broken_work") { _ in groupLock.withLock {} }
        queue.queue(broken)
        broken.flush()
        groupLock.withLock {}
        broken.cancelSync()
        #expect(Lockdep.reports(involving: groupLock.lockClass).isEmpty)
        #expect(Lockdep.reports(involving: broken.lockClass).isEmpty)
        queue.destroy()
    }

    @Test func aFunctionThatReturnsHoldingALockIsReported() {
        let queue = Workqueue(name: "wq-leak")
        let leaked = LockdepMap(name: "leaked pseudo-lock")
        let item = WorkItem(name: "leaks-lock") { _ in leaked.acquire() }
        queue.queue(item)
        item.flush()
        let reports = Lockdep.reports(involving: leaked.lockClass)
        #expect(reports.first?.kind == .workqueueLeakedLock)
        #expect(reports.first?.involves(item.lockClass) == true)
        queue.destroy()
    }

    /// A worker left in a read section would hold up every grace period: reported and ended, with the
    /// validator on (before its leaked-lock check, which then sees nothing left) and off. In a process
    /// of its own, where a regression hangs `synchronize` until the alarm fails it, not the suite.
    @Test func aFunctionThatReturnsInAReadSectionIsReportedAndTheSectionEnded() async {
        await #expect(processExitsWith: .success) {
            Lockdep.mode = .report
            WorkqueueValidatorTests.leakAReadSectionFromAWorkFunction()
            exit(0)
        }
    }

    @Test func aFunctionThatReturnsInAReadSectionIsEndedWithTheValidatorOff() async {
        await #expect(processExitsWith: .success) {
            Lockdep.mode = .off
            WorkqueueValidatorTests.leakAReadSectionFromAWorkFunction()
            exit(0)
        }
    }

    /// The two tests above: a work function leaves a read section open; the report comes, and the
    /// grace period after it does not hang.
    static func leakAReadSectionFromAWorkFunction() {
        alarm(30)
        let queue = Workqueue(name: "wq-leak-rcu", line: 1)
        let item = WorkItem(name: "leaks-rcu", line: 2) { _ in RCU.readLock() }
        queue.queue(item)
        item.flush()
        RCU.synchronize()
        let kinds = Lockdep.reports.filter { $0.site.contains("leaks-rcu") }.map(\.kind)
        precondition(kinds == [.leakedReadSection], "\(kinds)")
        queue.destroy()
    }

    @Test func aFunctionThatReturnsInAtomicContextIsReported() {
        let queue = Workqueue(name: "wq-leak-atomic")
        let item = WorkItem(name: "leaks-atomic") { _ in Lockdep.enterAtomicContext("leaked") }
        queue.queue(item)
        item.flush()
        #expect(Lockdep.reports(involving: item.lockClass).first?.kind == .workqueueLeakedLock)
        queue.destroy()
    }

    @Test func cancelSyncAndFlushFromTheItemsOwnFunctionAreReportedAndReturn() {
        let queue = Workqueue(name: "wq-self-cancel")
        let returned = Counter()
        let item = WorkItem(name: "self-cancel") { item in
            item.cancelSync()
            item.flush()
            returned.increment()
        }
        queue.queue(item)
        #expect(eventually { returned.value == 1 })
        let reports = Lockdep.reports(involving: item.lockClass)
        #expect(reports.count == 2 && reports.allSatisfy { $0.kind == .workSelfFlush })
        queue.destroy()
    }

    @Test func flushingAQueueFromItsOwnWorkerIsReportedAndReturns() {
        let queue = Workqueue(name: "wq-self-flush")
        let item = WorkItem(name: "flushes-own-queue") { _ in queue.flush() }
        queue.queue(item)
        item.flush()
        #expect(Lockdep.reports(involving: queue.lockClass).map(\.kind) == [.workqueueSelfFlush])
        queue.destroy()
    }

    @Test func cancelSyncInAtomicContextIsReported() {
        let marker = LockdepMap(name: "atomic-context marker")
        let item = WorkItem(name: "cancel-in-atomic") { _ in }
        marker.acquire()
        Lockdep.withAtomicContext("test irq") { _ = item.cancelSync() }
        marker.release()
        #expect(Lockdep.reports(involving: marker.lockClass).map(\.kind) == [.sleepInAtomicContext])
    }

    @Test func releasingAPendingItemIsReportedAndItsInstanceWithdrawn() {
        let release = Flag()
        let queue = blockedQueue("wq-release-pending", release: release)
        let runs = Counter()
        var itemClass: LockClass?
        do {
            let item = WorkItem(name: "released-pending") { _ in runs.increment() }
            queue.queue(item)
            itemClass = item.lockClass
        }
        release.raise()
        queue.flush()
        #expect(runs.value == 0)
        #expect(itemClass.map { Lockdep.reports(involving: $0).map(\.kind) } == [.workReleasedWhilePending])
        queue.destroy()
    }

    @Test func flushingAnItemPendingBehindTheCallerOnAnOrderedQueueIsReportedAndReturns() {
        let queue = Workqueue(name: "wq-ordered-flush", ordered: true)
        let behind = WorkItem(name: "ordered-flush-behind") { _ in }
        let waited = Recorder<Bool>()
        let item = WorkItem(name: "ordered-flush-caller") { _ in
            queue.queue(behind)
            waited.append(behind.flush())
        }
        queue.queue(item)
        queue.flush()
        queue.flush()
        #expect(waited.values == [false])
        #expect(Lockdep.reports(involving: queue.lockClass).map(\.kind) == [.recursiveLocking])
        #expect(!behind.isPending)
        queue.destroy()
    }

    @Test func aFunctionThatFlushesAQueueWhoseWorkerWaitedForItIsReported() {
        // The item runs from `first` while queued on `second`: second's worker waits for that run to
        // end (second, then the item), and the instance is cancelled before it runs there. A later
        // run from `first` that flushes `second` (the item, then second) closes the cycle that hangs
        // when the two coincide: reported, though no run waited for anything.
        let first = Workqueue(name: "wq-cross-first")
        let second = Workqueue(name: "wq-cross-second")
        let started = Flag(), release = Flag(), flushesSecond = Flag()
        let item = WorkItem(name: "wq-cross-item") { _ in
            if flushesSecond.isRaised {
                second.flush()
            } else if !started.isRaised {
                started.raise()
                release.wait()
            }
        }
        #expect(first.queue(item))
        started.wait()
        #expect(second.queue(item))
        usleep(20_000)
        #expect(item.cancel(), "second's worker holds the instance, still pending")
        release.raise()
        second.flush()
        #expect(Lockdep.reports(involving: second.lockClass).isEmpty)
        flushesSecond.raise()
        #expect(first.queue(item))
        first.flush()
        #expect(Lockdep.reports(involving: second.lockClass).map(\.kind) == [.circularDependency])
        first.destroy()
        second.destroy()
    }

    @Test func itemsGivenAnExplicitClassShareItsDependencies() {
        let workClass = LockClass(name: "explicit_work")
        let lock = KernelMutex(name: "explicit_work_lock")
        let queue = Workqueue(name: "wq-explicit-class")
        let first = WorkItem(name: "first", class: workClass) { _ in lock.withLock {} }
        let second = WorkItem(class: workClass) { _ in }
        #expect(first.lockClass === workClass && second.lockClass === workClass)
        #expect(second.name == "explicit_work")
        queue.queue(first)
        first.flush()
        lock.withLock { second.cancelSync() }
        #expect(Lockdep.reports(involving: workClass).map(\.kind) == [.circularDependency])
        queue.destroy()
    }
}
