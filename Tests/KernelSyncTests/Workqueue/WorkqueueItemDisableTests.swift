import Testing
@testable import KernelSync

@Suite struct WorkqueueItemDisableTests {
    @Test func queueingFailsWhileDisabledUntilAMatchingEnable() {
        let queue = Workqueue(name: "wq-disable")
        let runs = Counter()
        let item = WorkItem(name: "disable") { _ in runs.increment() }
        #expect(!item.disable())
        #expect(!item.disable())
        #expect(!queue.queue(item))
        #expect(!item.enable(), "still disabled once")
        #expect(!queue.queue(item))
        #expect(item.enable())
        #expect(queue.queue(item))
        item.flush()
        #expect(runs.value == 1)
        queue.destroy()
    }

    @Test func disableReturnsWhetherAnInstanceWasPending() {
        let release = Flag()
        let queue = blockedQueue("wq-disable-pending", release: release)
        let runs = Counter()
        let item = WorkItem(name: "disable-pending") { _ in runs.increment() }
        queue.queue(item)
        #expect(item.disable())
        release.raise()
        queue.flush()
        #expect(runs.value == 0)
        item.enable()
        queue.destroy()
    }

    @Test func disableSyncWaitsForTheRunningFunctionAndKeepsTheItemDisabled() {
        let queue = Workqueue(name: "wq-disable-sync")
        let run = startBlockedRun(on: queue, name: "disable-sync")
        let (item, release, finished) = (run.item, run.release, run.finished)
        let raiser = raiseSoon(release)
        #expect(!item.disableSync())
        #expect(finished.isRaised && !item.isRunning)
        #expect(!queue.queue(item))
        #expect(item.enable())
        raiser.join()
        queue.destroy()
    }

    @Test func aDisableSyncBeforeTheFirstQueueingCarriesOverToIt() {
        // A never-queued item keeps its disable levels in the handle; the first queueing makes the
        // item's state with them.
        let queue = Workqueue(name: "wq-disable-first")
        let runs = Counter()
        let item = WorkItem(name: "disable-first") { _ in runs.increment() }
        #expect(!item.disableSync())
        #expect(!item.disable())
        #expect(item.description == "WorkItem(disable-first: disabled ×2)")
        #expect(!queue.queue(item))
        #expect(item.description == "WorkItem(disable-first: disabled ×2)")
        #expect(!item.enable())
        #expect(item.enable())
        #expect(queue.queue(item))
        item.flush()
        #expect(runs.value == 1)
        queue.destroy()
    }

    @Test func aDisableRacingTheFirstQueueingIsNeverLost() {
        // The first queueing makes the item's state while a disable may be counting a level in the
        // handle: whichever wins, the level must be in the state afterwards.
        let queue = Workqueue(name: "wq-disable-race", maxActive: 2)
        let items = (0..<2_000).map { index in WorkItem(name: "disable-race-\(index)") { _ in } }
        KernelThread.runAll(count: 2, name: "disable-race") { thread in
            for item in items {
                if thread == 0 { queue.queue(item) } else { item.disable() }
            }
        }
        for item in items {
            #expect(!queue.queue(item), "\(item) lost its disable level")
            item.enable()
            item.cancelSync()
        }
        queue.destroy()
    }

    @Test func anEnableWithoutADisableIsReported() {
        let item = WorkItem(name: "unbalanced-enable") { _ in }
        #expect(item.enable())
        #expect(Lockdep.reports(involving: item.lockClass).map(\.kind) == [.workEnableUnbalanced])
        // The item was never queued, so its core never linked the handle: the report still names the
        // item, not its class ("(work_completion)unbalanced-enable").
        #expect(Lockdep.reports(involving: item.lockClass).first?.text.contains("enable_work(unbalanced-enable)") == true)
    }
}
