import CKernelSync
import Synchronization

/// Runs deferred callbacks after grace periods, on one thread, each thread's in the order it queued them.
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
/// Each thread queues onto a list of its own (``ThreadCallbacks``, the kernel's per-CPU callback list),
/// under a lock nobody else takes in the common case: writers on several threads do not contend for one
/// lock, or move its cache line between their cores, twice a removal. The reclaimer collects every
/// list at the start and end of each round (and ``waitForQueued()`` does before it counts), and a
/// thread hands its list over itself once it holds ``handOffThreshold`` callbacks. So callbacks run in
/// the order each thread queued them; callbacks of different threads are not ordered (nor are they in
/// the kernel).
///
/// The backlog (queued but not yet run) is bounded: a caller that would exceed ``maxBacklog`` waits until
/// callbacks have run. The bound is checked when a thread hands its list over, so each thread may hold
/// up to ``handOffThreshold`` callbacks beyond it (at most a sixteenth of the bound, and 256). Callers that must not wait — the reclaimer itself (a callback that queues more),
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

        /// Runs the callback, or drops the retired object's reference (quarantining it first when
        /// `debugReclamation` is on). A closure is released when the batch is emptied.
        func perform(debugReclamation: Bool) {
            switch action {
            case .run(let body):
                body()
            case .release(let retired):
                if debugReclamation { retired.reclaim() }
                retired.dropReference()
            case .drop(let retired):
                retired.dropReference()
            }
        }
    }

    static let defaultMaxBacklog = 100_000

    /// How long the reclaimer gathers callbacks before starting a grace period when nobody waits.
    static let batchDelayNanoseconds: UInt64 = 1_000_000
    /// A batch this large starts its grace period at once.
    static let batchSize = 4_096
    /// Emptied arrays kept for the lists: a batch's worth of hand-overs (a batch gathers for a
    /// millisecond; a thread hands over every 256 callbacks), so that lists seldom start from nothing.
    static let maxSpareArrays = 128

    /// An array for a thread's list, with room for a hand-over's worth, so that it is not regrown from
    /// one element up.
    static func freshList() -> [Callback] {
        var list: [Callback] = []
        list.reserveCapacity(256)
        return list
    }

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

    /// Guarded by: lock. The callbacks collected from the threads' lists and not yet taken as a batch:
    /// each list's array, moved whole (no callback is copied, so no object is retained to move it).
    @exclusivity(unchecked) private var segments: [[Callback]] = []
    /// Guarded by: lock. How many callbacks ``segments`` holds.
    @exclusivity(unchecked) private var collectedCount = 0
    /// Guarded by: lock. Emptied arrays with their capacity kept, given back to the lists as they are
    /// collected, so that queueing does not regrow an array from nothing after every collection.
    @exclusivity(unchecked) private var spareArrays: [[Callback]] = []
    /// Guarded by: lock. Callbacks collected from the threads' lists since start.
    @exclusivity(unchecked) private(set) var queuedTotal: UInt64 = 0
    /// Guarded by: lock. Callbacks run since start; each thread's run in the order it queued them.
    @exclusivity(unchecked) private(set) var ranTotal: UInt64 = 0
    /// Guarded by: lock. A grace period that ``RCU/startPoll()`` asked for.
    @exclusivity(unchecked) private var requestedTarget: UInt64 = 0
    /// Guarded by: lock.
    @exclusivity(unchecked) var maxBacklog = Reclaimer.defaultMaxBacklog {
        didSet { handOffThreshold.store(Reclaimer.handOffThreshold(maxBacklog: maxBacklog), ordering: .relaxed) }
    }
    /// How many callbacks a thread's list holds before the thread hands it over and the bound is
    /// checked. Ordering: relaxed; follows ``maxBacklog``, which tests change between runs.
    let handOffThreshold = Atomic<Int>(Reclaimer.handOffThreshold(maxBacklog: Reclaimer.defaultMaxBacklog))
    /// Guarded by: lock. Every thread's callback list, registered by its first queueing, removed (and
    /// handed over) when the thread exits.
    @exclusivity(unchecked) private var lists: [ThreadCallbacks] = []
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
    /// The reclaimer sleeps with nothing to do: the next queueing must wake it. Written under lock;
    /// read by queueing threads without it, after they have listed their callback.
    ///
    /// Ordering: sequentially consistent. The reclaimer stores true and then collects every list, under
    /// each list's lock; a queueing thread lists its callback under its list's lock and then loads this.
    /// Either the reclaimer's collection finds the callback, or its store happens before the thread's
    /// load (through the list's lock), which then sees true and wakes it.
    private let idle = Atomic<Bool>(false)
    /// Guarded by: lock. Someone waits for callbacks to run: stop gathering and start the grace period.
    @exclusivity(unchecked) private var expedite = false

    /// The reclaimer thread's id, to recognise calls made from a callback. Ordering: relaxed; it is
    /// compared with the caller's own id, which it equals only when stored by the calling thread itself.
    private let threadID = Atomic<Int32>(0)

    private let engine = GracePeriodEngine.shared

    private init() {}

    var isCurrentThread: Bool { threadID.load(ordering: .relaxed) == KernelThread.currentID }

    /// Callbacks queued and not yet run: collected ones and those still on the threads' lists. Counts
    /// the lists without collecting them, so that polling it does not empty them before their threads
    /// hand them over (where the bound is checked).
    var backlog: Int {
        lock.withLock {
            lists.reduce(Int(queuedTotal - ranTotal)) { count, list in
                list.lock.lockOrTrap()
                defer { list.lock.unlockOrTrap() }
                return count + list.callbacks.count
            }
        }
    }

    private static func handOffThreshold(maxBacklog: Int) -> Int { min(256, max(1, maxBacklog / 16)) }

    /// Queues `action` to run after a grace period, on the calling thread's list; hands the list over,
    /// waiting for room when the backlog is full, once it holds ``handOffThreshold`` callbacks.
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
        // Unretained: the thread's TLS slot holds the list as long as the thread runs.
        let list = ThreadCallbacks.current(registeringWith: self)
        let count = list._withUnsafeGuaranteedRef { $0.append(callback) }
        if count >= handOffThreshold.load(ordering: .relaxed) {
            handOver(list.takeUnretainedValue())
        } else if idle.load(ordering: .sequentiallyConsistent) {
            lock.withLock { if idle.load(ordering: .relaxed) { wake(expediting: false) } }
        }
    }

    /// Moves `list`'s callbacks to the reclaimer's queue, first waiting for room when the backlog would
    /// exceed the bound (or admitting them above it, for a caller that must not wait).
    ///
    /// Context: the thread that owns `list`. Takes lock, then the list's lock, the order every
    /// collection takes them in, so that a callback is always either on its list or in the queue, where
    /// a barrier finds it.
    @inline(never)
    private func handOver(_ list: ThreadCallbacks) {
        lock.lockOrTrap()
        startIfNeeded()
        var aboveBound = false
        if handOverWouldExceedBound {
            aboveBound = !admitAfterBackPressure()
        }
        collect(list)
        if !aboveBound { peakBacklog = max(peakBacklog, Int(queuedTotal - ranTotal)) }
        if idle.load(ordering: .relaxed) || collectedCount >= Reclaimer.batchSize { wake(expediting: false) }
        lock.unlockOrTrap()
    }

    /// Registers a thread's new list. Context: the thread's first queueing.
    func register(_ list: ThreadCallbacks) {
        lock.withLock {
            startIfNeeded()
            lists.append(list)
        }
    }

    /// Hands an exiting thread's list over, whatever the bound, and forgets it.
    func unregister(_ list: ThreadCallbacks) {
        lock.withLock {
            collect(list)
            lists.removeAll { $0 === list }
            if idle.load(ordering: .relaxed) && collectedCount > 0 { wake(expediting: false) }
        }
    }

    /// Moves every thread's callbacks to the queue. Context: lock held.
    private func collectLists() {
        for list in lists { collect(list) }
    }

    /// Moves `list`'s callbacks to the queue, in their order: the list's array becomes a segment and
    /// the list gets a spare one. Context: lock held.
    private func collect(_ list: ThreadCallbacks) {
        var taken = spareArrays.popLast() ?? Reclaimer.freshList()
        list.lock.lockOrTrap()
        swap(&taken, &list.callbacks)
        list.lock.unlockOrTrap()
        if taken.isEmpty {
            spareArrays.append(taken)
            return
        }
        collectedCount += taken.count
        queuedTotal += UInt64(taken.count)
        segments.append(taken)
    }

    /// Whether a hand-over of up to ``handOffThreshold`` callbacks would take the backlog above
    /// ``maxBacklog``. Context: lock held.
    private var handOverWouldExceedBound: Bool {
        Int(queuedTotal - ranTotal) + handOffThreshold.load(ordering: .relaxed) > maxBacklog
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
        while handOverWouldExceedBound {
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
        idle.store(false, ordering: .relaxed)
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
            collectLists()
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
                collectLists()
                while collectedCount == 0 && engine.hasElapsed(requestedTarget) {
                    // Published before the lists are looked at again (see ``idle``).
                    idle.store(true, ordering: .sequentiallyConsistent)
                    collectLists()
                    if collectedCount > 0 { break }
                    workAvailable.wait(lock)
                }
                idle.store(false, ordering: .relaxed)
                let gatherUntil = monotonicNanoseconds() + Reclaimer.batchDelayNanoseconds
                while !expedite && collectedCount < Reclaimer.batchSize && monotonicNanoseconds() < gatherUntil {
                    workAvailable.wait(lock, untilMonotonicNanoseconds: gatherUntil)
                }
                collectLists()
                expedite = false
                let batch = segments
                segments = []
                collectedCount = 0
                batchNumber += 1
                // Callers snapshot their target before they list the callback, so queue order is not
                // target order: the batch waits for the latest target of any of its callbacks.
                let target = batch.reduce(requestedTarget) { latest, segment in
                    segment.reduce(latest) { max($0, $1.target) }
                }
                return (batch, target)
            }
            engine.synchronize(until: target)
            var ran: UInt64 = 0
            let validating = Lockdep.isValidating
            if validating { callbacksMap.acquire() }
            let debugReclamation = RCU.debugReclamation
            for index in batch.indices {
                // Through the buffer, so that no callback is copied (and its object retained) to run it.
                batch[index].withUnsafeBufferPointer { callbacks in
                    for index in callbacks.indices { callbacks[index].perform(debugReclamation: debugReclamation) }
                }
                ran += UInt64(batch[index].count)
                // Callbacks (and the objects they hold) are released before they count as run, and
                // under the callbacks' pseudo-lock: a back-pressure waiter waits for their deinits too.
                batch[index].removeAll(keepingCapacity: batch[index].capacity <= 4 * Reclaimer.batchSize)
            }
            if validating { callbacksMap.releaseRecorded() }
            lock.withLock {
                // The emptied arrays go back to the lists as they are collected.
                for index in batch.indices where spareArrays.count < Reclaimer.maxSpareArrays {
                    spareArrays.append(batch[index])
                }
                batch = []
                ranTotal += ran
                progress.broadcast()
            }
        }
    }
}

