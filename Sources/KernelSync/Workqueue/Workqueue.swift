/// A named work queue with its own pthread workers: the userspace counterpart of a kernel workqueue.
///
/// Kernel analogue: `alloc_workqueue()` / `alloc_ordered_workqueue()`, `queue_work()`,
/// `queue_delayed_work()`, `mod_delayed_work()`, `flush_workqueue()`, `drain_workqueue()`,
/// `destroy_workqueue()`.
///
/// ```swift
/// let events = Workqueue(name: "iommu_events", maxActive: 2)
/// let broken = WorkItem(name: "gdev->broken_work") { _ in groupLock.withLock { quarantine() } }
/// events.queue(broken)        // true: the function runs soon on a worker
/// broken.cancelSync()         // neither pending nor running on return
/// events.destroy()            // joins the workers
/// ```
///
/// The queue starts `maxActive` worker threads, so at most that many items run at once, and one timer
/// thread for delayed work. An ordered queue has one worker: items run one at a time, in queueing order.
/// While the function runs, its worker holds the queue's pseudo-lock and the item's (kernel
/// `process_one_work`), so the validator sees what the function locks under both.
///
/// - Warning: Call ``destroy(file:line:)`` when done: the threads hold the queue until then.
public final class Workqueue: @unchecked Sendable, CustomStringConvertible {
    /// Why a queue refused an item.
    enum Refusal {
        /// ``drain(file:line:)`` is in progress and the caller is not one of the queue's workers.
        case draining
        /// ``destroy(file:line:)`` has begun.
        case destroyed
    }

    /// Everything the queue's lock guards.
    private struct State {
        var pending = PendingWork<WorkEntry>()
        /// Ready or running instances by the flush epoch they were made ready in. Delayed instances
        /// count once their timer fires.
        var outstanding = EpochCounts()
        /// Each ``flush(file:line:)`` waits for the epochs up to the current one and starts the next.
        var epoch: UInt64 = 0
        /// Nesting of ``drain(file:line:)`` calls in progress.
        var drainDepth = 0
        /// Set by ``destroy(file:line:)``; queueing is refused from then on.
        var destroying = false
        /// Items whose pending instance a worker withdrew after ``destroying`` was set: one handed off
        /// to it, or one it waited for while the item ran from another queue, neither on the lists that
        /// ``destroy(file:line:)`` takes back. Reported by ``destroy(file:line:)`` with the others.
        var withdrawnByWorkers: [String] = []
        /// Tells the workers and the timer thread to return.
        var stopping = false
        /// Kernel thread ids of the workers (chained queueing while draining).
        var workerThreadIDs: Set<Int32> = []
        /// Workers blocked on `workAvailable`.
        var sleepingWorkers = 0
        /// A `workAvailable` signal was sent and no worker has come back from waiting since. At most one
        /// wakeup is in flight: the worker it wakes wakes the next one if ready entries remain.
        var wakeInFlight = false

        /// Whether the caller must signal `workAvailable` for a ready entry: a worker sleeps and no
        /// wakeup is on its way. Marks one in flight when it returns true.
        mutating func claimWakeup() -> Bool {
            guard sleepingWorkers > 0, !wakeInFlight, !pending.isReadyEmpty else { return false }
            wakeInFlight = true
            return true
        }
    }

    public let name: String
    /// The most items that run at once: the number of worker threads.
    public let maxActive: Int
    /// One item at a time, in queueing order.
    public let isOrdered: Bool
    /// The queue's pseudo-lock (the kernel's `wq->lockdep_map`), held by the workers around every
    /// function and acquired by ``flush(file:line:)``, ``drain(file:line:)`` and ``destroy(file:line:)``.
    let map: LockdepMap

    /// Serialises `state`. Taken after an item's lock, never before it (see ``WorkItemCore``).
    private let lock = PthreadMutex()
    /// Workers wait here for ready entries or for `stopping`.
    private let workAvailable = PthreadCondition()
    /// The timer thread waits here for the earliest deadline, a new earlier one, or `stopping`.
    private let timerChanged = PthreadCondition()
    /// Flush, drain and destroy wait here for `outstanding` to shrink.
    private let retired = PthreadCondition()
    /// Guarded by: lock. Behind a pointer rather than in class `var`s, so the per-item paths pay no
    /// dynamic exclusivity check; wait loops read it through the pointer, after every wait.
    private let state: UnsafeMutablePointer<State>
    /// Written in init; read once by the ``destroy(file:line:)`` call that wins `destroying`.
    private var threads: [KernelThread] = []

