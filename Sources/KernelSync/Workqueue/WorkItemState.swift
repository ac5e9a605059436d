/// The states of one work item, as a pure state machine: no locks, no threads, no queues.
///
/// Kernel analogue: the `PENDING` bit, `worker->current_work` and the off-queue `disable` count of
/// `struct work_struct` in `kernel/workqueue.c`. The kernel spreads them over an atomic word and the
/// pool lock; here one value holds them all and every transition returns what the caller must do.
///
/// An item is, independently:
/// - *pending*: one instance waits on a queue (ready or behind a delay timer);
/// - *running*: one instance runs on a worker thread;
/// - *cancelling*: `cancelSync` callers are in progress (queueing fails);
/// - *disabled*: `disable` was called more often than `enable` (queueing fails).
///
/// Pending and running at once is normal (the function requeued itself, or someone queued it while it
/// ran); the pending instance then runs after the current one, never beside it. Each instance gets a
/// sequence number, so a worker that took an instance off a queue can tell whether it is still the
/// pending one, and a flush can wait for exactly the instances that existed when it was called.
///
/// `Placement` is what the storage layer needs to find an instance again (its queue); the machine only
/// carries it and tells two apart: a claimed instance is handed to the running worker only when that
/// worker runs the item from the same queue, so an instance never runs outside its own queue. A worker that claims an instance attaches a `ticket` (the queue's flush epoch), which
/// comes back when that run retires, so the queue can count it done. Impossible transitions stop the process with a message that prints the
/// state: they are KernelSync bugs, not user misuse (misuse is refused and reported before reaching here).
struct WorkItemState<Placement: WorkPlacement>: CustomStringConvertible {
    /// One queued run of the item.
    struct Instance {
        var sequence: UInt64
        var placement: Placement
    }

    /// Why a queueing attempt was refused.
    enum Refusal: Equatable {
        case alreadyPending
        case disabled(count: Int)
        case cancelling
    }

    enum QueueAction {
        /// Put the new instance on its queue.
        case enqueue(Instance)
        case refuse(Refusal)
    }

    enum ClaimAction {
        /// The instance is the pending one and the item is not running: run it now.
        case run(Instance)
        /// The item runs on another worker of the same queue: that worker runs this instance when its
        /// current run ends.
        case handOff
        /// The item runs on a worker of another queue. Handing the instance over would run it outside its
        /// queue (past an ordered queue's order and a queue's `maxActive`, on a thread that is not the
        /// queue's worker), so the claimer waits until the item is not running and claims again.
        case waitForRunningElsewhere
        /// The instance was cancelled or replaced after it was queued: drop it.
        case stale
    }

    /// An instance that ended, with the ticket its claimer attached.
    struct Retired {
        var instance: Instance
        var ticket: UInt64
    }

    enum FinishAction {
        /// The run is over and nothing was handed off.
        case idle(Retired)
        /// The run is over; run `next` (handed off) on this same worker now.
        case runNext(Retired, next: Instance)
    }

    /// The pending instance that a cancel or disable withdrew. `handOffTicket` is set when a worker
    /// had already claimed it for the running worker: its ticket then retires with the withdrawal.
    struct Withdrawal {
        var instance: Instance
        var handOffTicket: UInt64?
    }

    enum ModifyAction {
        /// The item was not pending: queue `new` (delayed).
        case enqueue(new: Instance)
        /// The item was pending: `old` is withdrawn and `new` takes its place.
        case replace(old: Withdrawal, new: Instance)
        case refuse(Refusal)
    }

    enum EnableResult: Equatable {
        /// The count reached zero: queueing works again.
        case enabled
        case stillDisabled(count: Int)
        /// `enable` without a matching `disable`; nothing changed.
        case unbalanced
    }

    /// The instance waiting on a queue.
    private(set) var pending: Instance?
    /// The instance on a worker, the kernel thread id of that worker and the claim ticket.
    private(set) var running: (instance: Instance, runner: Int32, ticket: UInt64)?
    /// Set when a worker took `pending` off its queue while the item was running and left it to the
    /// runner: the ticket of that claim.
    private(set) var handOffTicket: UInt64?
    /// `disable` minus `enable` calls.
    var disableCount: Int { Int(disableLevels) }
    /// `cancelSync` / `disableSync` waits in progress.
    var cancellingCount: Int { Int(cancellingCalls) }
    /// The two counts above, stored narrow: with them, a work item's core stays small enough for the
    /// allocator's fast bins (lock-free frees from the reclaimer thread).
    private var disableLevels: Int32 = 0
    private var cancellingCalls: Int32 = 0
    private var nextSequence: UInt64 = 1

    /// An idle item, never queued.
    init() {}

    /// An idle item, never queued, disabled `disableCount` times: the state of an item whose disables
    /// came before the storage for its state was made (see ``WorkItem``).
    init(disableCount: Int32) {
        disableLevels = disableCount
    }

    var isPending: Bool { pending != nil }
    var isRunning: Bool { running != nil }
    var isIdle: Bool { pending == nil && running == nil }

    /// Whether the caller's thread is the one running the item's function.
    func isRunning(on thread: Int32) -> Bool { running?.runner == thread }

    // MARK: Queueing

