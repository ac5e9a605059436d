import Synchronization

/// Runs deferred callbacks after grace periods, on one thread, in the order they were queued.
///
/// Each round takes every callback queued so far as one batch, waits for the latest grace period any of
/// them needs (often already over, thanks to other callers' grace periods, in which case it does not
/// wait at all), and runs them. An idle reclaimer is woken by the first queueing only; it then gathers
/// callbacks for up to ``batchDelayNanoseconds`` (or until ``batchSize`` are queued) before starting a
/// grace period, so that a steady stream of callbacks costs a few hundred grace periods a second, not
/// one per callback (each costs two membarrier IPIs to every CPU running the process). Anyone who waits
/// for callbacks — `barrier`, a caller held back by the bound, a polled grace period — cuts the gathering
/// short. liburcu's call_rcu worker, by contrast, sleeps a fixed 10 ms between batches whoever waits.
///
/// The backlog (queued but not yet run) is bounded: a caller that would exceed ``maxBacklog`` waits until
/// callbacks have run. Callers that must not wait — the reclaimer itself (a callback that queues more),
/// a thread inside a read section, whose wait would block the very grace period it waits for, and a
/// thread in atomic context — are admitted above the bound and counted in ``overBoundAdmissions``.
///
/// Because a caller may wait for callbacks to run, it must not hold a lock that a callback takes. The
/// validator sees that through ``callbacksMap``, a pseudo-lock the reclaimer holds while it runs a batch
/// and drops the batch's closures and objects, and that every caller that could wait acquires and
/// releases, as `flush` does with a work item's.
///
/// Locking: ``lock`` guards everything below it; it is never held while callbacks run or while waiting
/// for a grace period. Since the lock is what makes access exclusive, the guarded fields opt out of
/// Swift's dynamic exclusivity checks, which cost a quarter of each `call` here.
final class Reclaimer: @unchecked Sendable {
    static let shared = Reclaimer()

    /// A queued callback and the grace-period sequence number it waits for.
    /// One deferred action: a `call_rcu` callback, or an object whose last reference is dropped
    /// (`kfree_rcu`), which needs no closure and so no allocation of its own.
    struct Callback {
        enum Action {
            case run(@Sendable () -> Void)
            case release(RetiredObject)
            /// A reference a data structure held (an ``RCUList`` link to an unlinked element): dropped
            /// like a release, but never poisoned — the element's own retire decides when it is freed.
            case drop(RetiredObject)
        }
        let target: UInt64
        let action: Action

        /// Runs the callback. Releasing an object does nothing here (dropping the batch does it) unless
        /// `debugReclamation` quarantines it.
        func perform(debugReclamation: Bool) {
            switch action {
            case .run(let body): body()
            case .release(let retired): if debugReclamation { retired.reclaim() }
            case .drop: break
            }
        }
    }

    static let defaultMaxBacklog = 100_000

    /// How long the reclaimer gathers callbacks before starting a grace period when nobody waits.
    static let batchDelayNanoseconds: UInt64 = 1_000_000
    /// A batch this large starts its grace period at once.
    static let batchSize = 4_096

    /// The callbacks' pseudo-lock, "rcu_callbacks": held by the reclaimer while a batch runs, acquired and
    /// released by each ``enqueue(_:)`` caller that could wait for room.
    let callbacksMap = LockdepMap(name: "rcu_callbacks")

    /// Adaptive (spins briefly before sleeping): every writer of a remove path takes it for a few
    /// instructions twice a cycle, and with two writers futex sleeps and wake-ups cost more than the holds.
    let lock = PthreadMutex(adaptive: true)
    /// The reclaimer waits here for work.
    let workAvailable = PthreadCondition()
    /// Barrier and back-pressure waiters wait here for callbacks to have run.
    let progress = PthreadCondition()

