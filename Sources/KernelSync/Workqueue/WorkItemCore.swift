/// The storage layer of a work item: applies ``WorkItemState`` under the item's lock, carries out the
/// actions it returns with the lock released, and wakes waiters after unlocking.
///
/// Queues hold the core, never the public ``WorkItem``: the owner's handle can then be released while
/// an instance is pending, and its deinit can report that (kernel: `debug_object_free` of an active
/// `work_struct`). The handle makes its core when it is first queued (most items never are).
///
/// Lock order: an item's `lock` may be held while taking a queue's lock (queueing, withdrawing), never
/// the other way round; the worker takes a queue's lock, releases it, then takes the item's.
final class WorkItemCore: @unchecked Sendable {
    typealias State = WorkItemState<Workqueue>

    /// The class of the item's pseudo-lock (``map``). Unowned: lock classes are never deallocated (the
    /// registry keeps each for the life of the process, as the kernel's class table does), and a
    /// reference count would be written by every item made and freed, from every thread, on one line.
    unowned(unsafe) let lockClass: LockClass
    /// The handle's address: the item's identity for its lock (``waitEntry``) and its pseudo-lock
    /// (``map``), the same before and after the handle made this core. Kept after the handle is gone,
    /// when a new handle at that address shares no more with this core than a hash bucket.
    let key: UnsafeRawPointer
    /// The public handle, linked by the first queueing (under ``lock``), which holds the handle:
    /// an item that is never queued (most are cancelled or disabled idle) never pays for the weak
    /// reference's side table. Queueing (the queue lock) orders the write before a worker's read.
    ///
    /// Guarded by: lock, for writes.
    private weak var owner: WorkItem?
    /// Guarded by: lock. A class `var` that opts out of the dynamic exclusivity check: the lock is what
    /// makes access exclusive, and the check would cost more than the rest of an idle cancel. Wait loops
    /// read it again after every wait.
    @exclusivity(unchecked) private var state = State()
    /// Guarded by: lock. Whether ``owner`` was linked. Last, so that it takes one byte.
    @exclusivity(unchecked) private var ownerLinked = false

    /// Made by the handle's first queueing with the disable levels its core word held; the handle
    /// publishes it with a compare-and-exchange of that word, so no disable taken meanwhile is lost
    /// (the exchange fails and the handle makes the core again with the new count).
    init(lockClass: LockClass, key: UnsafeRawPointer, disableCount: Int32) {
        self.lockClass = lockClass
        self.key = key
        state = State(disableCount: disableCount)
    }

    /// The item's name, for reports on a queued item: the handle's (linked by the first queueing), or the
    /// class's once the handle is gone. Calls that may report on an item never queued pass the handle.
    var name: String { owner?.name ?? lockClass.name }

    /// The item's pseudo-lock: held by the worker around the function, acquired and released by
    /// `cancelSync`, `flush` and `disableSync` in their caller. Embedded: its identity is the item's.
    var map: EmbeddedLockdepMap { EmbeddedLockdepMap(class: lockClass, identity: key) }

    /// The item's lock and condition, from the shared table (items are many and seldom waited on): the
    /// lock guards ``state``; the condition is signalled after every transition that ends a run or
    /// withdraws an instance. Nothing here holds the lock while taking another item's, or drops the last
    /// reference to another item, as the table requires.
    private var waitEntry: HashedWaitTable.Entry { HashedWaitTable.shared.entry(for: key) }
    private var lock: PthreadMutex { waitEntry.lock }
    private var changed: PthreadCondition { waitEntry.condition }

    /// Links the public handle on first queueing. Context: lock held; `item` is this core's handle.
    private func linkOwner(_ item: WorkItem) {
        guard !ownerLinked else { return }
        owner = item
        ownerLinked = true
    }

    /// A snapshot, for reports and tests.
    var stateDescription: String { lock.withLock { state.description } }
    var isPending: Bool { lock.withLock { state.isPending } }
    var isRunning: Bool { lock.withLock { state.isRunning } }

    // MARK: Queueing