    /// Creates a queue and starts its threads, named "`name`/0"… and "`name`/timer". The queue's
    /// pseudo-lock class is keyed by the calling source line.
    ///
    /// Kernel analogue: `alloc_workqueue(name, 0, maxActive)`, or `alloc_ordered_workqueue(name, 0)`
    /// with `ordered` (which requires `maxActive` 1).
    public init(
        name: String, maxActive: Int = 1, ordered: Bool = false, file: StaticString = #fileID, line: UInt = #line
    ) {
        precondition(maxActive >= 1, "Workqueue(name: \(name)) at \(file):\(line): maxActive is \(maxActive), expected at least 1")
        precondition(!ordered || maxActive == 1, "Workqueue(name: \(name), ordered: true) at \(file):\(line): maxActive is \(maxActive); an ordered queue runs one item at a time, so pass 1")
        self.name = name
        self.maxActive = maxActive
        isOrdered = ordered
        state = .allocate(capacity: 1)
        state.initialize(to: State())
        map = LockdepMap(name: "(wq_completion)\(name)", file: file, line: line)
        threads = (0..<maxActive).map { index in KernelThread(name: "\(name)/\(index)") { self.workerLoop() } }
        threads.append(KernelThread(name: "\(name)/timer") { self.timerLoop() })
    }

    deinit {
        state.deinitialize(count: 1)
        state.deallocate()
        retired.destroy()
        timerChanged.destroy()
        workAvailable.destroy()
        lock.destroy()
    }

    /// The queue's pseudo-lock class, to find its reports with ``Lockdep/reports(involving:)``.
    public var lockClass: LockClass { map.lockClass }

    public var description: String { "Workqueue(\(name))" }

    // MARK: Queueing

    /// Queues `item` to run on a worker. Returns false when the item is already pending, is disabled,
    /// is being cancelled by ``WorkItem/cancelSync(file:line:)``, or the queue refuses it (draining and
    /// the caller is not one of its workers, or destroyed: both reported).
    ///
    /// Kernel analogue: `queue_work()`.
    ///
    /// Ordering: a true return happens before the function starts: the writes the caller made before
    /// queueing are visible to it (the queue lock is released after listing and taken by the worker).
    ///
    /// Context: does not sleep beyond short internal locks; callable in atomic context and from a work
    /// function (chained queueing).
    @discardableResult
    public func queue(_ item: WorkItem, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        item.core.queue(item, on: self, delayNanoseconds: nil, file: file, line: line)
    }

    /// Queues `item` to become ready after `delay` (zero or negative: at once; beyond the clock's range,
    /// about 584 years: only when flushed). Returns false as ``queue(_:file:line:)`` does.
    ///
    /// Kernel analogue: `queue_delayed_work()`.
    ///
    /// Context: as ``queue(_:file:line:)``.
    @discardableResult
    public func queue(_ item: WorkItem, after delay: Duration, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        item.core.queue(item, on: self, delayNanoseconds: nanoseconds(delay), file: file, line: line)
    }

    /// Sets the delay of `item` to `delay` from now: a pending instance is withdrawn (its timer
    /// removed) and a new one queued; an idle or running item is queued. Returns whether an instance
    /// was pending. A disabled or cancelling item is not queued, and false is returned (it has no
    /// pending instance).
    ///
    /// Kernel analogue: `mod_delayed_work()` since Linux 6.10, where `cancel_work_sync()` disables the
    /// item while it waits. Before, an item being cancelled made it return true, from
    /// `try_to_grab_pending()`'s -ENOENT, without queueing.
    ///
    /// Context: as ``queue(_:file:line:)``.
    @discardableResult
    public func modifyDelay(of item: WorkItem, to delay: Duration, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        item.core.modifyDelay(item, on: self, delayNanoseconds: nanoseconds(delay), file: file, line: line)
    }

    // MARK: Flush, drain, destroy

    /// Waits until every instance that was ready (or running) at the call has finished. Instances
    /// queued later, and delayed ones whose timer has not fired, are not waited for.
    ///
    /// Kernel analogue: `flush_workqueue()`.
    ///
    /// Context: may sleep; not in atomic context. From one of the queue's own workers it is reported
    /// and returns at once (it would wait for itself).
    public func flush(file: StaticString = #fileID, line: UInt = #line) {
        guard prepareToWait("flush_workqueue(\(name))", file: file, line: line) else { return }
        lock.withLock {
            let target = state.pointee.epoch
            state.pointee.epoch += 1
            while state.pointee.outstanding.hasWork(through: target) { retired.wait(lock) }
        }
    }

