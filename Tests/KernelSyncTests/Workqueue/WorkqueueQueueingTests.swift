import Glibc
import Synchronization
import Testing
@testable import KernelSync

@Suite struct WorkqueueQueueingTests {
    @Test func queueReturnsFalseWhileTheItemIsPending() {
        let release = Flag()
        let queue = blockedQueue("wq-pending", release: release)
        let runs = Counter()
        let item = WorkItem(name: "pending-item") { _ in runs.increment() }
        #expect(queue.queue(item))
        #expect(!queue.queue(item))
        release.raise()
        // Not `#expect(item.flush())`: the worker may run the item between the raise and the flush
        // (seen once on a loaded machine), and flush then rightly returns false.
        item.flush()
        #expect(runs.value == 1)
        queue.destroy()
    }

    /// An object a work item does its work for, reached through the item's context.
    final class Owner: @unchecked Sendable {
        let item: WorkItem
        var visits = 0
        init(_ makeItem: () -> WorkItem) { item = makeItem() }
    }

    @Test func theFunctionReachesItsOwnerThroughTheContextAndNilOnceTheOwnerIsGone() {
        let release = Flag()
        let queue = blockedQueue("wq-context", release: release)
        let foundOwner = Counter()
        let foundNothing = Counter()
        var owner: Owner? = Owner {
            WorkItem(name: "context-item") { item in
                if let owner = item.context as? Owner {
                    owner.visits += 1
                    foundOwner.increment()
                } else {
                    foundNothing.increment()
                }
            }
        }
        let item = owner!.item
        #expect(item.context == nil, "nil until set")
        item.context = owner
        #expect(item.context === owner)
        #expect(queue.queue(item))
        release.raise()
        item.flush()
        #expect(foundOwner.value == 1 && owner?.visits == 1)

        // The context is weak: the owner goes, and the next run finds nil rather than a dangling owner.
        weak let gone = owner
        owner = nil
        #expect(gone == nil, "the item's context does not keep its owner alive")
        #expect(item.context == nil)
        #expect(queue.queue(item))
        item.flush()
        #expect(foundNothing.value == 1)
        queue.destroy()
    }

    /// Box for a plain, unsynchronised value: the queue must order the write before the read (TSan).
    final class Plain: @unchecked Sendable { var value = 0 }

    @Test func aTrueReturnMakesEarlierWritesVisibleToTheFunction() {
        let queue = Workqueue(name: "wq-visibility", maxActive: 2)
        let mismatches = Counter()
        for round in 1...500 {
            let box = Plain()
            let item = WorkItem(name: "visibility") { _ in if box.value != round { mismatches.increment() } }
            box.value = round
            #expect(queue.queue(item))
            item.flush()
        }
        #expect(mismatches.value == 0)
        queue.destroy()
    }

    @Test func anItemRunningAndPendingNeverRunsOnTwoWorkersAtOnce() {
        let queue = Workqueue(name: "wq-collision", maxActive: 2)
        let release = Flag()
        let started = Flag()
        let meter = ConcurrencyMeter()
        let runs = Counter()
        let item = WorkItem(name: "collision") { _ in
            meter.enter()
            if runs.increment() == 1 {
                started.raise()
                release.wait()
            }
            meter.leave()
        }
        queue.queue(item)
        started.wait()
        #expect(queue.queue(item), "a running item that is not pending can be queued")
        #expect(item.isPending && item.isRunning)
        // The marker is listed after the item's second instance: once it has run, the idle worker has
        // taken that instance and had to leave it to the busy one.
        let marker = WorkItem(name: "marker") { _ in }
        queue.queue(marker)
        marker.flush()
        #expect(runs.value == 1)
        release.raise()
        item.flush()
        #expect(runs.value == 2)
        #expect(meter.peak == 1)
        queue.destroy()
    }

    @Test func anOrderedQueueRunsOneItemAtATimeInQueueingOrder() {
        let queue = Workqueue(name: "wq-ordered", ordered: true)
        let order = Mutex<[Int]>([])
        let meter = ConcurrencyMeter()
        let items = (0..<50).map { index in
            WorkItem(name: "ordered") { _ in
                meter.enter()
                order.withLock { $0.append(index) }
                meter.leave()
            }
        }
        for item in items { #expect(queue.queue(item)) }
        queue.flush()
        #expect(order.withLock { $0 } == Array(0..<50))
        #expect(meter.peak == 1)
        queue.destroy()
    }

    @Test func maxActiveBoundsHowManyItemsRunAtOnce() {
        let queue = Workqueue(name: "wq-bounded", maxActive: 2)
        let meter = ConcurrencyMeter()
        let items = (0..<8).map { _ in
            WorkItem(name: "bounded") { _ in
                meter.enter()
                usleep(2_000)
                meter.leave()
            }
        }
        for item in items { queue.queue(item) }
        queue.flush()
        #expect(meter.peak <= 2)
        queue.destroy()
    }

    @Test func itemsQueuedTogetherRunOnEveryIdleWorkerAtOnce() {
        let queue = Workqueue(name: "wq-wake-all", maxActive: 3)
        usleep(10_000)  // let the workers go to sleep, so each must be woken
        let arrived = Counter()
        let met = Counter()
        let items = (0..<3).map { _ in
            WorkItem(name: "rendezvous") { _ in
                arrived.increment()
                if eventually(within: 10, { arrived.value == 3 }) { met.increment() }
            }
        }
        for item in items { queue.queue(item) }
        queue.flush()
        #expect(met.value == 3, "the three items ran at once, one per worker")
        queue.destroy()
    }

    @Test func anItemRunningOnAnotherQueueRunsOnTheOrderedQueuesWorkerInQueueingOrder() {
        let other = Workqueue(name: "wq-cross-other")
        let ordered = Workqueue(name: "wq-cross-ordered", ordered: true)
        let firstRunStarted = Flag(), release = Flag()
        let runs = Recorder<(name: String, thread: Int32)>()
        let crossing = WorkItem(name: "cross-x") { _ in
            if !firstRunStarted.isRaised {
                firstRunStarted.raise()
                release.wait()
            } else {
                runs.append(("x", KernelThread.currentID))
            }
        }
        let behind = WorkItem(name: "cross-y") { _ in
            runs.append(("y", KernelThread.currentID))
            release.raise()
        }
        other.queue(crossing)
        firstRunStarted.wait()
        #expect(ordered.queue(crossing))
        #expect(ordered.queue(behind))
        // The ordered queue's worker meets x still running on `other`; y must wait behind x.
        let releaser = raiseSoon(release)
        ordered.flush()
        releaser.join()
        let values = runs.values
        #expect(values.map(\.name) == ["x", "y"])
        #expect(Set(values.map(\.thread)).count == 1, "both ran on the ordered queue's one worker")
        other.destroy()
        ordered.destroy()
    }
}