    /// Queues an instance on `queue`, ready at once (`delay` nil or 0) or after `delay` nanoseconds.
    /// Returns false when the item refuses (pending, disabled, cancelling) or the queue does.
    ///
    /// Ordering: the item lock and the queue lock are released after the instance is listed, and the
    /// worker takes the queue lock to take it: the caller's earlier writes happen before the function.
    func queue(_ item: WorkItem, on queue: Workqueue, delayNanoseconds delay: UInt64?, file: StaticString, line: UInt) -> Bool {
        let caller = KernelThread.currentID
        let outcome = lock.withLock {
            linkOwner(item)
            return queue.admit(caller: caller, delayNanoseconds: delay) { () -> WorkEntry? in
                guard case .enqueue(let instance) = state.queue(placement: queue) else { return nil }
                return WorkEntry(item: self, sequence: instance.sequence)
            }
        }
        if let refusal = outcome.refusal { queue.reportRefusal(refusal, item: self, site: "\(file):\(line)") }
        return outcome.queued
    }

    /// `mod_delayed_work`: the pending instance (if any) is withdrawn and a new one queued on `queue`
    /// after `delay` nanoseconds. Returns whether an instance was pending.
    func modifyDelay(_ item: WorkItem, on queue: Workqueue, delayNanoseconds delay: UInt64, file: StaticString, line: UInt) -> Bool {
        let caller = KernelThread.currentID
        var withdrawn: State.Withdrawal?
        let outcome = lock.withLock {
            linkOwner(item)
            return queue.admit(caller: caller, delayNanoseconds: delay) { () -> WorkEntry? in
                switch state.modify(placement: queue) {
                case .refuse:
                    return nil
                case .enqueue(let new):
                    return WorkEntry(item: self, sequence: new.sequence)
                case .replace(let old, let new):
                    withdrawn = old
                    return WorkEntry(item: self, sequence: new.sequence)
                }
            }
        }
        if let withdrawn { settle(withdrawn) }
        if let refusal = outcome.refusal { queue.reportRefusal(refusal, item: self, site: "\(file):\(line)") }
        return withdrawn != nil
    }

    // MARK: Running

    /// Runs the instance a worker of `queue` took off its ready list, then any instance of `queue` handed
    /// off to this worker meanwhile. Returns the ticket (flush epoch) of the last run: the caller retires
    /// it with `queue`, together with taking its next entry; earlier runs retire here. A stale entry's
    /// ticket is returned at once; an entry handed off to the worker of `queue` that runs the item now
    /// retires when that worker has run it (nil). When the item runs from another queue, this worker
    /// waits for that run to end and then runs the instance itself, so every instance runs on a worker
    /// of its own queue.
    ///
    /// Context: a worker thread of `queue`, no KernelSync lock held. May block while the item runs on
    /// another queue's worker.
    func process(_ entry: WorkEntry, on queue: Workqueue, runner: Int32) -> UInt64? {
        // A released owner withdraws its pending instance in deinit; this entry is then stale.
        guard let owner else { return entry.epoch }
        var claim = lock.withLock { state.claim(sequence: entry.sequence, runner: runner, ticket: entry.epoch) }
        if case .waitForRunningElsewhere = claim {
            claim = claimAfterRunElsewhere(entry, on: queue, runner: runner)
            if case .stale = claim { changed.broadcast() }
        }
        switch claim {
        case .run: break
        case .stale: return entry.epoch
        case .handOff: return nil
        case .waitForRunningElsewhere:
            preconditionFailure("work item \(name): claim still waiting after the run elsewhere ended; state: \(stateDescription)")
        }
        while true {
            queue.run(self, owner: owner)
            var withdrawn: State.Withdrawal?
            let finish = lock.withLock { () -> State.FinishAction in
                // An instance handed off to this worker is not on the lists a destroy takes back.
                if state.handOffTicket != nil && queue.withdrawsHeldInstance(of: name) { withdrawn = state.cancel() }
                return state.finish(runner: runner)
            }
            if let withdrawn { settle(withdrawn) }
            changed.broadcast()
            switch finish {
            case .idle(let retired):
                return retired.ticket
            case .runNext(let retired, _):
                queue.retire(epoch: retired.ticket)
            }
        }
    }

    // MARK: Cancelling, disabling, flushing

    /// `cancel_work`: withdraws the pending instance without waiting. Returns whether one was pending.
    func cancel() -> Bool {
        let withdrawn = lock.withLock { state.cancel() }
        guard let withdrawn else { return false }
        settle(withdrawn)
        return true
    }

