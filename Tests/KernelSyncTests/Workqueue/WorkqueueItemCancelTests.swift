import Testing
@testable import KernelSync

@Suite struct WorkqueueItemCancelTests {
    @Test func cancelWithdrawsThePendingInstanceAndReturnsWhetherItWasPending() {
        let release = Flag()
        let queue = blockedQueue("wq-cancel", release: release)
        let runs = Counter()
        let item = WorkItem(name: "cancel") { _ in runs.increment() }
        queue.queue(item)
        #expect(item.cancel())
        #expect(!item.cancel())
        #expect(!item.isPending)
        release.raise()
        queue.flush()
        #expect(runs.value == 0)
        queue.destroy()
    }

    @Test func cancelSyncReturnsWhetherPendingAndLeavesTheItemIdle() {
        let release = Flag()
        let queue = blockedQueue("wq-cancel-sync", release: release)
        let runs = Counter()
        let item = WorkItem(name: "cancel-sync") { _ in runs.increment() }
        #expect(!item.cancelSync(), "an idle item was not pending")
        queue.queue(item)
        #expect(item.cancelSync())
        #expect(!item.isPending && !item.isRunning)
        release.raise()
        queue.flush()
        #expect(runs.value == 0)
        queue.destroy()
    }

    @Test func cancelSyncWaitsForTheRunningFunction() {
        let queue = Workqueue(name: "wq-cancel-wait")
        let run = startBlockedRun(on: queue, name: "cancel-wait")
        let (item, release, finished) = (run.item, run.release, run.finished)
        let raiser = raiseSoon(release)
        #expect(!item.cancelSync(), "running, not pending")
        #expect(finished.isRaised)
        #expect(!item.isRunning)
        raiser.join()
        queue.destroy()
    }

    @Test func cancelSyncStopsAnItemThatRequeuesItself() {
        let queue = Workqueue(name: "wq-self-requeue")
        let runs = Counter()
        let item = WorkItem(name: "self-requeue") { item in
            runs.increment()
            queue.queue(item)
        }
        queue.queue(item)
        #expect(eventually { runs.value >= 3 })
        item.cancelSync()
        let runsAtCancel = runs.value
        #expect(!item.isPending && !item.isRunning)
        queue.flush()
        #expect(runs.value == runsAtCancel)
        queue.destroy()
    }

    @Test func concurrentCancelSyncCallersAllWaitUntilTheRunEnds() {
        let queue = Workqueue(name: "wq-cancel-many")
        let run = startBlockedRun(on: queue, name: "cancel-many")
        let (item, release, finished) = (run.item, run.release, run.finished)
        let raiser = raiseSoon(release)
        let sawRunning = Counter()
        KernelThread.runAll(count: 3, name: "canceller") { _ in
            item.cancelSync()
            if !finished.isRaised || item.isRunning { sawRunning.increment() }
        }
        #expect(sawRunning.value == 0)
        raiser.join()
        queue.destroy()
    }

    @Test func flushWaitsForTheLastQueuedInstance() {
        let queue = Workqueue(name: "wq-flush-item")
        let started = Flag()
        let release = Flag()
        let runs = Counter()
        let item = WorkItem(name: "flush-item") { _ in
            if runs.increment() == 1 {
                started.raise()
                release.wait()
            }
        }
        #expect(!item.flush(), "an idle item has nothing to wait for")
        queue.queue(item)
        started.wait()
        queue.queue(item)
        let raiser = raiseSoon(release)
        #expect(item.flush())
        #expect(runs.value == 2)
        #expect(!item.isPending && !item.isRunning)
        raiser.join()
        queue.destroy()
    }
}
