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
/// Where callbacks run: as in the kernel, where a CPU invokes its own callbacks (in softirq) once
/// their grace period has passed, each batch goes back to the threads that queued it: a thread's
/// callbacks wait in one queue of its own (``ThreadCallbacks/returned``), in the order it queued them,
/// and the thread drops its retired objects itself at its next ``enqueue(_:)`` made outside read
/// sections and atomic context, or at its last unlock if it holds a ``KernelMutex`` then. They
/// are then released on the core that allocated them and last
/// touched them: their memory goes back to that thread's malloc cache, and the reference counts of the
/// objects they point to (shared by every writer) are not moved to the reclaimer's core and back, once
/// per object, as they are when one thread frees everything. Closures (`call_rcu`) run on the
/// reclaimer, since one may block. The reclaimer also runs a thread's queue when the thread has left
/// it for ``returnPatienceNanoseconds`` (it stopped queueing, it blocks, it exited), when someone waits
/// for callbacks (`barrier`, back-pressure, a polled grace period), and always with
/// ``RCU/offloadsCallbacks`` (the kernel's `rcu_nocbs`). One runner at a time takes from a queue, from
/// its head — the thread or the reclaimer — which is what keeps each thread's callbacks in order.
///
/// Each thread queues onto a list of its own (``ThreadCallbacks``, the kernel's per-CPU callback list),
/// a single-producer ring that takes no lock: writers on several threads do not contend for one lock,
/// or move its cache line between their cores, twice a removal. The reclaimer collects every
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
            /// Two retired objects of one update, released together (``RCU/retire(_:along:file:line:)``):
            /// no larger than a closure, so no callback grows.
            case releasePair(RetiredObject, RetiredObject)
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
                retired.release(debugReclamation: debugReclamation)
            case .drop(let retired):
                retired.dropReference()
            case .releasePair(let first, let second):
                first.release(debugReclamation: debugReclamation)
                second.release(debugReclamation: debugReclamation)
            }
        }
    }

    static let defaultMaxBacklog = 100_000

    /// How long the reclaimer gathers callbacks before starting a grace period when nobody waits.
    static let batchDelayNanoseconds: UInt64 = 1_000_000
    /// A batch this large starts its grace period at once.
    static let batchSize = 4_096
    /// Emptied arrays kept for the segments: a batch's worth of hand-overs (a batch gathers for a
    /// millisecond; a thread hands over every 256 callbacks), so that segments seldom start from nothing.
    static let maxSpareArrays = 128
    /// How long callbacks handed back to their thread may wait for it before the reclaimer takes its
    /// queue over and runs them itself.
    static let returnPatienceNanoseconds: UInt64 = 2_000_000

    /// One list's callbacks, moved whole, and the thread's list they came from, whose queue they join
    /// once their grace period has passed.
    ///
    /// What the reclaimer needs to know of the callbacks is summed up by whoever collects them, while
    /// their slots are in its cache: the reclaimer then never reads the callbacks of a segment it does
    /// not run. (It read every one, and so pulled each array's cache lines to its core, from which the
    /// queueing thread had to take them back to fill the array again: a cache miss per two callbacks.)
    struct Segment {
        var callbacks: [Callback]
        let origin: ThreadCallbacks
        /// The latest grace period any of the callbacks waits for.
        let latestTarget: UInt64
        /// Whether any of them is a closure (``Callback/Action/run(_:)``), which only the reclaimer runs.
        let holdsClosure: Bool
        /// The number of its first callback in the order of collection (``queuedTotal`` before it was
        /// collected): what ``waitForQueued()`` compares its target with.
        let first: UInt64
    }

    /// Callbacks in a thread's queue (``ThreadCallbacks/returned``). Only retired objects are dropped
    /// by the thread itself: a `call_rcu` closure may block, or wait for something the queueing thread
    /// does, and would then stop that thread at an unrelated queueing, so a segment that holds one is
    /// run by the reclaimer (and everything behind it, to keep the order).
    struct ReturnedSegment {
        var callbacks: [Callback]
        /// The segment holds no closure: the queueing thread may run it.
        let ownerMayRun: Bool
        /// ``Segment/first``: the segment is in ``unfinished`` under this number until it has run.
        let first: UInt64
    }

    /// An array for a segment, with room for a hand-over's worth, so that it is not regrown from one
    /// element up.
    static func freshSegment() -> [Callback] {
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
    @exclusivity(unchecked) private var segments: [Segment] = []
    /// Guarded by: lock. How many callbacks ``segments`` holds.
    @exclusivity(unchecked) private var collectedCount = 0
    /// Guarded by: lock. Emptied arrays with their capacity kept, each collection's segment made in one,
    /// so that collecting does not grow an array from nothing every time.
    @exclusivity(unchecked) private var spareArrays: [[Callback]] = []
    /// Guarded by: lock. Callbacks collected from the threads' lists since start.
    @exclusivity(unchecked) private(set) var queuedTotal: UInt64 = 0
    /// Guarded by: lock. Callbacks run since start; each thread's run in the order it queued them.
    @exclusivity(unchecked) private(set) var ranTotal: UInt64 = 0
    /// Guarded by: lock. The first numbers (``Segment/first``) of the segments collected and not yet
    /// run. A barrier waits until none is below its target: counting is not enough, since segments
    /// finish out of order (a thread running its own queue, while the reclaimer runs later callbacks of
    /// other threads, which would otherwise make up the count).
    @exclusivity(unchecked) private var unfinished: Set<UInt64> = []
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
    /// Ordering: a store-load pair on each side, made asymmetric as RCU's read side is. The reclaimer
    /// stores true, forces a full barrier on every thread (``GracePeriodEngine/fullBarrierOnAllThreads()``,
    /// membarrier) and then collects every list; a queueing thread lists its callback, passes a
    /// compiler barrier (a full fence where membarrier is unavailable) and then loads this. The barrier
    /// falls on the queueing thread either before its listing, and the collection finds the callback,
    /// or after it, and so before its load, which then sees true and wakes the reclaimer. The cost, a
    /// membarrier, is paid only when the reclaimer goes idle.
    private let idle = Atomic<Bool>(false)
    /// Guarded by: lock. Someone waits for callbacks to run: stop gathering and start the grace period.
    @exclusivity(unchecked) private var expedite = false
    /// Guarded by: lock. The lists whose queue of callbacks to run (``ThreadCallbacks/returned``) is not
    /// empty.
    @exclusivity(unchecked) private var returningLists: [ThreadCallbacks] = []

    /// The reclaimer thread's id, to recognise calls made from a callback. Ordering: relaxed; it is
    /// compared with the caller's own id, which it equals only when stored by the calling thread itself.
    private let threadID = Atomic<Int32>(0)

    private let engine = GracePeriodEngine.shared

    private init() {}

    var isCurrentThread: Bool { threadID.load(ordering: .relaxed) == KernelThread.currentID }

    /// Whether the calling thread is running callbacks: it is the reclaimer, or a thread running those
    /// handed back to it.
    var isRunningCallbacks: Bool {
        if isCurrentThread { return true }
        guard let raw = ks_callback_list_get() else { return false }
        return Unmanaged<ThreadCallbacks>.fromOpaque(raw)._withUnsafeGuaranteedRef { $0.ownerIsRunning }
    }

    /// Callbacks queued and not yet run: collected ones and those still on the threads' lists. Counts
    /// the lists without collecting them, so that polling it does not empty them before their threads
    /// hand them over (where the bound is checked).
    var backlog: Int {
        lock.withLock {
            lists.reduce(Int(queuedTotal - ranTotal)) { $0 + $1.count }
        }
    }

    private static func handOffThreshold(maxBacklog: Int) -> Int { min(256, max(1, maxBacklog / 16)) }

    /// Queues `action` to run after a grace period, on the calling thread's list; hands the list over,
    /// waiting for room when the backlog is full, once it holds ``handOffThreshold`` callbacks. Drops
    /// what was handed back to the thread first (``runReturned(_:)``), or, inside a critical section
    /// (the update-side calls that hold the update lock by contract, ``RCUPointer/assign(_:holding:file:line:)``
    /// and ``RCUList`` deletions, among others), leaves that to the thread's last unlock.
    ///
    /// With the validator on, a caller that could wait acquires and releases ``callbacksMap`` on every
    /// call, full backlog or not: holding a lock that a callback takes is reported as the deadlock it
    /// becomes once the backlog fills (as `flush` of an idle work item is), deterministically rather than
    /// only in the runs that happen to fill it. A chain-cache hit after the first call; with the validator
    /// off it costs one flag test.
    ///
    /// The callback waits for the grace period `cookie` names, a snapshot the caller took after its
    /// update (a token's, taken right after the unlink), or without one for a grace period named now.
    ///
    /// Context: may block when the backlog is full, except on the reclaimer thread, in a read section and
    /// in atomic context, where it is admitted above the bound.
    func enqueue(_ action: consuming Callback.Action, after cookie: GracePeriodCookie? = nil) {
        if Lockdep.isValidating { recordPossibleWait() }
        let callback = Callback(target: cookie?.target ?? GracePeriodEngine.snapshot(), action: consume action)
        // Unretained: the thread's TLS slot holds the list as long as the thread runs.
        let list = ThreadCallbacks.current(registeringWith: self)
        let (count, hasReturned) = list._withUnsafeGuaranteedRef { ($0.append(callback), $0.hasReturned.load(ordering: .relaxed)) }
        // The listing before the load of `idle` (see there), paired with the reclaimer's
        // fullBarrierOnAllThreads().
        engine.barrierPairedWithFullBarrier()
        // A full list is handed over before the thread runs what was handed back to it: those deinits
        // may queue more (a retired object holding an RCUPointer retires its target), and a full list
        // has no room (the hand-over threshold can be its capacity).
        let full = count >= ThreadCallbacks.capacity
        if full { handOver(list.takeUnretainedValue()) }
        if hasReturned { runReturned(list.takeUnretainedValue()) }
        if full { return }
        if count >= handOffThreshold.load(ordering: .relaxed) {
            handOver(list.takeUnretainedValue())
        } else if idle.load(ordering: .relaxed) {
            lock.withLock { if idle.load(ordering: .relaxed) { wake(expediting: false) } }
        }
    }

    /// ``runReturned(_:)`` for the calling thread's list, if it has one and something was handed back.
    /// Context: as ``runReturned(_:)``.
    func runReturnedOfCurrentThread() {
        guard let list = ThreadCallbacks.currentIfRegistered, list.hasReturned.load(ordering: .relaxed) else { return }
        runReturned(list)
    }

    /// Runs the callbacks handed back to the calling thread, whose grace periods have passed, in the
    /// order it queued them. Not inside a read section, in atomic context, on the reclaimer or inside a
    /// callback (where ``callerMayWait`` is false), not while the thread holds a ``KernelMutex`` (noted
    /// for its last unlock, which runs them), nor while the reclaimer runs this thread's queue: those
    /// are left for later, or for the reclaimer.
    ///
    /// Context: the thread that owns `list`; no library lock held.
    @inline(never)
    private func runReturned(_ list: ThreadCallbacks) {
        guard callerMayWait else { return }
        // Not with a KernelMutex held either: the deinits would run inside the caller's critical
        // section, which they would lengthen, and a deinit that takes the lock would wait for itself.
        if ks_mutexes_held_get() != 0 {
            ks_returned_deferred_set(1)
            return
        }
        var segments: [ReturnedSegment] = lock.withLock {
            guard !list.reclaimerIsRunning else { return [] }
            let taken = takeReturned(list, ownerOnly: true)
            list.ownerIsRunning = !taken.isEmpty
            // A closure left at the head is the reclaimer's to run.
            if !list.returned.isEmpty && idle.load(ordering: .relaxed) { wake(expediting: false) }
            return taken
        }
        guard !segments.isEmpty else { return }
        let ran = perform(&segments)
        lock.withLock {
            list.ownerIsRunning = false
            finishRunning(segments, ran: ran)
        }
    }

    /// Takes `list`'s queue of callbacks to run, in order: all of it, or with `ownerOnly` the part
    /// before the first segment only the reclaimer runs. Context: lock held; the caller is the queue's
    /// one runner now.
    private func takeReturned(_ list: ThreadCallbacks, ownerOnly: Bool) -> [ReturnedSegment] {
        let count = ownerOnly ? list.returned.firstIndex { !$0.ownerMayRun } ?? list.returned.count : list.returned.count
        let taken = Array(list.returned[..<count])
        list.returned.removeFirst(count)
        if let head = list.returned.first {
            if count > 0 { list.returnedSince = monotonicNanoseconds() }
            list.hasReturned.store(head.ownerMayRun, ordering: .relaxed)
        } else {
            list.hasReturned.store(false, ordering: .relaxed)
            if count > 0 { returningLists.removeAll { $0 === list } }
        }
        return taken
    }

    /// Runs `segments` in order, and empties them (the callbacks, and the objects and closures they
    /// hold, are released before they count as run), under the callbacks' pseudo-lock: a back-pressure
    /// waiter waits for their deinits too. Returns how many ran.
    ///
    /// Context: the reclaimer, or the thread that queued them; no library lock held.
    private func perform(_ segments: inout [ReturnedSegment]) -> UInt64 {
        var ran: UInt64 = 0
        let validating = Lockdep.isValidating
        if validating { callbacksMap.acquire() }
        let debugReclamation = RCU.debugReclamation
        for index in segments.indices {
            // Through the buffer, so that no callback is copied (and its object retained) to run it.
            segments[index].callbacks.withUnsafeBufferPointer { callbacks in
                for index in callbacks.indices {
                    callbacks[index].perform(debugReclamation: debugReclamation)
                    if _slowPath(RCUReaderRecord.currentNesting != 0) {
                        RCU.endLeakedReadSections(by: "an RCU callback (a closure queued with RCU.call, or a retired object's deinit)")
                    }
                }
            }
            ran += UInt64(segments[index].callbacks.count)
            let keepsCapacity = segments[index].callbacks.capacity <= 4 * Reclaimer.batchSize
            segments[index].callbacks.removeAll(keepingCapacity: keepsCapacity)
        }
        if validating { callbacksMap.releaseRecorded() }
        return ran
    }

    /// Counts `ran` callbacks as run, keeps the emptied arrays for the lists, and wakes whoever waits
    /// for callbacks. Context: lock held.
    private func finishRunning(_ emptied: [ReturnedSegment], ran: UInt64) {
        for segment in emptied {
            unfinished.remove(segment.first)
            if spareArrays.count < Reclaimer.maxSpareArrays { spareArrays.append(segment.callbacks) }
        }
        ranTotal += ran
        progress.broadcast()
    }

    /// Adds the callbacks of `segment`, whose grace period has passed, to its thread's queue.
    /// Context: lock held.
    private func handBack(_ segment: Segment, now: UInt64) {
        let list = segment.origin
        if list.returned.isEmpty {
            list.returnedSince = now
            returningLists.append(list)
        }
        list.returned.append(ReturnedSegment(callbacks: segment.callbacks, ownerMayRun: !segment.holdsClosure, first: segment.first))
        list.hasReturned.store(list.returned[0].ownerMayRun, ordering: .relaxed)
    }

    /// Whether the reclaimer runs `list`'s queue itself now: always when `all` (offloading, or someone
    /// waits for callbacks), else when a closure is at its head, when the thread has exited, or when it
    /// has left its queue for ``returnPatienceNanoseconds``. Never while the thread runs it.
    /// Context: lock held.
    private func reclaimerTakesOver(_ list: ThreadCallbacks, all: Bool, now: UInt64) -> Bool {
        !list.ownerIsRunning && !list.reclaimerIsRunning
            && (all || list.returned.first?.ownerMayRun == false || !list.acceptsReturned
                || now &- list.returnedSince >= Reclaimer.returnPatienceNanoseconds)
    }

    /// Takes the queues that the reclaimer runs itself now (``reclaimerTakesOver(_:all:now:)``) and
    /// marks it their runner. Context: lock held.
    private func takeOverReturned(all: Bool) -> (lists: [ThreadCallbacks], segments: [ReturnedSegment]) {
        let now = monotonicNanoseconds()
        let lists = returningLists.filter { reclaimerTakesOver($0, all: all, now: now) }
        var segments: [ReturnedSegment] = []
        for list in lists {
            list.reclaimerIsRunning = true
            segments += takeReturned(list, ownerOnly: false)
        }
        return (lists, segments)
    }

    /// Whether a queue waits that the reclaimer would take over now. Context: lock held.
    private func hasQueueToTakeOver(all: Bool) -> Bool {
        let now = monotonicNanoseconds()
        return returningLists.contains { reclaimerTakesOver($0, all: all, now: now) }
    }

    /// When the reclaimer should look at the queues again: when the oldest that no thread is running
    /// could be taken over, or a patience from now if every one is being run. Context: lock held.
    private var nextTakeOverDeadline: UInt64 {
        let now = monotonicNanoseconds()
        guard let oldest = returningLists.lazy.filter({ !$0.ownerIsRunning }).map(\.returnedSince).min() else {
            return now + Reclaimer.returnPatienceNanoseconds
        }
        // Not in the past: a queue that could be taken over now would not have let the reclaimer wait.
        return max(oldest + Reclaimer.returnPatienceNanoseconds, now)
    }

    /// Moves `list`'s callbacks to the reclaimer's queue, first waiting for room when the backlog would
    /// exceed the bound (or admitting them above it, for a caller that must not wait).
    ///
    /// Context: the thread that owns `list`. Takes lock, under which every collection runs, so that a
    /// callback is always either on its list or in the queue, where a barrier finds it.
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
            // The reclaimer runs its own callbacks in its batches.
            if isCurrentThread { list.acceptsReturned = false }
            startIfNeeded()
            lists.append(list)
        }
    }

    /// Hands an exiting thread's list over, whatever the bound, and forgets it.
    func unregister(_ list: ThreadCallbacks) {
        lock.withLock {
            collect(list)
            lists.removeAll { $0 === list }
            // What was or will be handed back to it runs here.
            list.acceptsReturned = false
            if idle.load(ordering: .relaxed) && (collectedCount > 0 || !list.returned.isEmpty) { wake(expediting: false) }
        }
    }

    /// Moves every thread's callbacks to the queue. Context: lock held.
    private func collectLists() {
        for list in lists { collect(list) }
    }

    /// Moves `list`'s callbacks to the queue, in their order, into a spare array that becomes a segment.
    /// Context: lock held.
    private func collect(_ list: ThreadCallbacks) {
        guard list.count > 0 else { return }
        let segment = list.takeSegment(filling: spareArrays.popLast() ?? Reclaimer.freshSegment(), first: queuedTotal)
        unfinished.insert(segment.first)
        collectedCount += segment.callbacks.count
        queuedTotal += UInt64(segment.callbacks.count)
        segments.append(segment)
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

    /// Waits until every callback queued before the call has run: every segment numbered below the
    /// collection's end, wherever it runs (``unfinished``).
    ///
    /// Context: may block; not on the reclaimer thread, not in a read section (callers check).
    func waitForQueued() {
        lock.withLock {
            collectLists()
            let target = queuedTotal
            while unfinished.contains(where: { $0 < target }) {
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
        !isRunningCallbacks && RCUReaderRecord.currentNesting == 0 && !Lockdep.inAtomicContext
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
            var (batch, target, runsAll) = lock.withLock { () -> ([Segment], UInt64, Bool) in
                collectLists()
                while collectedCount == 0 && GracePeriodEngine.hasElapsed(requestedTarget)
                        && !hasQueueToTakeOver(all: expedite || RCU.offloadsCallbacks) {
                    // Published before the lists are looked at again (see ``idle``).
                    idle.store(true, ordering: .sequentiallyConsistent)
                    engine.fullBarrierOnAllThreads()
                    collectLists()
                    if collectedCount > 0 { break }
                    if returningLists.isEmpty {
                        workAvailable.wait(lock)
                    } else {
                        // Queues wait for their threads: look again when one could be taken over.
                        _ = workAvailable.wait(lock, untilMonotonicNanoseconds: nextTakeOverDeadline)
                    }
                }
                idle.store(false, ordering: .relaxed)
                if collectedCount > 0 {
                    let gatherUntil = monotonicNanoseconds() + Reclaimer.batchDelayNanoseconds
                    while !expedite && collectedCount < Reclaimer.batchSize && monotonicNanoseconds() < gatherUntil {
                        workAvailable.wait(lock, untilMonotonicNanoseconds: gatherUntil)
                    }
                    collectLists()
                }
                let runsAll = expedite || RCU.offloadsCallbacks
                expedite = false
                let taken = segments
                segments = []
                collectedCount = 0
                if !taken.isEmpty { batchNumber += 1 }
                // Callers snapshot their target before they list the callback, so queue order is not
                // target order: the batch waits for the latest target of any of its callbacks.
                let latest = taken.reduce(requestedTarget) { max($0, $1.latestTarget) }
                return (taken, latest, runsAll)
            }
            engine.synchronize(until: target)
            // The batch joins its threads' queues, behind what they hold already; then the queues the
            // reclaimer runs itself are taken whole, so each thread's callbacks run in its order.
            var (lists, runs) = lock.withLock { () -> ([ThreadCallbacks], [ReturnedSegment]) in
                let now = monotonicNanoseconds()
                for segment in batch { handBack(segment, now: now) }
                // The queues hold the only copies now: running a callback empties its array in place.
                batch = []
                return takeOverReturned(all: runsAll)
            }
            let ran = perform(&runs)
            lock.withLock {
                for list in lists { list.reclaimerIsRunning = false }
                lists = []
                finishRunning(runs, ran: ran)
            }
        }
    }
}

/// One thread's queued callbacks, not yet collected by the reclaimer.
///
/// Kernel analogue: a CPU's `rcu_data.cblist`, to which `call_rcu()` adds with interrupts off.
///
/// A single-producer ring: the owning thread appends at ``head`` with plain stores, and whoever
/// collects (the reclaimer, a barrier, the owner's own hand-over, always under ``Reclaimer/lock``, so one
/// at a time) moves the callbacks out from ``tail``. Queueing takes no lock and makes no atomic
/// read-modify-write: on x86 the release store and the acquire load are plain moves. (It was a mutex
/// pair a queueing, a tenth of a remove-path cycle.)
///
/// Made and registered by the thread's first queueing, found through a C thread-local (one load), held
/// by a pthread key whose destructor hands the callbacks over and unregisters the list when the thread
/// exits.
final class ThreadCallbacks: @unchecked Sendable {
    /// The ring's size: the most callbacks a list holds before its thread hands it over
    /// (``Reclaimer/handOffThreshold`` is at most this).
    static let capacity = 256

    /// The ring's slots; slot `i % capacity` holds the callback numbered `i`, for `tail ≤ i < head`.
    /// Written by the owner between ``tail`` and its next ``head``; moved out by the collector below
    /// the ``head`` it loaded.
    private let slots = UnsafeMutablePointer<Reclaimer.Callback>.allocate(capacity: ThreadCallbacks.capacity)
    /// How many callbacks the owner has ever listed. Written by the owner only.
    ///
    /// Ordering: release store after the slot is initialised, paired with the collector's acquire load:
    /// a collector that sees the count sees the callback.
    private let head = Atomic<Int>(0)
    /// How many callbacks collectors have ever moved out. Written under ``Reclaimer/lock`` only.
    ///
    /// Ordering: release store after the slots are moved out, paired with the owner's acquire load
    /// before it reuses them.
    private let tail = Atomic<Int>(0)

    /// Guarded by: ``Reclaimer/lock``. Callbacks whose grace period has passed, handed back for this
    /// thread to run, in the order it queued them.
    @exclusivity(unchecked) var returned: [Reclaimer.ReturnedSegment] = []
    /// Guarded by: ``Reclaimer/lock``. Since when the head of ``returned`` has waited (monotonic
    /// nanoseconds): set when the queue becomes non-empty and when its thread leaves part of it.
    @exclusivity(unchecked) var returnedSince: UInt64 = 0
    /// Guarded by: ``Reclaimer/lock``. False once the thread has exited (and for the reclaimer's own
    /// list): the reclaimer runs what is handed back at once.
    @exclusivity(unchecked) var acceptsReturned = true
    /// Written under ``Reclaimer/lock`` by the owning thread only, which also reads it without the lock:
    /// the thread is running its queue.
    @exclusivity(unchecked) var ownerIsRunning = false
    /// Guarded by: ``Reclaimer/lock``. The reclaimer is running this thread's queue.
    @exclusivity(unchecked) var reclaimerIsRunning = false
    /// Whether ``returned`` may hold callbacks: the owning thread's cheap test at each queueing.
    ///
    /// Ordering: relaxed. Set under ``Reclaimer/lock`` after the callbacks are listed; the owner then
    /// takes the lock to take them, so a stale false only delays them to its next queueing (or to the
    /// reclaimer's take-over), and a stale true costs one lock. False while the head of the queue is
    /// a closure, which only the reclaimer runs.
    let hasReturned = Atomic<Bool>(false)

    deinit {
        // The thread has exited and its list was collected when it unregistered.
        let left = head.load(ordering: .acquiring) - tail.load(ordering: .relaxed)
        precondition(left == 0, "ThreadCallbacks: \(left) callbacks left on an exiting thread's list")
        slots.deallocate()
    }

    /// Lists `callback`; returns how many the list holds now. Context: the owning thread.
    @inline(__always)
    func append(_ callback: consuming Reclaimer.Callback) -> Int {
        let listed = head.load(ordering: .relaxed)
        let count = listed - tail.load(ordering: .acquiring)
        precondition(count < ThreadCallbacks.capacity, "ThreadCallbacks: a thread's callback list overflowed (\(count) callbacks)")
        (slots + listed % ThreadCallbacks.capacity).initialize(to: callback)
        head.store(listed + 1, ordering: .releasing)
        return count + 1
    }

    /// How many callbacks the list holds (a snapshot). Context: ``Reclaimer/lock`` held, or the owner.
    var count: Int { head.load(ordering: .acquiring) - tail.load(ordering: .acquiring) }

    /// Moves the listed callbacks, in the order they were listed, into `array` (empty, kept for its
    /// capacity), and returns them as a segment numbered `first` (``Reclaimer/Segment/first``), summed
    /// up while their slots are in the collector's cache (see ``Reclaimer/Segment``).
    /// Context: ``Reclaimer/lock`` held (the one collector at a time).
    func takeSegment(filling array: consuming [Reclaimer.Callback], first: UInt64) -> Reclaimer.Segment {
        let oldest = tail.load(ordering: .relaxed)
        let end = head.load(ordering: .acquiring)
        array.reserveCapacity(end - oldest)
        var latestTarget: UInt64 = 0
        var holdsClosure = false
        for number in oldest..<end {
            let callback = (slots + number % ThreadCallbacks.capacity).move()
            // Not the last: a token's retire queues the cookie taken at its update, which can be older
            // than a snapshot the thread queued since.
            latestTarget = max(latestTarget, callback.target)
            if case .run = callback.action { holdsClosure = true }
            array.append(callback)
        }
        tail.store(end, ordering: .releasing)
        return Reclaimer.Segment(callbacks: array, origin: self, latestTarget: latestTarget, holdsClosure: holdsClosure, first: first)
    }

    /// The calling thread's list, made and registered with `reclaimer` on first use. Unretained: the
    /// thread's TLS slot holds it until the thread exits.
    @inline(__always)
    static func current(registeringWith reclaimer: Reclaimer) -> Unmanaged<ThreadCallbacks> {
        if let raw = ks_callback_list_get() { return Unmanaged<ThreadCallbacks>.fromOpaque(raw) }
        return registerCurrent(with: reclaimer)
    }

    /// The calling thread's list, if it has queued anything.
    static var currentIfRegistered: ThreadCallbacks? {
        ks_callback_list_get().map { Unmanaged<ThreadCallbacks>.fromOpaque($0).takeUnretainedValue() }
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