    /// `cancel_work_sync` (`disabling` false) or `disable_work_sync` (true): withdraws the pending
    /// instance and waits until the item is not running. Queueing fails meanwhile. Returns whether an
    /// instance was pending.
    ///
    /// Context: may block. From the item's own function it reports and does not wait.
    func cancelSync(_ handle: WorkItem, disabling: Bool, file: StaticString, line: UInt) -> Bool {
        Lockdep.mightSleep(syncCallName(handle, disabling: disabling), file: file, line: line)
        let caller = KernelThread.currentID
        // With the validator on, the own-function check must come before the pseudo-lock is recorded:
        // recorded from its own function, it would read as recursive locking, not as a self-flush.
        if Lockdep.isValidating {
            if lock.withLock({ state.isRunning(on: caller) }) {
                return cancelFromOwnFunction(handle, disabling: disabling, file: file, line: line)
            }
            map.acquire(file: file, line: line)
            map.release(file: file, line: line)
        }
        // One pass under the lock: the withdrawal, and for an item that is not running (the common
        // case) the end of the call as well.
        enum Step { case ownFunction, done(State.Withdrawal?), wait(State.Withdrawal?) }
        let step: Step = lock.withLock {
            if state.isRunning(on: caller) { return .ownFunction }
            let withdrawn = disabling ? state.disable() : state.beginCancelSync()
            guard state.isRunning else {
                if !disabling { state.endCancelSync() }
                return .done(withdrawn)
            }
            return .wait(withdrawn)
        }
        switch step {
        case .ownFunction:
            return cancelFromOwnFunction(handle, disabling: disabling, file: file, line: line)
        case .done(let withdrawn):
            guard let withdrawn else { return false }
            settle(withdrawn)
            return true
        case .wait(let withdrawn):
            if let withdrawn { settle(withdrawn) }
            lock.withLock {
                while state.isRunning { changed.wait(lock) }
                if !disabling { state.endCancelSync() }
            }
            return withdrawn != nil
        }
    }

    /// `cancel_work_sync` or `disable_work_sync` from the item's own function: reported; withdraws
    /// (and disables) without waiting for itself.
    private func cancelFromOwnFunction(_ handle: WorkItem, disabling: Bool, file: StaticString, line: UInt) -> Bool {
        reportSelfFlush(call: syncCallName(handle, disabling: disabling), site: "\(file):\(line)")
        let withdrawn = lock.withLock { disabling ? state.disable() : state.cancel() }
        if let withdrawn { settle(withdrawn) }
        return withdrawn != nil
    }

    /// The kernel name of a synchronous cancel, for reports (built only when one is made).
    private func syncCallName(_ handle: WorkItem, disabling: Bool) -> String {
        "\(disabling ? "disable_work_sync" : "cancel_work_sync")(\(handle.name))"
    }

    /// `flush_work`: waits until the instance pending or running at the call has finished (a delayed
    /// one is made ready first, like `flush_delayed_work`). Returns whether it waited.
    ///
    /// When that instance's queue runs one item at a time (`maxActive` 1), the caller also acquires and
    /// releases the queue's pseudo-lock, as the kernel's `start_flush_work` does: the instance waits
    /// behind whatever the queue runs now, so waiting for it while holding a lock that any of the
    /// queue's functions takes is a cycle.
    ///
    /// Context: may block. From the item's own function it reports and returns false. From the worker
    /// of such a queue, for an instance of that queue, it would wait behind itself: the validator reports
    /// recursive locking of the queue's pseudo-lock, and it returns false without waiting.
    func flush(_ handle: WorkItem, file: StaticString, line: UInt) -> Bool {
        // Built only for a report.
        func call() -> String { "flush_work(\(handle.name))" }
        Lockdep.mightSleep(call(), file: file, line: line)
        let caller = KernelThread.currentID
        let fromOwnFunction = lock.withLock { state.isRunning(on: caller) }
        if fromOwnFunction {
            reportSelfFlush(call: call(), site: "\(file):\(line)")
            return false
        }
        map.acquire(file: file, line: line)
        map.release(file: file, line: line)
        let target: (sequence: UInt64, queue: Workqueue, isPending: Bool)? = lock.withLock {
            guard let sequence = state.flushTarget,
                  let instance = state.pending ?? state.running?.instance
            else { return nil }
            return (sequence, instance.placement, state.isPending)
        }
        guard let target else { return false }
        if target.queue.maxActive == 1 {
            target.queue.map.acquire(file: file, line: line)
            target.queue.map.release(file: file, line: line)
            if target.queue.isWorker(caller) {
                // The validator, when on, has just reported this as recursive locking of the queue's
                // pseudo-lock; when off, say it here, as the kernel's workqueue warns either way.
                if !Lockdep.isValidating {
                    Lockdep.emit(WorkqueueReports.queueSelfFlush(queue: target.queue, call: call(), site: "\(file):\(line)"))
                }
                return false
            }
        }
        if target.isPending { target.queue.expedite(item: self, sequence: target.sequence) }
        lock.withLock {
            while !state.hasFinished(through: target.sequence) { changed.wait(lock) }
        }
        return true
    }