    /// Waits until the queue has no ready or running instance. While it waits, only the queue's own
    /// workers may queue on it (chained work); anyone else is refused and reported, and so is a
    /// delayed instance whose timer expires meanwhile: it is withdrawn, not run, as the kernel warns
    /// and drops it. Cancel delayed work before draining; a delayed instance whose timer has not
    /// expired when the drain returns stays queued.
    ///
    /// Kernel analogue: `drain_workqueue()`.
    ///
    /// Context: as ``flush(file:line:)``.
    public func drain(file: StaticString = #fileID, line: UInt = #line) {
        guard prepareToWait("drain_workqueue(\(name))", file: file, line: line) else { return }
        lock.withLock {
            state.pointee.drainDepth += 1
            while !state.pointee.outstanding.isEmpty { retired.wait(lock) }
            state.pointee.drainDepth -= 1
        }
    }

    /// Destroys the queue: refuses new work, withdraws every pending instance (ready or delayed) without
    /// running it and reports them, waits for the functions that are running, then stops and joins the
    /// worker and timer threads. Withdrawn items end idle; their functions never run from this queue.
    ///
    /// Kernel analogue: `destroy_workqueue()`, which drains first and warns about what is still busy.
    /// Here pending work at destroy is a bug in the caller's teardown, so it is reported and cancelled,
    /// never run.
    ///
    /// Context: as ``flush(file:line:)``. A second call is reported and does nothing.
    public func destroy(file: StaticString = #fileID, line: UInt = #line) {
        guard prepareToWait("destroy_workqueue(\(name))", file: file, line: line) else { return }
        let taken: (ready: [WorkEntry], delayed: [WorkEntry])? = lock.withLock {
            guard !state.pointee.destroying else { return nil }
            state.pointee.destroying = true
            return state.pointee.pending.removeAll()
        }
        guard let taken else {
            Lockdep.emit(WorkqueueReports.destroyedTwice(queue: self, site: "\(file):\(line)"))
            return
        }
        var withdrawn: [String] = []
        for entry in taken.ready {
            if entry.item.abandon(sequence: entry.sequence) { withdrawn.append(entry.item.name) }
            retire(epoch: entry.epoch)
        }
        for entry in taken.delayed where entry.item.abandon(sequence: entry.sequence) {
            withdrawn.append(entry.item.name + " (delayed)")
        }
        // The workers withdraw the instances a worker holds (handed off, or waiting for a run on
        // another queue) by the time their tickets retire, so all are known once nothing is outstanding.
        lock.withLock {
            while !state.pointee.outstanding.isEmpty { retired.wait(lock) }
            state.pointee.stopping = true
            withdrawn += state.pointee.withdrawnByWorkers
        }
        if !withdrawn.isEmpty {
            Lockdep.emit(WorkqueueReports.destroyedWithPendingWork(queue: self, items: withdrawn, site: "\(file):\(line)"))
        }
        workAvailable.broadcast()
        timerChanged.broadcast()
        for thread in threads { thread.join() }
    }

    // MARK: For work items

    /// Lists the entry `makeEntry` returns, ready at once (`delay` nil or 0) or after `delay`
    /// nanoseconds, unless the queue refuses the caller; `makeEntry` runs under the queue lock and
    /// returns nil when the item refuses. Returns whether an entry was listed, and the queue's refusal.
    ///
    /// Context: the item's lock is held (lock order item → queue).
    func admit(
        caller: Int32, delayNanoseconds delay: UInt64?, _ makeEntry: () -> WorkEntry?
    ) -> (queued: Bool, refusal: Refusal?) {
        var wakeWorker = false
        var wakeTimer = false
        let outcome: (queued: Bool, refusal: Refusal?) = lock.withLock {
            if state.pointee.destroying { return (false, .destroyed) }
            if state.pointee.drainDepth > 0 && !state.pointee.workerThreadIDs.contains(caller) {
                return (false, .draining)
            }
            guard var entry = makeEntry() else { return (false, nil) }
            if let delay, delay > 0 {
                // Saturates: a deadline past the clock's range waits for ever instead of wrapping into the past.
                let (deadline, overflow) = monotonicNanoseconds().addingReportingOverflow(delay)
                wakeTimer = state.pointee.pending.schedule(entry, deadline: overflow ? .max : deadline)
            } else {
                makeReady(&entry)
                state.pointee.pending.append(entry)
                wakeWorker = state.pointee.claimWakeup()
            }
            return (true, nil)
        }
        if wakeWorker { workAvailable.signal() }
        if wakeTimer { timerChanged.signal() }
        return outcome
    }

