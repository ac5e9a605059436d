import Testing
@testable import KernelSync

/// Misuse in abort mode: the process stops with a message that says what was done.
///
/// Inside an exit test's body every `#line` is the line of the `#expect`, so the locks there pass
/// explicit lines to get a class each.
@Suite struct WorkqueueMisuseExitTests {
    @Test func cancelSyncFromTheItemsOwnFunctionStopsTheProcessInAbortMode() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            Lockdep.mode = .abort
            let queue = Workqueue(name: "wq-abort-self", line: 1)
            let item = WorkItem(name: "abort-self", line: 2) { item in item.cancelSync() }
            queue.queue(item)
            item.flush()
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("cancel_work_sync(abort-self) called from the work's own function"))
    }

    @Test func destroyingAQueueWithPendingWorkStopsTheProcessInAbortMode() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            Lockdep.mode = .abort
            let queue = Workqueue(name: "wq-abort-destroy", line: 1)
            let item = WorkItem(name: "abort-pending", line: 2) { _ in }
            queue.queue(item, after: .seconds(3600))
            queue.destroy()
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("destroy_workqueue(wq-abort-destroy) with work pending"))
        #expect(message.contains("abort-pending (delayed)"))
    }

    @Test func theHazard2PatternStopsTheProcessInAbortMode() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            Lockdep.mode = .abort
            let queue = Workqueue(name: "wq-abort-hazard2", line: 1)
            let groupLock = KernelMutex(name: "group->mutex", line: 2)
            let broken = WorkItem(name: "gdev->broken_work", line: 3) { _ in groupLock.withLock {} }
            queue.queue(broken)
            broken.flush()
            groupLock.withLock { _ = broken.cancelSync() }
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("possible circular locking dependency detected"))
        #expect(message.contains("(work_completion)gdev->broken_work"))
    }
}

/// Misuse with the validator off: the work queue still says what went wrong, as the kernel's workqueue
/// warnings do without lockdep. In a child process, since the validator's mode is process-wide.
@Suite struct WorkqueueMisuseValidatorOffTests {
    @Test func flushingAnItemPendingBehindTheCallerOnAnOrderedQueueIsReportedWithTheValidatorOff() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            Lockdep.mode = .off
            let queue = Workqueue(name: "wq-ordered-flush-off", ordered: true, line: 1)
            let behind = WorkItem(name: "ordered-off-behind", line: 2) { _ in }
            let waited = Recorder<Bool>()
            let item = WorkItem(name: "ordered-off-caller", line: 3) { _ in
                queue.queue(behind)
                waited.append(behind.flush())
            }
            queue.queue(item)
            queue.flush()
            queue.flush()
            precondition(waited.values == [false], "the flush must return at once, without waiting")
            queue.destroy()
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("flush_work(ordered-off-behind) called from a worker of that queue"))
    }
}
