import Glibc
import Testing
@testable import KernelSync

@Suite struct WorkqueueLifecycleTests {
    @Test func flushWaitsForEveryInstanceQueuedBeforeIt() {
        let queue = Workqueue(name: "wq-flush", maxActive: 2)
        let runs = Counter()
        let items = (0..<20).map { _ in WorkItem(name: "flushed") { _ in runs.increment() } }
        for item in items { queue.queue(item) }
        queue.flush()
        #expect(runs.value == 20)
        queue.destroy()
    }

    @Test func drainRefusesOutsideQueueingButRunsChainedWork() {
        let queue = Workqueue(name: "wq-drain")
        let started = Flag()
        let release = Flag()
        let chainedRuns = Counter()
        let probeRuns = Counter()
        let chained = WorkItem(name: "drain-chained") { _ in chainedRuns.increment() }
        let first = WorkItem(name: "drain-first") { _ in
            started.raise()
            release.wait()
            queue.queue(chained)
        }
        let probe = WorkItem(name: "drain-probe") { _ in probeRuns.increment() }
        queue.queue(first)
        started.wait()
        let drainer = KernelThread(name: "drainer") { queue.drain() }
        // Until the drain begins, the probe is accepted (and withdrawn at once: the worker is busy).
        #expect(eventually {
            if queue.queue(probe) { probe.cancel() }
            return Lockdep.reports(involving: probe.lockClass).contains { $0.kind == .workqueueQueueingRefused }
        })
        release.raise()
        drainer.join()
        #expect(chainedRuns.value == 1)
        #expect(probeRuns.value == 0)
        queue.destroy()
    }

    @Test func aDelayedInstanceWhoseTimerExpiresWhileTheQueueDrainsIsWithdrawnAndReported() {
        // Two workers, so that an expired instance accepted during the drain would run at once.
        let queue = Workqueue(name: "wq-drain-timer", maxActive: 2)
        let started = Flag()
        let drainBegun = Flag()
        let release = Flag()
        let delayedRuns = Counter()
        let delayed = WorkItem(name: "drain-timer-delayed") { _ in delayedRuns.increment() }
        let first = WorkItem(name: "drain-timer-first") { _ in
            started.raise()
            drainBegun.wait()
            // Chained, so accepted while the queue drains; the timer that expires later is not.
            #expect(queue.queue(delayed, after: .milliseconds(5)))
            release.wait()
        }
        let probe = WorkItem(name: "drain-timer-probe") { _ in }
        queue.queue(first)
        started.wait()
        let drainer = KernelThread(name: "drainer") { queue.drain() }
        #expect(eventually {
            if queue.queue(probe) { probe.cancel() }
            return Lockdep.reports(involving: probe.lockClass).contains { $0.kind == .workqueueQueueingRefused }
        })
        drainBegun.raise()
        let reported = eventually(within: 10) {
            Lockdep.reports(involving: delayed.lockClass).contains { $0.kind == .workqueueQueueingRefused }
        }
        #expect(reported, "the expiry during the drain is reported")
        release.raise()
        drainer.join()
        #expect(delayedRuns.value == 0, "the withdrawn instance never runs")
        #expect(!delayed.isPending)
        if let report = Lockdep.reports(involving: delayed.lockClass).first {
            #expect(report.text.contains("withdrawn, not run"), "\(report.text)")
        }
        queue.destroy()
    }

    @Test func destroyReportsAndWithdrawsPendingWorkAndWaitsForRunningWork() {
        let queue = Workqueue(name: "wq-destroy")
        let started = Flag()
        let release = Flag()
        let finished = Flag()
        let running = WorkItem(name: "destroy-running") { _ in
            started.raise()
            release.wait()
            finished.raise()
        }
        let runs = Counter()
        let pending = WorkItem(name: "destroy-pending") { _ in runs.increment() }
        queue.queue(running)
        started.wait()
        queue.queue(pending)
        let raiser = raiseSoon(release)
        queue.destroy()
        #expect(finished.isRaised)
        #expect(runs.value == 0)
        #expect(!pending.isPending)
        let reports = Lockdep.reports(involving: queue.lockClass)
        #expect(reports.map(\.kind) == [.workqueueDestroyedWithPendingWork])
        #expect(reports.first?.text.contains("destroy-pending") == true)
        raiser.join()
    }

    /// An item whose first run waits for `release` (raising `started` first); later runs return at once.
    private func itemBlockingItsFirstRun(name: String) -> (WorkItem, started: Flag, release: Flag, runs: Counter) {
        let started = Flag(), release = Flag(), runs = Counter()
        let item = WorkItem(name: name) { _ in
            if runs.increment() == 1 {
                started.raise()
                release.wait()
            }
        }
        return (item, started, release, runs)
    }

    @Test func destroyWithdrawsAnInstanceHandedOffToTheWorkerThatRunsTheItem() {
        // With two workers, the second takes the item's new instance off the list and leaves it to the
        // worker running the item: destroy does not find it on the list, and it still must not run.
        let queue = Workqueue(name: "wq-destroy-handed-off", maxActive: 2)
        let (item, started, release, runs) = itemBlockingItsFirstRun(name: "destroy-handed-off")
        #expect(queue.queue(item))
        started.wait()
        #expect(queue.queue(item))
        #expect(eventually { "\(item)".contains("handed off") })
        let raiser = raiseSoon(release)
        queue.destroy()
        raiser.join()
        #expect(runs.value == 1, "the handed-off instance ran after destroy began")
        #expect(!item.isPending)
        let reports = Lockdep.reports(involving: queue.lockClass)
        #expect(reports.map(\.kind) == [.workqueueDestroyedWithPendingWork])
        #expect(reports.first?.text.contains("destroy-handed-off") == true)
    }

    @Test func destroyWithdrawsAnInstanceWaitingForItsRunOnAnotherQueue() {
        // The item runs from `other`; `queue`'s worker holds its new instance until that run ends.
        let other = Workqueue(name: "wq-destroy-elsewhere-other")
        let queue = Workqueue(name: "wq-destroy-elsewhere")
        let (item, started, release, runs) = itemBlockingItsFirstRun(name: "destroy-elsewhere")
        #expect(other.queue(item))
        started.wait()
        #expect(queue.queue(item))
        usleep(20_000)
        let raiser = raiseSoon(release)
        queue.destroy()
        raiser.join()
        other.destroy()
        #expect(runs.value == 1, "the instance queued before destroy ran after destroy began")
        #expect(!item.isPending)
        #expect(Lockdep.reports(involving: queue.lockClass).map(\.kind) == [.workqueueDestroyedWithPendingWork])
    }

    @Test func queueingOnADestroyedQueueIsRefusedAndReported() {
        let queue = Workqueue(name: "wq-destroyed")
        queue.destroy()
        let item = WorkItem(name: "after-destroy") { _ in }
        #expect(!queue.queue(item))
        #expect(Lockdep.reports(involving: item.lockClass).map(\.kind) == [.workqueueQueueingRefused])
    }
}
