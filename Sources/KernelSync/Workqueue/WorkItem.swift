/// A unit of deferred work: a function that a ``Workqueue`` runs on one of its worker threads.
///
/// Kernel analogue: `struct work_struct` / `struct delayed_work` with `INIT_WORK()`, `cancel_work()`,
/// `cancel_work_sync()`, `flush_work()`, `disable_work()`, `disable_work_sync()`, `enable_work()`.
///
/// ```swift
/// let broken = WorkItem(name: "gdev->broken_work") { _ in
///     groupLock.withLock { quarantine() }
/// }
/// events.queue(broken)
/// // teardown, after groupLock.unlock():
/// broken.disableSync()     // not pending, not running, and queueing fails from now on
/// ```
///
/// An item is pending (queued, at most one instance), running (on one worker, never two at once), both,
/// or idle. Queueing a pending item does nothing and returns false; queueing a running item makes a new
/// instance that runs after the current one. The function receives the item, so it can requeue itself.
///
/// Every item created at one source line shares one pseudo-lock class (like the kernel's static key in
/// `INIT_WORK`): the worker holds it around the function, and ``cancelSync(file:line:)``,
/// ``flush(file:line:)`` and ``disableSync(file:line:)`` acquire and release it in the caller on every
/// call, busy or idle. So `lock(L); item.cancelSync()` against a function that takes `L` is reported as a
/// circular dependency from the first run that does both, whether or not it deadlocked.
///
/// - Warning: Releasing the last reference to a pending item is reported (the kernel's "free active
///   object"), and the pending instance is withdrawn. A running item is kept alive by its worker until
///   the function returns.
public final class WorkItem: @unchecked Sendable, CustomStringConvertible {
    let core: WorkItemCore
    public let name: String
    let function: @Sendable (WorkItem) -> Void
    /// Guarded by: the core's lock. ``context``.
    private weak var contextObject: AnyObject?

    /// Creates an idle item that runs `function`. Its pseudo-lock class is keyed by the calling source
    /// line; `name` (default "File.swift:line") names the class and the item in reports.
    ///
    /// Kernel analogue: `INIT_WORK()` / `INIT_DELAYED_WORK()`.
    public init(
        name: String? = nil, file: StaticString = #fileID, line: UInt = #line,
        _ function: @escaping @Sendable (WorkItem) -> Void
    ) {
        let lockClass = LockClass.forSite(file: file, line: line, name: name.map { "(work_completion)\($0)" })
        self.name = name ?? "\(file):\(line)"
        self.function = function
        core = WorkItemCore(lockClass: lockClass)
    }

    /// Creates an idle item that runs `function`, with an explicit pseudo-lock class: for items made at
    /// one line that play different roles, or, as in the kernel's per-object `lockdep_set_class()`, to
    /// give the items of one subsystem instance classes of their own.
    ///
    /// Kernel analogue: `INIT_WORK()` followed by `lockdep_init_map()` with the class's key.
    public init(name: String? = nil, class lockClass: LockClass, _ function: @escaping @Sendable (WorkItem) -> Void) {
        self.name = name ?? lockClass.name
        self.function = function
        core = WorkItemCore(lockClass: lockClass)
    }

    deinit {
        core.ownerReleased(name: name)
    }

    /// The object this item does its work for, held weakly: how the function finds its owner without
    /// keeping it alive (an owner that holds its item would otherwise make a reference cycle). Nil until
    /// set, and again once the object is deallocated.
    ///
    /// Kernel analogue: `container_of(work, struct …, member)`. Unlike a pointer computed from the
    /// item's address, it never points at freed memory: a function that runs after its owner is gone
    /// finds nil.
    ///
    /// Setting it is cheap, but gives the object a weak-reference side table, which slows every retain
    /// and release of that object a little: for owners made by the million, set it when the item is
    /// first queued rather than at creation.
    ///
    /// Context: any, atomic context included (the item's lock is an internal one, held for a moment).
    public var context: AnyObject? {
        get { core.withLock { contextObject } }
        set { core.withLock { contextObject = newValue } }
    }

    /// The item's pseudo-lock class, to find its reports with ``Lockdep/reports(involving:)``.
    public var lockClass: LockClass { core.lockClass }
    /// Whether an instance is queued and has not started (a racy snapshot).
    public var isPending: Bool { core.isPending }
    /// Whether the function is running on a worker (a racy snapshot).
    public var isRunning: Bool { core.isRunning }

    public var description: String { "WorkItem(\(name): \(core.stateDescription))" }

    /// Withdraws the pending instance, without waiting for a running one. Returns whether an instance
    /// was pending.
    ///
    /// Kernel analogue: `cancel_work()` / `cancel_delayed_work()`.
    ///
    /// Context: does not sleep; callable in atomic context.
    @discardableResult
    public func cancel() -> Bool { core.cancel() }

    /// Withdraws the pending instance and waits until the function is not running. On return the item
    /// is neither pending nor running, even if the function requeues itself (queueing fails while the
    /// call waits). Concurrent callers all wait. Returns whether an instance was pending (for a delayed
    /// item, its timer is removed).
    ///
    /// Kernel analogue: `cancel_work_sync()` / `cancel_delayed_work_sync()`.
    ///
    /// Context: may sleep; not in atomic context; not holding a lock the function takes (reported as a
    /// circular dependency even when the item is idle). From the item's own function it is reported,
    /// withdraws the pending instance and returns without waiting.
    @discardableResult
    public func cancelSync(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        core.cancelSync(self, disabling: false, file: file, line: line)
    }

    /// Waits until the instance pending or running at the call has finished; a delayed instance is made
    /// ready first. Returns whether it waited (false when the item was idle).
    ///
    /// Kernel analogue: `flush_work()` / `flush_delayed_work()`.
    ///
    /// Context: as ``cancelSync(file:line:)``. From the item's own function it is reported and returns
    /// false. On a queue that runs one item at a time it also waits for that queue (kernel
    /// `start_flush_work`); from that queue's worker it would wait behind itself: the validator reports
    /// recursive locking and it returns false.
    @discardableResult
    public func flush(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        core.flush(self, file: file, line: line)
    }

    /// Adds a disable level and withdraws the pending instance, without waiting for a running one.
    /// Queueing fails until as many ``enable(file:line:)`` calls. Returns whether an instance was pending.
    ///
    /// Kernel analogue: `disable_work()` (Linux 6.10).
    ///
    /// Context: does not sleep; callable in atomic context.
    @discardableResult
    public func disable() -> Bool { core.disable() }

    /// ``disable()``, then waits until the function is not running. Returns whether an instance was
    /// pending.
    ///
    /// Kernel analogue: `disable_work_sync()` (Linux 6.10).
    ///
    /// Context: as ``cancelSync(file:line:)``; from the item's own function it is reported, disables and
    /// returns without waiting.
    @discardableResult
    public func disableSync(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        core.cancelSync(self, disabling: true, file: file, line: line)
    }

    /// Removes a disable level. Returns whether the item can be queued again. An enable without a
    /// matching disable is reported and changes nothing.
    ///
    /// Kernel analogue: `enable_work()` (Linux 6.10).
    ///
    /// Context: does not sleep.
    @discardableResult
    public func enable(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        core.enable(self, file: file, line: line)
    }
}