    /// Guarded by: lock.
    @exclusivity(unchecked) private var queue: [Callback] = []
    /// Guarded by: lock. The last batch's array, emptied with its capacity kept: the next queue.
    @exclusivity(unchecked) private var spare: [Callback] = []
    /// Guarded by: lock. Callbacks queued since start.
    @exclusivity(unchecked) private(set) var queuedTotal: UInt64 = 0
    /// Guarded by: lock. Callbacks run since start; they run in queue order.
    @exclusivity(unchecked) private(set) var ranTotal: UInt64 = 0
    /// Guarded by: lock. A grace period that ``RCU/startPoll()`` asked for.
    @exclusivity(unchecked) private var requestedTarget: UInt64 = 0
    /// Guarded by: lock.
    @exclusivity(unchecked) var maxBacklog = Reclaimer.defaultMaxBacklog
    /// Guarded by: lock. The largest backlog a bounded admission produced.
    @exclusivity(unchecked) private(set) var peakBacklog = 0
    /// Guarded by: lock. Times a caller waited for room.
    @exclusivity(unchecked) private(set) var backPressureWaits = 0
    /// Guarded by: lock. Callbacks admitted above the bound (callers that must not wait).
    @exclusivity(unchecked) private(set) var overBoundAdmissions = 0
    /// Guarded by: lock. Batches run so far; the current batch's number while its callbacks run.
    @exclusivity(unchecked) private(set) var batchNumber: UInt64 = 0
    /// Guarded by: lock. Set once, when the thread starts.
    @exclusivity(unchecked) private var thread: KernelThread?
    /// Guarded by: lock. The reclaimer sleeps with nothing to do: the next queueing must wake it.
    @exclusivity(unchecked) private var idle = false
    /// Guarded by: lock. Someone waits for callbacks to run: stop gathering and start the grace period.
    @exclusivity(unchecked) private var expedite = false

    /// The reclaimer thread's id, to recognise calls made from a callback. Ordering: relaxed; it is
    /// compared with the caller's own id, which it equals only when stored by the calling thread itself.
    private let threadID = Atomic<Int32>(0)

    private let engine = GracePeriodEngine.shared

    private init() {}

    var isCurrentThread: Bool { threadID.load(ordering: .relaxed) == KernelThread.currentID }

    var backlog: Int { lock.withLock { Int(queuedTotal - ranTotal) } }

    /// Queues `action` to run after a grace period, waiting for room when the backlog is full.
    ///
    /// With the validator on, a caller that could wait acquires and releases ``callbacksMap`` on every
    /// call, full backlog or not: holding a lock that a callback takes is reported as the deadlock it
    /// becomes once the backlog fills (as `flush` of an idle work item is), deterministically rather than
    /// only in the runs that happen to fill it. A chain-cache hit after the first call; with the validator
    /// off it costs one flag test.
    ///
    /// Context: may block when the backlog is full, except on the reclaimer thread, in a read section and
    /// in atomic context, where it is admitted above the bound.
    func enqueue(_ action: consuming Callback.Action) {
        if Lockdep.isValidating { recordPossibleWait() }
        let callback = Callback(target: engine.snapshot(), action: consume action)
        // Locked by hand rather than through a closure: a captured action would be copied (its object
        // retained) into the queue, where this way the caller's reference moves there.
        lock.lockOrTrap()
        startIfNeeded()
        var aboveBound = false
        if Int(queuedTotal - ranTotal) >= maxBacklog {
            aboveBound = !admitAfterBackPressure()
        }
        queue.append(callback)
        queuedTotal += 1
        if !aboveBound { peakBacklog = max(peakBacklog, Int(queuedTotal - ranTotal)) }
        if idle || queue.count == Reclaimer.batchSize { wake(expediting: false) }
        lock.unlockOrTrap()
    }

