import Synchronization

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
    public let name: String
    let function: @Sendable (WorkItem) -> Void
    /// The class of the item's pseudo-lock. Unowned: lock classes live as long as the process.
    public unowned(unsafe) let lockClass: LockClass
    /// The core (``WorkItemCore``, the item's state, which queues hold) once the first queueing has
    /// made it, or the disable levels taken before that. An item that is never queued (most are
    /// cancelled or disabled idle, as a group_device's `broken_work` is) costs one allocation, not two,
    /// and its idle disable takes no lock: the kernel's `INIT_WORK` costs nothing at all.
    ///
    /// Encoding (``CoreWord``): 0, no core and no levels; odd, no core and `word >> 1` levels; even and
    /// nonzero, the core's address as an `Unmanaged` +1 reference (objects are 16-byte aligned).
    ///
    /// Ordering: changed only by compare-and-exchange, acquiring-and-releasing; the core is published
    /// once and never changes after that, so a reader that finds it needs no lock to use it.
    private let coreWord = Atomic<UInt>(0)
    /// Guarded by: the item's lock. ``context``.
    private weak var contextObject: AnyObject?

    /// Creates an idle item that runs `function`. Its pseudo-lock class is keyed by the calling source
    /// line; `name` (default "File.swift:line") names the class and the item in reports.
    ///
    /// Kernel analogue: `INIT_WORK()` / `INIT_DELAYED_WORK()`.
    public init(
        name: String? = nil, file: StaticString = #fileID, line: UInt = #line,
        _ function: @escaping @Sendable (WorkItem) -> Void
    ) {
        lockClass = LockClass.forSite(file: file, line: line, name: name.map { "(work_completion)\($0)" })
        self.name = name ?? "\(file):\(line)"
        self.function = function
    }

    /// Creates an idle item that runs `function`, with an explicit pseudo-lock class: for items made at
    /// one line that play different roles, or, as in the kernel's per-object `lockdep_set_class()`, to
    /// give the items of one subsystem instance classes of their own.
    ///
    /// Kernel analogue: `INIT_WORK()` followed by `lockdep_init_map()` with the class's key.
    public init(name: String? = nil, class lockClass: __shared LockClass, _ function: @escaping @Sendable (WorkItem) -> Void) {
        self.name = name ?? lockClass.name
        self.function = function
        self.lockClass = lockClass
    }

    deinit {
        guard case .core(let core) = CoreWord(coreWord.load(ordering: .acquiring)) else { return }
        core._withUnsafeGuaranteedRef { $0.ownerReleased(name: name) }
        core.release()
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
        get { lock.withLock { contextObject } }
        set { lock.withLock { contextObject = newValue } }
    }

    /// Whether an instance is queued and has not started (a racy snapshot).
    public var isPending: Bool { madeCore?.isPending ?? false }
    /// Whether the function is running on a worker (a racy snapshot).
    public var isRunning: Bool { madeCore?.isRunning ?? false }

    public var description: String {
        let state = switch CoreWord(coreWord.load(ordering: .acquiring)) {
        case .core(let core): core.takeUnretainedValue().stateDescription
        case .disableLevels(let levels): WorkItemState<Workqueue>(disableCount: Int32(levels)).description
        }
        return "WorkItem(\(name): \(state))"
    }

    /// Withdraws the pending instance, without waiting for a running one. Returns whether an instance
    /// was pending.
    ///
    /// Kernel analogue: `cancel_work()` / `cancel_delayed_work()`.
    ///
    /// Context: does not sleep; callable in atomic context.
    @discardableResult
    public func cancel() -> Bool { madeCore?.cancel() ?? false }

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
        if let core = madeCore { return core.cancelSync(self, disabling: false, file: file, line: line) }
        return syncCallBeforeCore(disabling: false, file: file, line: line)
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
        if let core = madeCore { return core.flush(self, file: file, line: line) }
        recordIdleWait(call: "flush_work(\(name))", file: file, line: line)
        return false
    }

    /// Adds a disable level and withdraws the pending instance, without waiting for a running one.
    /// Queueing fails until as many ``enable(file:line:)`` calls. Returns whether an instance was pending.
    ///
    /// Kernel analogue: `disable_work()` (Linux 6.10).
    ///
    /// Context: does not sleep; callable in atomic context.
    @discardableResult
    public func disable() -> Bool {
        if let core = madeCore { return core.disable() }
        return disableBeforeCore() ?? madeCore!.disable()
    }

    /// ``disable()``, then waits until the function is not running. Returns whether an instance was
    /// pending.
    ///
    /// Kernel analogue: `disable_work_sync()` (Linux 6.10).
    ///
    /// Context: as ``cancelSync(file:line:)``; from the item's own function it is reported, disables and
    /// returns without waiting.
    @discardableResult
    public func disableSync(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        if let core = madeCore { return core.cancelSync(self, disabling: true, file: file, line: line) }
        return syncCallBeforeCore(disabling: true, file: file, line: line)
    }

    /// Removes a disable level. Returns whether the item can be queued again. An enable without a
    /// matching disable is reported and changes nothing.
    ///
    /// Kernel analogue: `enable_work()` (Linux 6.10).
    ///
    /// Context: does not sleep.
    @discardableResult
    public func enable(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        var word = coreWord.load(ordering: .acquiring)
        while true {
            switch CoreWord(word) {
            case .core(let core):
                return core.takeUnretainedValue().enable(self, file: file, line: line)
            case .disableLevels(0):
                Lockdep.emit(WorkqueueReports.unbalancedEnable(lockClass: lockClass, name: name, site: "\(file):\(line)"))
                return true
            case .disableLevels(let levels):
                let (exchanged, original) = coreWord.compareExchange(
                    expected: word, desired: CoreWord.encode(levels: levels - 1), ordering: .acquiringAndReleasing)
                if exchanged { return levels == 1 }
                word = original
            }
        }
    }

    // MARK: The core

    /// The core, made by the first queueing (``Workqueue`` calls this) with the levels disabled so far.
    /// Two first queueings may race: one publishes its core, the other drops its own and uses that one.
    var core: WorkItemCore {
        var word = coreWord.load(ordering: .acquiring)
        while true {
            switch CoreWord(word) {
            case .core(let core):
                return core.takeUnretainedValue()
            case .disableLevels(let levels):
                let made = Unmanaged.passRetained(WorkItemCore(lockClass: lockClass, key: key, disableCount: Int32(levels)))
                let (exchanged, original) = coreWord.compareExchange(
                    expected: word, desired: UInt(bitPattern: made.toOpaque()), ordering: .acquiringAndReleasing)
                if exchanged { return made.takeUnretainedValue() }
                made.release()
                word = original
            }
        }
    }

    /// The core if the item was ever queued. Unretained: the handle holds it for its whole life.
    private var madeCore: WorkItemCore? {
        guard case .core(let core) = CoreWord(coreWord.load(ordering: .acquiring)) else { return nil }
        return core.takeUnretainedValue()
    }

    /// The item's identity, for its lock and its pseudo-lock, before and after the core is made.
    private var key: UnsafeRawPointer { UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()) }

    /// The item's lock: the shared table's entry for ``key``, the core's lock too.
    private var lock: PthreadMutex { HashedWaitTable.shared.entry(for: key).lock }

    /// The item's pseudo-lock, the core's ``WorkItemCore/map`` before the core exists.
    private var map: EmbeddedLockdepMap { EmbeddedLockdepMap(class: lockClass, identity: key) }

    /// `cancel_work_sync` or `disable_work_sync` of an item never queued: nothing can be pending or
    /// running, so there is nothing to wait for, but the call is checked and recorded as for an idle item
    /// (the pseudo-lock acquired and released), and a disable is counted. If a queueing made the core
    /// meanwhile, the core's call does the work.
    private func syncCallBeforeCore(disabling: Bool, file: StaticString, line: UInt) -> Bool {
        recordIdleWait(call: "\(disabling ? "disable_work_sync" : "cancel_work_sync")(\(name))", file: file, line: line)
        guard disabling else { return false }
        if let result = disableBeforeCore() { return result }
        return madeCore!.cancelSync(self, disabling: true, file: file, line: line)
    }

    /// A waiting call (`call`, built only for a report) on an item never queued: there is nothing to wait
    /// for, but the call is checked (it may sleep) and recorded as on an idle item, its pseudo-lock
    /// acquired and released, so that holding a lock the function takes is reported all the same.
    ///
    /// Inlined, so that with the validator off the test comes first and the closure that builds `call`
    /// is not even formed (it retained and released the item, twice a remove-path cycle).
    @inline(__always)
    private func recordIdleWait(call: @autoclosure () -> String, file: StaticString, line: UInt) {
        guard Lockdep.isValidating else { return }
        WorkItem.recordIdleWait(on: map, call: call(), file: file, line: line)
    }

    /// Checks and records a `cancel_work_sync`, `disable_work_sync` or `flush_work` of an item of
    /// `lockClass` that its owner makes at first use and has not made yet. Such an item was never
    /// queued, so there is nothing to wait for; the call is checked (it may sleep) and recorded as on an
    /// idle item, its pseudo-lock acquired and released, so that holding a lock the item's function takes
    /// is reported all the same, without making the item. `owner`, the object that will make and hold
    /// the item, stands for the item's identity. Does nothing with the validator off.
    ///
    /// Kernel analogue: the `lock_map_acquire(&work->lockdep_map)` / `lock_map_release()` pair that
    /// `__flush_work()` records; the kernel embeds its items, so it never has an unmade one.
    ///
    /// Context: as the call it stands for.
    public static func recordWaitOnUnmadeItem(
        of lockClass: LockClass, owner: AnyObject, call: @autoclosure () -> String,
        file: StaticString = #fileID, line: UInt = #line
    ) {
        guard Lockdep.isValidating else { return }
        recordIdleWait(on: EmbeddedLockdepMap(class: lockClass, owner: owner), call: call(), file: file, line: line)
    }

    private static func recordIdleWait(
        on map: EmbeddedLockdepMap, call: @autoclosure () -> String, file: StaticString, line: UInt
    ) {
        Lockdep.mightSleep(call(), file: file, line: line)
        map.acquire(file: file, line: line)
        map.release(file: file, line: line)
    }

    /// Counts a disable level while the core does not exist, with one compare-and-exchange and no lock:
    /// returns false (nothing was pending), or nil when a queueing made the core meanwhile and the caller
    /// must disable through it.
    private func disableBeforeCore() -> Bool? {
        var word = coreWord.load(ordering: .acquiring)
        while case .disableLevels(let levels) = CoreWord(word) {
            precondition(levels < UInt(Int32.max), "disable_work(\(name)): too many disable levels")
            let (exchanged, original) = coreWord.compareExchange(
                expected: word, desired: CoreWord.encode(levels: levels + 1), ordering: .acquiringAndReleasing)
            if exchanged { return false }
            word = original
        }
        return nil
    }
}

/// ``WorkItem``'s core word, decoded.
private enum CoreWord {
    case disableLevels(UInt)
    case core(Unmanaged<WorkItemCore>)

    init(_ word: UInt) {
        if word & 1 == 1 || word == 0 {
            self = .disableLevels(word >> 1)
        } else {
            self = .core(Unmanaged.fromOpaque(UnsafeRawPointer(bitPattern: word)!))
        }
    }

    static func encode(levels: UInt) -> UInt { levels == 0 ? 0 : levels << 1 | 1 }
}