/// One thread's queued callbacks, not yet collected by the reclaimer.
///
/// Kernel analogue: a CPU's `rcu_data.cblist`, to which `call_rcu()` adds with interrupts off.
///
/// Made and registered by the thread's first queueing, found through a C thread-local (one load), held
/// by a pthread key whose destructor hands the callbacks over and unregisters the list when the thread
/// exits.
final class ThreadCallbacks: @unchecked Sendable {
    /// Taken by the owning thread to queue, and by whoever collects (the reclaimer, a barrier, a
    /// hand-over), always after ``Reclaimer/lock`` when both are held.
    let lock = PthreadMutex()
    /// Guarded by: lock.
    @exclusivity(unchecked) var callbacks = Reclaimer.freshList()

    deinit {
        // The thread has exited and the reclaimer has forgotten the list: nobody can hold the lock.
        lock.destroy()
    }

    /// Lists `callback`; returns how many the list holds now. Context: the owning thread.
    @inline(__always)
    func append(_ callback: consuming Reclaimer.Callback) -> Int {
        lock.lockOrTrap()
        callbacks.append(callback)
        let count = callbacks.count
        lock.unlockOrTrap()
        return count
    }

    /// The calling thread's list, made and registered with `reclaimer` on first use. Unretained: the
    /// thread's TLS slot holds it until the thread exits.
    @inline(__always)
    static func current(registeringWith reclaimer: Reclaimer) -> Unmanaged<ThreadCallbacks> {
        if let raw = ks_callback_list_get() { return Unmanaged<ThreadCallbacks>.fromOpaque(raw) }
        return registerCurrent(with: reclaimer)
    }

    @inline(never)
    private static func registerCurrent(with reclaimer: Reclaimer) -> Unmanaged<ThreadCallbacks> {
        let list = ThreadCallbacks()
        reclaimer.register(list)
        let reference = Unmanaged.passRetained(list)
        threadCallbacksKey.set(reference.toOpaque())
        ks_callback_list_set(reference.toOpaque())
        return reference
    }
}

/// The pthread key whose value is a thread's ``ThreadCallbacks`` (+1) and whose destructor hands them
/// over at thread exit.
private let threadCallbacksKey = ThreadExitKey { raw in
    guard let raw else { return }
    let list = Unmanaged<ThreadCallbacks>.fromOpaque(raw)
    ks_callback_list_set(nil)
    Reclaimer.shared.unregister(list.takeUnretainedValue())
    list.release()
}