    /// Whether the queue is being destroyed, in which case a worker withdraws the pending instance of
    /// `item` it holds instead of running it: records the item for ``destroy(file:line:)``'s report.
    ///
    /// Context: a worker of this queue, holding the item's lock (lock order item → queue).
    func withdrawsHeldInstance(of item: @autoclosure () -> String) -> Bool {
        lock.withLock {
            guard state.pointee.destroying else { return false }
            state.pointee.withdrawnByWorkers.append(item())
            return true
        }
    }

    /// Whether `thread` (a kernel thread id) is one of the queue's workers.
    func isWorker(_ thread: Int32) -> Bool {
        lock.withLock { state.pointee.workerThreadIDs.contains(thread) }
    }

    /// Reports a refused queueing.
    func reportRefusal(_ refusal: Refusal, item: WorkItemCore, site: String) {
        Lockdep.emit(WorkqueueReports.refusedQueueing(queue: self, refusal: refusal, item: item, site: site))
    }

    /// An instance that counted in `outstanding` under `epoch` has ended (run, or found stale).
    func retire(epoch: UInt64) {
        if lock.withLock({ countRetired(epoch: epoch) }) { retired.broadcast() }
    }

    /// Removes the delayed entry of instance `sequence` of `item`, if it is still waiting for its timer.
    func removeDelayed(item: WorkItemCore, sequence: UInt64) {
        _ = lock.withLock { state.pointee.pending.removeDelayed { $0.item === item && $0.sequence == sequence } }
    }

    /// Makes the delayed instance `sequence` of `item` ready now, if it is still waiting for its timer
    /// (`flush_delayed_work`).
    func expedite(item: WorkItemCore, sequence: UInt64) {
        let wakeWorker: Bool = lock.withLock {
            let delayed = state.pointee.pending.removeDelayed { $0.item === item && $0.sequence == sequence }
            guard var entry = delayed else { return false }
            makeReady(&entry)
            state.pointee.pending.append(entry)
            return state.pointee.claimWakeup()
        }
        if wakeWorker { workAvailable.signal() }
    }

    /// Runs `item`'s function on the calling worker, holding the queue's and the item's pseudo-locks
    /// (kernel `process_one_work`), and reports a function that returns with a lock held or in atomic
    /// context.
    ///
    /// Context: a worker thread; no KernelSync lock held.
    @inline(__always)
    func run(_ item: WorkItemCore, owner: WorkItem) {
        if Lockdep.isValidating {
            runValidated(item, owner: owner)
        } else {
            owner.function(owner)
            endLeakedReadSections(of: item)
        }
    }

    /// A work function that returned inside a read section is reported and the section ended, in every
    /// validator mode: the worker would otherwise hold up every grace period from then on.
    @inline(__always)
    private func endLeakedReadSections(of item: WorkItemCore) {
        if _slowPath(RCUReaderRecord.currentNesting != 0) {
            RCU.endLeakedReadSections(by: "work function \(item.name) on \(name)")
        }
    }

    // MARK: Private

    /// ``run(_:owner:)`` with the validator on: the pseudo-locks around the function and the check that
    /// it returned with none of its own locks held and outside atomic context.
    @inline(never)
    private func runValidated(_ item: WorkItemCore, owner: WorkItem) {
        map.acquire()
        item.map.acquire()
        let thread = ThreadState.current
        let depth = thread.pointee.depth
        let atomicDepth = thread.pointee.atomicDepth
        owner.function(owner)
        // First, so that the depth check below sees only the other locks it leaked.
        endLeakedReadSections(of: item)
        if thread.pointee.depth != depth || thread.pointee.atomicDepth != atomicDepth {
            Lockdep.emit(WorkqueueReports.leakedLock(
                queue: self, item: item, state: thread, expectedDepth: depth, expectedAtomicDepth: atomicDepth))
        }
        item.map.release()
        map.release()
    }

    /// The common start of the blocking queue-wide calls: the might-sleep check, refusal from the
    /// queue's own workers, and the pseudo-lock acquire/release that records what the caller holds.
    /// Returns false when the call must return at once.
    private func prepareToWait(_ call: String, file: StaticString, line: UInt) -> Bool {
        Lockdep.mightSleep(call, file: file, line: line)
        if isWorker(KernelThread.currentID) {
            Lockdep.emit(WorkqueueReports.queueSelfFlush(queue: self, call: call, site: "\(file):\(line)"))
            return false
        }
        map.acquire(file: file, line: line)
        map.release(file: file, line: line)
        return true
    }

    /// Counts `entry` in the current epoch. Context: `lock` held.
    private func makeReady(_ entry: inout WorkEntry) {
        entry.epoch = state.pointee.epoch
        state.pointee.outstanding.add(entry.epoch)
    }

