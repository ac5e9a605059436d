import Synchronization

/// Runs deferred callbacks after grace periods, on one thread, in the order they were queued.
///
/// Each round takes every callback queued so far as one batch, waits for the latest grace period any of
/// them needs (often already over, thanks to other callers' grace periods, in which case it does not
/// wait at all), and runs them. The thread sleeps on a condition and is woken by each queueing: unlike
/// liburcu's call_rcu worker, it never sleeps a fixed 10 ms between batches.
///
/// The backlog (queued but not yet run) is bounded: a caller that would exceed ``maxBacklog`` waits until
/// callbacks have run. Callers that must not wait — the reclaimer itself (a callback that queues more)
/// and a thread inside a read section, whose wait would block the very grace period it waits for — are
/// admitted above the bound and counted in ``overBoundAdmissions``.
///
/// Locking: ``lock`` guards everything below it; it is never held while callbacks run or while waiting
/// for a grace period.
final class Reclaimer: @unchecked Sendable {
    static let shared = Reclaimer()

    /// A queued callback and the grace-period sequence number it waits for.
    /// One deferred action: a `call_rcu` callback, or an object whose last reference is dropped
    /// (`kfree_rcu`), which needs no closure and so no allocation of its own.
    struct Callback {
        enum Action {
            case run(@Sendable () -> Void)
            case release(RetiredObject)
        }
        let target: UInt64
        let action: Action

        func perform() {
            switch action {
            case .run(let body): body()
            case .release(let retired): retired.reclaim()
            }
        }
    }

    static let defaultMaxBacklog = 100_000

    let lock = PthreadMutex()
    /// The reclaimer waits here for work.
    let workAvailable = PthreadCondition()
    /// Barrier and back-pressure waiters wait here for callbacks to have run.
    let progress = PthreadCondition()

    /// Guarded by: lock.
    private var queue: [Callback] = []
    /// Guarded by: lock. Callbacks queued since start.
    private(set) var queuedTotal: UInt64 = 0
    /// Guarded by: lock. Callbacks run since start; they run in queue order.
    private(set) var ranTotal: UInt64 = 0
    /// Guarded by: lock. A grace period that ``RCU/startPoll()`` asked for.
    private var requestedTarget: UInt64 = 0
    /// Guarded by: lock.
    var maxBacklog = Reclaimer.defaultMaxBacklog
    /// Guarded by: lock. The largest backlog a bounded admission produced.
    private(set) var peakBacklog = 0
    /// Guarded by: lock. Times a caller waited for room.
    private(set) var backPressureWaits = 0
    /// Guarded by: lock. Callbacks admitted above the bound (callers that must not wait).
    private(set) var overBoundAdmissions = 0
    /// Guarded by: lock. Batches run so far; the current batch's number while its callbacks run.
    private(set) var batchNumber: UInt64 = 0
    /// Guarded by: lock. Set once, when the thread starts.
    private var thread: KernelThread?

    /// The reclaimer thread's id, to recognise calls made from a callback. Ordering: relaxed; it is
    /// compared with the caller's own id, which it equals only when stored by the calling thread itself.
    private let threadID = Atomic<Int32>(0)

    private let engine = GracePeriodEngine.shared

    private init() {}

    var isCurrentThread: Bool { threadID.load(ordering: .relaxed) == KernelThread.currentID }

    var backlog: Int { lock.withLock { Int(queuedTotal - ranTotal) } }

    /// Queues `body` to run after a grace period, waiting for room when the backlog is full.
    ///
    /// Context: may block when the backlog is full, except on the reclaimer thread and in a read section.
    func enqueue(_ action: Callback.Action) {
        let mayWait = !isCurrentThread && RCUReaderRecord.currentNesting == 0
        let target = engine.snapshot()
        lock.withLock {
            startIfNeeded()
            if Int(queuedTotal - ranTotal) >= maxBacklog {
                if mayWait {
                    backPressureWaits += 1
                    while Int(queuedTotal - ranTotal) >= maxBacklog { progress.wait(lock) }
                } else {
                    overBoundAdmissions += 1
                }
            }
            queue.append(Callback(target: target, action: action))
            queuedTotal += 1
            if mayWait { peakBacklog = max(peakBacklog, Int(queuedTotal - ranTotal)) }
            workAvailable.signal()
        }
    }

    /// Makes sure a grace period that ends at `target` will run even if nobody else waits for it.
    func request(_ target: UInt64) {
        lock.withLock {
            startIfNeeded()
            if target > requestedTarget {
                requestedTarget = target
                workAvailable.signal()
            }
        }
    }

    /// Waits until every callback queued before the call has run.
    ///
    /// Context: may block; not on the reclaimer thread, not in a read section (callers check).
    func waitForQueued() {
        lock.withLock {
            let target = queuedTotal
            while ranTotal < target { progress.wait(lock) }
        }
    }

    func resetPeakBacklog() { lock.withLock { peakBacklog = 0 } }

    /// Context: lock held.
    private func startIfNeeded() {
        guard thread == nil else { return }
        thread = KernelThread(name: "rcu-reclaimer") { [self] in run() }
    }

    /// The reclaimer's loop; never returns (the thread lives as long as the process).
    private func run() {
        threadID.store(KernelThread.currentID, ordering: .relaxed)
        while true {
            var (batch, target) = lock.withLock {
                while queue.isEmpty && engine.hasElapsed(requestedTarget) { workAvailable.wait(lock) }
                let batch = queue
                queue = []
                batchNumber += 1
                // Callers snapshot their target before taking the lock, so queue order is not target
                // order: the batch waits for the latest target of any of its callbacks.
                return (batch, batch.reduce(requestedTarget) { max($0, $1.target) })
            }
            engine.synchronize(until: target)
            for callback in batch { callback.perform() }
            let ran = UInt64(batch.count)
            // Callbacks (and the objects they hold) are released before they count as run.
            batch.removeAll()
            lock.withLock {
                ranTotal += ran
                progress.broadcast()
            }
        }
    }
}