    /// `queue_work`: a new pending instance, unless one is pending or the item is disabled or being
    /// cancelled. A running item can be queued: the new instance runs after the current one.
    mutating func queue(placement: Placement) -> QueueAction {
        if let refusal = refusal(pendingCounts: true) { return .refuse(refusal) }
        let instance = makeInstance(placement)
        pending = instance
        return .enqueue(instance)
    }

    /// `mod_delayed_work`: replaces the pending instance (and its timer) by a new one, or queues one.
    mutating func modify(placement: Placement) -> ModifyAction {
        if let refusal = refusal(pendingCounts: false) { return .refuse(refusal) }
        let old = cancel()
        let new = makeInstance(placement)
        pending = new
        return old.map { .replace(old: $0, new: new) } ?? .enqueue(new: new)
    }

    // MARK: Running

    /// A worker took instance `sequence` off its queue; `runner` is its thread id and `ticket` comes
    /// back when the run retires. After ``ClaimAction/waitForRunningElsewhere`` the worker claims again,
    /// with the same arguments, once the item is not running.
    mutating func claim(sequence: UInt64, runner: Int32, ticket: UInt64) -> ClaimAction {
        guard let instance = pending, instance.sequence == sequence, handOffTicket == nil else { return .stale }
        if let current = running {
            guard current.instance.placement.isSame(as: instance.placement) else { return .waitForRunningElsewhere }
            handOffTicket = ticket
            return .handOff
        }
        pending = nil
        running = (instance, runner, ticket)
        return .run(instance)
    }

    /// The function returned on `runner`.
    mutating func finish(runner: Int32) -> FinishAction {
        guard let current = running, current.runner == runner else {
            preconditionFailure("work item: finish by thread \(runner), which is not running it; state: \(self)")
        }
        let retired = Retired(instance: current.instance, ticket: current.ticket)
        if let ticket = handOffTicket, let next = pending {
            pending = nil
            handOffTicket = nil
            running = (next, runner, ticket)
            return .runNext(retired, next: next)
        }
        running = nil
        return .idle(retired)
    }

    // MARK: Cancelling and disabling

    /// `cancel_work`: withdraws the pending instance, if any.
    mutating func cancel() -> Withdrawal? {
        guard let instance = pending else { return nil }
        let withdrawal = Withdrawal(instance: instance, handOffTicket: handOffTicket)
        pending = nil
        handOffTicket = nil
        return withdrawal
    }

    /// Withdraws instance `sequence` if it is still the pending one and no worker has claimed it (a
    /// queue being destroyed takes its unclaimed entries back). Returns whether it did.
    mutating func abandon(sequence: UInt64) -> Bool {
        guard pending?.sequence == sequence, handOffTicket == nil else { return false }
        pending = nil
        return true
    }

    /// The start of `cancel_work_sync`: queueing fails until ``endCancelSync()``; the pending instance,
    /// if any, is withdrawn and returned. The caller then waits until the item is not running.
    mutating func beginCancelSync() -> Withdrawal? {
        cancellingCalls += 1
        return cancel()
    }

    mutating func endCancelSync() {
        guard cancellingCount > 0 else {
            preconditionFailure("work item: endCancelSync without beginCancelSync; state: \(self)")
        }
        cancellingCalls -= 1
    }

    /// `disable_work`: one more disable level; withdraws and returns the pending instance.
    mutating func disable() -> Withdrawal? {
        disableLevels += 1
        return cancel()
    }

    /// `enable_work`: one disable level less.
    mutating func enable() -> EnableResult {
        guard disableCount > 0 else { return .unbalanced }
        disableLevels -= 1
        return disableCount == 0 ? .enabled : .stillDisabled(count: disableCount)
    }

    // MARK: Flushing

    /// The sequence a flush must wait for: the pending instance, else the running one; nil when idle.
    var flushTarget: UInt64? { pending?.sequence ?? running?.instance.sequence }

    /// Whether every instance up to `sequence` has run or been withdrawn.
    func hasFinished(through sequence: UInt64) -> Bool {
        (pending.map { $0.sequence > sequence } ?? true)
            && (running.map { $0.instance.sequence > sequence } ?? true)
    }

    var description: String {
        var parts: [String] = []
        if let pending { parts.append("pending #\(pending.sequence)\(handOffTicket == nil ? "" : " (handed off)")") }
        if let running { parts.append("running #\(running.instance.sequence) on thread \(running.runner)") }
        if cancellingCount > 0 { parts.append("cancelling ×\(cancellingCount)") }
        if disableCount > 0 { parts.append("disabled ×\(disableCount)") }
        return parts.isEmpty ? "idle" : parts.joined(separator: ", ")
    }

    // MARK: Private

    private func refusal(pendingCounts: Bool) -> Refusal? {
        if disableCount > 0 { return .disabled(count: disableCount) }
        if cancellingCount > 0 { return .cancelling }
        if pendingCounts, pending != nil { return .alreadyPending }
        return nil
    }

    private mutating func makeInstance(_ placement: Placement) -> Instance {
        defer { nextSequence += 1 }
        return Instance(sequence: nextSequence, placement: placement)
    }
}

/// Where an instance of a work item is queued: the machine only needs to tell whether two instances
/// belong to the same queue.
protocol WorkPlacement {
    func isSame(as other: Self) -> Bool
}
