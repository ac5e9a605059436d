import Testing
@testable import KernelSync

@Suite struct WorkqueueDelayedTests {
    @Test func aDelayedItemRunsOnceItsTimerFires() {
        let queue = Workqueue(name: "wq-delayed")
        let runs = Counter()
        let item = WorkItem(name: "delayed") { _ in runs.increment() }
        #expect(queue.queue(item, after: .milliseconds(5)))
        #expect(!queue.queue(item, after: .milliseconds(5)), "already pending")
        #expect(eventually { runs.value == 1 })
        queue.destroy()
    }

    @Test func modifyDelayMovesThePendingTimer() {
        let queue = Workqueue(name: "wq-mod-delayed")
        let runs = Counter()
        let item = WorkItem(name: "mod-delayed") { _ in runs.increment() }
        #expect(queue.queue(item, after: .seconds(3600)))
        #expect(queue.modifyDelay(of: item, to: .milliseconds(1)), "it was pending")
        #expect(eventually { runs.value == 1 })
        #expect(!queue.modifyDelay(of: item, to: .seconds(3600)), "idle: queued, not modified")
        #expect(item.isPending)
        #expect(item.cancelSync())
        queue.destroy()
        #expect(runs.value == 1)
    }

    @Test func cancelSyncOfADelayedItemRemovesItsTimer() {
        let queue = Workqueue(name: "wq-cancel-delayed")
        let runs = Counter()
        let item = WorkItem(name: "cancel-delayed") { _ in runs.increment() }
        queue.queue(item, after: .seconds(3600))
        #expect(item.cancelSync())
        #expect(!item.isPending)
        queue.destroy()
        #expect(Lockdep.reports(involving: queue.lockClass).isEmpty, "nothing was pending at destroy")
        #expect(runs.value == 0)
    }

    @Test func flushOfADelayedItemRunsItWithoutWaitingForTheTimer() {
        let queue = Workqueue(name: "wq-flush-delayed")
        let runs = Counter()
        let item = WorkItem(name: "flush-delayed") { _ in runs.increment() }
        queue.queue(item, after: .seconds(3600))
        #expect(item.flush())
        #expect(runs.value == 1)
        queue.destroy()
    }
}
