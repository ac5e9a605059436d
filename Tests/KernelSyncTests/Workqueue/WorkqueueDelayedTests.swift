import Glibc
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

    /// Since Linux 6.10 `cancel_work_sync()` disables the item while it waits, and `mod_delayed_work()`
    /// of a disabled item queues nothing and returns false (before, an item being cancelled made it
    /// return true, from `try_to_grab_pending()`'s -ENOENT).
    @Test func modifyDelayOfADisabledOrCancellingItemQueuesNothingAndReturnsFalse() {
        let queue = Workqueue(name: "wq-mod-refused")
        let disabled = WorkItem(name: "mod-disabled") { _ in }
        #expect(!disabled.disable())
        #expect(!queue.modifyDelay(of: disabled, to: .zero))
        #expect(!disabled.isPending)
        disabled.enable()

        let run = startBlockedRun(on: queue, name: "mod-cancelling")
        let canceller = KernelThread(name: "canceller") { run.item.cancelSync() }
        // Until the cancel begins, modifyDelay queues an instance behind the run (which the cancel then
        // withdraws); once it has begun, nothing is queued.
        #expect(eventually {
            let wasPending = queue.modifyDelay(of: run.item, to: .seconds(3600))
            return !wasPending && !run.item.isPending
        })
        run.release.raise()
        canceller.join()
        #expect(run.finished.isRaised)
        #expect(!run.item.isPending && !run.item.isRunning)
        queue.destroy()
    }

    @Test func aFlushWaitingForAnInstanceThatModifyDelayReplacesReturns() {
        // mod_delayed_work withdraws the instance the flush waits for: the flush is done, whenever its
        // replacement runs (an hour from now).
        let release = Flag()
        let queue = blockedQueue("wq-flush-then-modify", release: release)
        let item = WorkItem(name: "flush-then-modify") { _ in }
        #expect(queue.queue(item))
        let flushed = Flag()
        let flusher = KernelThread(name: "wq-flusher") {
            item.flush()
            flushed.raise()
        }
        #expect(eventually { "\(item)".contains("pending") })
        usleep(20_000)
        #expect(queue.modifyDelay(of: item, to: .seconds(3600)))
        release.raise()
        #expect(eventually(within: 5) { flushed.isRaised }, "the flush still waits: \(item)")
        #expect(item.cancelSync())
        flusher.join()
        queue.destroy()
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

    @Test func aDelayTooLargeToRepresentSaturatesInsteadOfWrappingIntoThePast() {
        let queue = Workqueue(name: "wq-huge-delay")
        let ran = Counter(), markerRan = Flag()
        let far = WorkItem(name: "huge-delay") { _ in ran.increment() }
        let marker = WorkItem(name: "huge-delay-marker") { _ in markerRan.raise() }
        #expect(queue.queue(far, after: .seconds(Int64.max / 2)))
        #expect(queue.queue(marker, after: .milliseconds(1)))
        // One worker runs expired entries in deadline order: a wrapped deadline would have run first.
        markerRan.wait()
        queue.flush()
        #expect(ran.value == 0)
        #expect(far.isPending)
        #expect(far.cancel())
        queue.destroy()
    }
}