    /// A full backlog: waits until there is room and returns true, or, for a caller that must not wait,
    /// counts an admission above the bound and returns false.
    ///
    /// Context: lock held (released while waiting).
    @inline(never)
    private func admitAfterBackPressure() -> Bool {
        guard callerMayWait else {
            overBoundAdmissions += 1
            return false
        }
        Lockdep.mightSleep("call_rcu() back-pressure")
        backPressureWaits += 1
        while Int(queuedTotal - ranTotal) >= maxBacklog {
            wake(expediting: true)
            progress.wait(lock)
        }
        return true
    }

    /// Wakes the reclaimer; with `expediting`, also ends its gathering at once.
    ///
    /// Context: lock held.
    private func wake(expediting: Bool) {
        if expediting { expedite = true }
        idle = false
        workAvailable.signal()
    }

    /// Makes sure a grace period that ends at `target` will run even if nobody else waits for it.
    func request(_ target: UInt64) {
        lock.withLock {
            startIfNeeded()
            if target > requestedTarget {
                requestedTarget = target
                wake(expediting: true)
            }
        }
    }

    /// Waits until every callback queued before the call has run.
    ///
    /// Context: may block; not on the reclaimer thread, not in a read section (callers check).
    func waitForQueued() {
        lock.withLock {
            let target = queuedTotal
            while ranTotal < target {
                wake(expediting: true)
                progress.wait(lock)
            }
        }
    }

    func resetPeakBacklog() { lock.withLock { peakBacklog = 0 } }

    /// Whether the calling thread may wait for room: not the reclaimer (a callback would wait for
    /// itself), not in a read section (it would hold up the grace period it waits for), not in atomic
    /// context.
    private var callerMayWait: Bool {
        !isCurrentThread && RCUReaderRecord.currentNesting == 0 && !Lockdep.inAtomicContext
    }

    /// Records, for the validator, that a caller that could wait for room waits for the callbacks.
    ///
    /// Context: the validator is on.
    @inline(never)
    private func recordPossibleWait() {
        guard callerMayWait else { return }
        recordWaitForCallbacks()
    }

    /// Records, for the validator, that the caller waits for callbacks to run (``callbacksMap`` acquired
    /// and released): the locks it holds now come before every lock a callback takes.
    ///
    /// Context: the validator is on.
    func recordWaitForCallbacks() {
        callbacksMap.acquire()
        callbacksMap.releaseRecorded()
    }

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
                while queue.isEmpty && engine.hasElapsed(requestedTarget) {
                    idle = true
                    workAvailable.wait(lock)
                }
                idle = false
                let gatherUntil = monotonicNanoseconds() + Reclaimer.batchDelayNanoseconds
                while !expedite && queue.count < Reclaimer.batchSize && monotonicNanoseconds() < gatherUntil {
                    workAvailable.wait(lock, untilMonotonicNanoseconds: gatherUntil)
                }
                expedite = false
                let batch = queue
                queue = spare
                spare = []
                batchNumber += 1
                // Callers snapshot their target before taking the lock, so queue order is not target
                // order: the batch waits for the latest target of any of its callbacks.
                return (batch, batch.reduce(requestedTarget) { max($0, $1.target) })
            }
            engine.synchronize(until: target)
            let ran = UInt64(batch.count)
            let validating = Lockdep.isValidating
            if validating { callbacksMap.acquire() }
            let debugReclamation = RCU.debugReclamation
            // Through the buffer, so that no callback is copied (and its object retained) to run it.
            batch.withUnsafeBufferPointer { callbacks in
                for index in callbacks.indices { callbacks[index].perform(debugReclamation: debugReclamation) }
            }
            // Callbacks (and the objects they hold) are released before they count as run, and under
            // the callbacks' pseudo-lock: a back-pressure waiter waits for their deinits too.
            batch.removeAll(keepingCapacity: batch.capacity <= 4 * Reclaimer.batchSize)
            if validating { callbacksMap.releaseRecorded() }
            lock.withLock {
                // The emptied batch becomes the next queue, so queueing does not regrow an array from
                // nothing after every batch.
                spare = batch
                batch = []
                ranTotal += ran
                progress.broadcast()
            }
        }
    }
}