    /// `disable_work`: one more disable level, withdrawing the pending instance. Returns whether one was
    /// pending.
    func disable() -> Bool {
        let withdrawn = lock.withLock { state.disable() }
        guard let withdrawn else { return false }
        settle(withdrawn)
        return true
    }

    /// `enable_work`: one disable level less. Returns whether queueing works again.
    func enable(_ handle: WorkItem, file: StaticString, line: UInt) -> Bool {
        let result = lock.withLock { state.enable() }
        switch result {
        case .enabled: return true
        case .stillDisabled: return false
        case .unbalanced:
            Lockdep.emit(WorkqueueReports.unbalancedEnable(lockClass: lockClass, name: handle.name, site: "\(file):\(line)"))
            return true
        }
    }

    /// The owner released its handle: a pending instance is withdrawn and reported (a running one
    /// cannot be: the worker holds the handle until the function returns).
    func ownerReleased(name: String) {
        // An item that was never queued has nothing to withdraw: skip the lock. Reading the flag
        // without it is safe here: whoever linked the owner held a reference to it, and the release of
        // that reference happens before this deinit.
        guard ownerLinked else { return }
        let released: (withdrawn: State.Withdrawal, description: String)? = lock.withLock {
            guard state.isPending else { return nil }
            let description = state.description
            return state.cancel().map { ($0, description) }
        }
        guard let (withdrawn, description) = released else { return }
        settle(withdrawn)
        Lockdep.emit(WorkqueueReports.releasedWhilePending(item: self, name: name, state: description))
    }

    /// Withdraws instance `sequence` if it is still pending and unclaimed: a queue being destroyed takes
    /// its entries back. Returns whether it did.
    func abandon(sequence: UInt64) -> Bool {
        let abandoned = lock.withLock { state.abandon(sequence: sequence) }
        if abandoned { changed.broadcast() }
        return abandoned
    }

    // MARK: Private

    /// Waits until the item no longer runs from another queue, then claims `entry` again; when `queue`
    /// is being destroyed meanwhile, withdraws the instance instead (``WorkItemState/ClaimAction/stale``;
    /// the caller wakes the item's waiters). With the validator on, first records that `queue`'s worker
    /// waits for the item (the queue's pseudo-lock, then the item's), so a function that waits for
    /// `queue` from the other queue is reported, not a silent hang.
    ///
    /// Context: a worker thread of `queue`, no KernelSync lock held; blocks.
    private func claimAfterRunElsewhere(_ entry: WorkEntry, on queue: Workqueue, runner: Int32) -> State.ClaimAction {
        if Lockdep.isValidating {
            queue.map.acquire()
            map.acquire()
            map.release()
            queue.map.release()
        }
        return lock.withLock {
            while true {
                let claim = state.claim(sequence: entry.sequence, runner: runner, ticket: entry.epoch)
                guard case .waitForRunningElsewhere = claim else { return claim }
                changed.wait(lock)
                if state.pending?.sequence == entry.sequence && state.handOffTicket == nil
                    && queue.withdrawsHeldInstance(of: name) {
                    _ = state.abandon(sequence: entry.sequence)
                    return .stale
                }
            }
        }
    }

    /// Tells the queue of a withdrawn instance: a delayed entry leaves the timer list; a claim handed
    /// off to the running worker retires. A ready entry stays listed and retires when a worker finds
    /// it stale. Then wakes the item's waiters: a flush waiting for the instance is done, a worker
    /// waiting to claim it finds it stale. Every withdrawal goes through here.
    ///
    /// Context: the item lock is not held.
    private func settle(_ withdrawn: State.Withdrawal) {
        let queue = withdrawn.instance.placement
        if let ticket = withdrawn.handOffTicket {
            queue.retire(epoch: ticket)
        } else {
            queue.removeDelayed(item: self, sequence: withdrawn.instance.sequence)
        }
        changed.broadcast()
    }

    private func reportSelfFlush(call: String, site: String) {
        Lockdep.emit(WorkqueueReports.selfFlush(item: self, call: call, site: site))
    }
}

/// One listed instance: the item, the instance's sequence and, once ready, the queue's flush epoch.
struct WorkEntry {
    let item: WorkItemCore
    let sequence: UInt64
    var epoch: UInt64 = 0
}