    /// Counts an instance of `epoch` as ended; returns whether that was the epoch's last, so flush,
    /// drain and destroy must be woken. Context: `lock` held.
    private func countRetired(epoch: UInt64) -> Bool {
        guard let left = state.pointee.outstanding.remove(epoch) else {
            preconditionFailure("Workqueue \(name): retiring an instance of epoch \(epoch), which has none outstanding")
        }
        return left == 0
    }

    /// What a worker does next.
    private enum WorkerStep {
        /// Process `entry`; first wake the waiters of `retired` and one more worker where told.
        case process(WorkEntry, wakeWaiters: Bool, wakeWorker: Bool)
        /// Wake the waiters of `retired`, then look for work again.
        case wakeWaiters
        case stop
    }

    /// A worker: takes ready entries one at a time and processes each. The retirement of its last run
    /// is counted when it next takes the lock to look for work, so a busy worker takes the queue lock
    /// once per item.
    private func workerLoop() {
        let me = KernelThread.currentID
        _ = lock.withLock { state.pointee.workerThreadIDs.insert(me) }
        var finished: UInt64?
        while true {
            let step: WorkerStep = lock.withLock {
                let epochDone = finished.map { countRetired(epoch: $0) } ?? false
                finished = nil
                // Sleep only after the waiters of a finished epoch have been woken (outside the lock).
                while !epochDone && state.pointee.pending.isReadyEmpty && !state.pointee.stopping {
                    state.pointee.sleepingWorkers += 1
                    workAvailable.wait(lock)
                    state.pointee.sleepingWorkers -= 1
                    state.pointee.wakeInFlight = false
                }
                if state.pointee.stopping { return .stop }
                guard let entry = state.pointee.pending.popReady() else { return .wakeWaiters }
                return .process(entry, wakeWaiters: epochDone, wakeWorker: state.pointee.claimWakeup())
            }
            switch step {
            case .process(let entry, let wakeWaiters, let wakeWorker):
                if wakeWaiters { retired.broadcast() }
                if wakeWorker { workAvailable.signal() }
                finished = entry.item.process(entry, on: self, runner: me)
            case .wakeWaiters:
                retired.broadcast()
            case .stop:
                return
            }
        }
    }

    /// What the timer thread does with the delayed entries whose deadline has passed.
    private enum TimerStep {
        /// They are ready; wake a worker where told.
        case readied(wakeWorker: Bool)
        /// The queue drains, so they are refused: withdraw and report them.
        case refused([WorkEntry])
        case stop
    }

    /// The timer thread: makes delayed entries ready when their deadline passes. While the queue
    /// drains, an expiring timer is refused as any queueing from outside the queue's workers is (the
    /// kernel's `__queue_work()` warns and drops it: a timer is not chained work), so the instance is
    /// withdrawn and reported instead of run.
    private func timerLoop() {
        while true {
            let step: TimerStep = lock.withLock {
                while !state.pointee.stopping {
                    guard let deadline = state.pointee.pending.nextDeadline else {
                        timerChanged.wait(lock)
                        continue
                    }
                    let now = monotonicNanoseconds()
                    if deadline > now {
                        timerChanged.wait(lock, untilMonotonicNanoseconds: deadline)
                        continue
                    }
                    if state.pointee.drainDepth > 0 { return .refused(state.pointee.pending.removeExpired(now: now)) }
                    _ = state.pointee.pending.expire(now: now) { makeReady(&$0) }
                    return .readied(wakeWorker: state.pointee.claimWakeup())
                }
                return .stop
            }
            switch step {
            case .readied(let wakeWorker):
                if wakeWorker { workAvailable.signal() }
            case .refused(let entries):
                // The item's lock comes before the queue's, so the withdrawal happens out here; an
                // instance cancelled or replaced meanwhile is no longer the one that expired.
                for entry in entries where entry.item.abandon(sequence: entry.sequence) {
                    Lockdep.emit(WorkqueueReports.delayedWorkExpiredWhileDraining(queue: self, item: entry.item))
                }
            case .stop:
                return
            }
        }
    }
}

/// `delay` in whole nanoseconds; zero for a negative delay, `UInt64.max` for one too long to count in
/// nanoseconds (it would otherwise wrap to a short delay, or into the past).
private func nanoseconds(_ delay: Duration) -> UInt64 {
    let (seconds, attoseconds) = delay.components
    guard seconds >= 0, attoseconds >= 0 else { return 0 }
    let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
    let (total, carry) = whole.addingReportingOverflow(UInt64(attoseconds / 1_000_000_000))
    return overflow || carry ? .max : total
}

extension Workqueue: WorkPlacement {
    func isSame(as other: Workqueue) -> Bool { self === other }
}
