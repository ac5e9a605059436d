import Synchronization

/// Read-copy update: readers that never block or write shared memory, and writers that wait for (or
/// defer work until) every reader that might still see old data has finished.
///
/// ```swift
/// RCU.withReadLock {
///     if let device = current.dereference() { use(device) }
/// }
/// current.assign(newDevice)      // publishes; the old device is retired after a grace period
/// RCU.synchronize()              // or RCU.call { … } / RCU.retire(object) to defer instead of waiting
/// ```
///
/// The algorithm is liburcu's default flavour (urcu-memb): a reader records the global grace-period
/// counter in a per-thread word on entry and clears it on exit, with only compiler barriers, because the
/// writer forces a full barrier on every thread with membarrier(2) (`MEMBARRIER_CMD_PRIVATE_EXPEDITED`,
/// registered when RCU is first used). Where membarrier is unavailable, or `KSYNC_RCU_FORCE_FENCES=1` is
/// set in the environment before first use, readers issue full fences instead (``usesMembarrier``).
///
/// Threads register by themselves on their first read section and are unregistered at thread exit.
///
/// - Note: The read section is a pseudo-lock for the validator ("rcu_read_lock"): blocking inside it
///   (a mutex lock, ``synchronize(file:line:)``, ``barrier(file:line:)``) is reported.
public enum RCU {
    /// The validator's pseudo-lock for read sections.
    static let readSectionMap = LockdepMap(name: "rcu_read_lock", readSection: true)

    // MARK: Read side

    /// Enters a read-side critical section. Nests; only the outermost lock and unlock do any work beyond
    /// a counter update.
    ///
    /// Kernel analogue: `rcu_read_lock()`.
    ///
    /// Context: any, atomic context included. Must not block until the matching ``readUnlock(file:line:)``.
    @inlinable
    public static func readLock(file: StaticString = #fileID, line: UInt = #line) {
        guard let record = RCUReaderRecord.current else {
            RCUReaderRecord.registerCurrent()._withUnsafeGuaranteedRef { $0.lock(file: file, line: line) }
            return
        }
        record._withUnsafeGuaranteedRef { $0.lock(file: file, line: line) }
    }

    /// Leaves a read-side critical section. Unlocking with no section to leave is reported and ignored.
    ///
    /// Kernel analogue: `rcu_read_unlock()`.
    @inlinable
    public static func readUnlock(file: StaticString = #fileID, line: UInt = #line) {
        guard let record = RCUReaderRecord.current else {
            RCUReaderRecord.registerCurrent()._withUnsafeGuaranteedRef { $0.unlock(file: file, line: line) }
            return
        }
        record._withUnsafeGuaranteedRef { $0.unlock(file: file, line: line) }
    }

    /// Ends the read sections that `what` (an RCU callback, a work function) entered and left open on
    /// return, and reports them: the thread runs callbacks or work items for others, and every later
    /// grace period would wait for it. Called by the runners when ``RCUReaderRecord/currentNesting`` is
    /// not zero after a callback.
    ///
    /// Kernel analogue: the `rcu_preempt_depth()` check of `process_one_work()`.
    @inline(never)
    static func endLeakedReadSections(by what: String) {
        let depth = RCUReaderRecord.currentNesting
        Lockdep.emit(RCUReportText.leakedReadSection(by: what, depth: depth))
        for _ in 0..<depth { readUnlock() }
    }

    /// Runs `body` in a read-side critical section.
    ///
    /// Kernel analogue: `scoped_guard(rcu)`.
    @inlinable
    public static func withReadLock<R, E: Error>(
        file: StaticString = #fileID, line: UInt = #line, _ body: () throws(E) -> R
    ) throws(E) -> R {
        readLock(file: file, line: line)
        defer { readUnlock(file: file, line: line) }
        return try body()
    }

    /// Whether the calling thread is inside a read section (`rcu_read_lock_held()`, exact in every
    /// validator mode).
    public static var isInReadSection: Bool { RCUReaderRecord.currentNesting > 0 }

    /// Takes the calling thread out of grace-period tracking, for a thread about to sleep for long
    /// between read sections: grace periods no longer look at it. Its next read section brings it back
    /// online by itself (as its first one registered it), or call ``threadOnline()``.
    ///
    /// Kernel analogue: liburcu `rcu_thread_offline()` / `rcu_unregister_thread()`.
    ///
    /// Context: outside any read section; inside one it is reported and ignored.
    public static func threadOffline(file: StaticString = #fileID, line: UInt = #line) {
        if !RCUReaderRecord.unregisterCurrent() {
            Lockdep.emit(RCUReportText.offlineInReadSection(site: "\(file):\(line)"))
        }
    }

    /// Registers the calling thread again after ``threadOffline(file:line:)`` (it also happens by
    /// itself on the next read section).
    ///
    /// Kernel analogue: liburcu `rcu_thread_online()` / `rcu_register_thread()`.
    public static func threadOnline() {
        if RCUReaderRecord.current == nil { _ = RCUReaderRecord.registerCurrent() }
    }

    /// Whether readers rely on membarrier(2) (compiler barriers only) rather than full fences.
    public static var usesMembarrier: Bool { !GracePeriodEngine.shared.usesFences }

    // MARK: Grace periods

    /// Waits for a full grace period: every read section that began before the call has ended when it
    /// returns. Concurrent callers share grace periods.
    ///
    /// Kernel analogue: `synchronize_rcu()`.
    ///
    /// Context: may sleep. Inside a read section of the calling thread it would wait for itself: that is
    /// reported ("Illegal synchronize_rcu() in RCU read-side critical section") and it returns at once.
    /// In atomic context it is reported as sleeping in invalid context, and waits.
    public static func synchronize(file: StaticString = #fileID, line: UInt = #line) {
        synchronize(until: snapshot(), file: file, line: line)
    }

    /// Waits until the grace period of `cookie` has elapsed; returns at once if it has.
    ///
    /// Kernel analogue: `cond_synchronize_rcu()`.
    ///
    /// Context: as ``synchronize(file:line:)``.
    public static func synchronize(until cookie: GracePeriodCookie, file: StaticString = #fileID, line: UInt = #line) {
        _ = synchronizeCountingLeadership(until: cookie.target, file: file, line: line)
    }

    /// ``synchronize(until:file:line:)`` returning how many grace periods this caller led.
    static func synchronizeCountingLeadership(until target: UInt64, file: StaticString, line: UInt) -> Int {
        guard checkMayWait(call: "synchronize_rcu()", file: file, line: line) else { return 0 }
        return GracePeriodEngine.shared.synchronize(until: target)
    }

    /// A cookie for the grace period that must elapse before everything removed so far may be freed;
    /// does not start one.
    ///
    /// Kernel analogue: `get_state_synchronize_rcu()`.
    public static func snapshot() -> GracePeriodCookie {
        GracePeriodCookie(target: GracePeriodEngine.snapshot())
    }

    /// ``snapshot()`` taken right after the atomic exchange of an update (an unlink, a pointer
    /// replacement), which on x86 is itself the full barrier the snapshot needs: the tokens' cookies.
    @inlinable @inline(__always)
    static func snapshotAfterAtomicUpdate() -> GracePeriodCookie {
        GracePeriodCookie(target: GracePeriodEngine.snapshotAfterAtomicUpdate())
    }

    /// Like ``snapshot()``, and makes sure that grace period will run even if nobody else waits for it
    /// (the reclaimer thread runs it).
    ///
    /// Kernel analogue: `start_poll_synchronize_rcu()`.
    public static func startPoll() -> GracePeriodCookie {
        let cookie = snapshot()
        Reclaimer.shared.request(cookie.target)
        return cookie
    }

    /// Whether the grace period of `cookie` has elapsed. Never blocks.
    ///
    /// Kernel analogue: `poll_state_synchronize_rcu()`.
    ///
    /// Ordering: acquire; when it returns true, every read section that could see what was removed
    /// before the cookie was taken has ended, and the caller may free it.
    public static func poll(_ cookie: GracePeriodCookie) -> Bool {
        GracePeriodEngine.hasElapsed(cookie.target)
    }

    /// The number of grace periods completed since the process started.
    public static var completedGracePeriods: UInt64 { GracePeriodEngine.completedCount }

    // MARK: Deferred work

    /// Runs `callback` on the reclaimer thread after a grace period. A thread's callbacks run in the
    /// order it queued them, many per grace period; callbacks queued by different threads are not
    /// ordered (each thread queues on a list of its own, as each CPU does in the kernel).
    ///
    /// Kernel analogue: `call_rcu()`.
    ///
    /// Context: may sleep when the backlog is at its bound (``maxBacklog``), until callbacks have run; so
    /// not holding a lock that a callback takes (with the validator on, reported as a circular
    /// dependency on "rcu_callbacks" even when the backlog is not full). It never waits when called from
    /// a callback, inside a read section or in atomic context (where waiting could deadlock or is not
    /// allowed): those calls are admitted above the bound.
    public static func call(_ callback: @escaping @Sendable () -> Void) {
        Reclaimer.shared.enqueue(.run(callback))
    }

    /// Keeps a strong reference to `object` until a grace period has passed, then drops it: readers that
    /// found it before it was unlinked can keep using it until their section ends. With
    /// ``debugReclamation`` on, an ``RCUProtected`` object is poisoned and quarantined instead of
    /// dropped, so that a later access is reported.
    ///
    /// Kernel analogue: `kfree_rcu()`.
    ///
    /// Context: as ``call(_:)``.
    public static func retire(_ object: __owned AnyObject, file: StaticString = #fileID, line: UInt = #line) {
        retire(retained: Unmanaged.passRetained(object), file: file, line: line)
    }

    /// ``retire(_:file:line:)`` of a reference the caller owns (+1) and hands over, without a retain.
    /// With `cookie`, a snapshot the caller took after unpublishing the object (a token's), the callback
    /// waits for that grace period instead of one named now.
    @usableFromInline
    static func retire<Object: AnyObject>(
        retained object: Unmanaged<Object>, after cookie: GracePeriodCookie? = nil, file: StaticString, line: UInt
    ) {
        let reference = RetiredObject.erase(object)
        if debugReclamation { markRetired(reference, file: file, line: line) }
        Reclaimer.shared.enqueue(.release(RetiredObject(retained: reference)), after: cookie)
    }

    /// ``retire(retained:after:file:line:)`` of two references in one deferred action.
    @usableFromInline
    static func retire(
        retained first: Unmanaged<AnyObject>, and second: Unmanaged<AnyObject>, after cookie: GracePeriodCookie,
        file: StaticString, line: UInt
    ) {
        if debugReclamation {
            markRetired(first, file: file, line: line)
            markRetired(second, file: file, line: line)
        }
        Reclaimer.shared.enqueue(.releasePair(RetiredObject(retained: first), RetiredObject(retained: second)), after: cookie)
    }

    /// Records where an ``RCUProtected`` object was retired, for debug reclamation's reports.
    private static func markRetired(_ reference: Unmanaged<AnyObject>, file: StaticString, line: UInt) {
        reference._withUnsafeGuaranteedRef { object in
            (object as? RCUProtected)?.markRetired(file: file, line: line)
        }
    }

    /// Drops a reference (+1) that readers may have reached until `cookie` was taken, without poisoning
    /// its object: at once if that grace period has elapsed, otherwise after it. The `free()` of
    /// ``RCUDetached`` and ``RCUReplaced``.
    static func drop<Object: AnyObject>(
        retained reference: Unmanaged<Object>, after cookie: GracePeriodCookie
    ) {
        if poll(cookie) {
            reference.release()
        } else {
            Reclaimer.shared.enqueue(.drop(RetiredObject(retained: reference)))
        }
    }

    /// Retires an element detached from an ``RCUList`` and the object a pointer replacement of the same
    /// update handed back, in one deferred action: what ``retire(_:file:line:)`` of each does, for the
    /// cost of one (one queued callback, one run). The IOMMU model's removal, for instance, unlinks the
    /// group_device and clears `dev->iommu_group` under the group mutex, and both wait for the same
    /// grace period.
    ///
    /// Kernel analogue: one `kfree_rcu()` where the kernel would embed both in one structure.
    ///
    /// Inlinable, as are the tokens' consuming paths behind it, so that the caller's module specialises
    /// them: unspecialised, the retire made five generic calls before the enqueue, inside the group
    /// mutex in the IOMMU model's freeUnderMutex (callgrind: 1,800 → 1,695 instructions a cycle there).
    ///
    /// Context: as ``call(_:)``.
    @inlinable
    public static func retire<Element, Other>(
        _ detached: consuming RCUDetached<Element>, along replaced: consuming RCUReplaced<Other>,
        file: StaticString = #fileID, line: UInt = #line
    ) {
        detached.retire(along: replaced, file: file, line: line)
    }

    /// Retires an element detached from an ``RCUList``, with the list's own reference: as
    /// ``retire(_:file:line:)`` of the element, in one deferred action.
    ///
    /// Kernel analogue: `kfree_rcu()` after `list_del_rcu()`.
    @inlinable
    public static func retire<Element>(
        _ detached: consuming RCUDetached<Element>, file: StaticString = #fileID, line: UInt = #line
    ) {
        detached.retire(file: file, line: line)
    }

    /// Waits until every callback queued (``call(_:)``, ``retire(_:file:line:)``) before this call has
    /// run — not only until their grace period has elapsed.
    ///
    /// Kernel analogue: `rcu_barrier()`.
    ///
    /// Context: may sleep. From a callback it would wait for itself: reported, returns at once. Inside a
    /// read section: reported as for ``synchronize(file:line:)``, returns at once. Holding a lock that a
    /// callback takes is a deadlock whenever such a callback is queued: with the validator on it is
    /// reported on every call, queued or not, as `flush` of an idle work item is.
    public static func barrier(file: StaticString = #fileID, line: UInt = #line) {
        if Reclaimer.shared.isRunningCallbacks {
            Lockdep.emit(RCUReportText.barrierFromCallback(site: "\(file):\(line)"))
            return
        }
        guard checkMayWait(call: "rcu_barrier()", file: file, line: line) else { return }
        if Lockdep.isValidating { Reclaimer.shared.recordWaitForCallbacks() }
        Reclaimer.shared.waitForQueued()
    }

    /// The most callbacks that may wait for reclamation at once (default 100,000); a caller that would
    /// exceed it waits. Can be changed at any time; a smaller bound applies to the next admissions. The
    /// bound is checked when a thread hands its own list over (every 256 callbacks, or a sixteenth of
    /// the bound when that is smaller), so each thread may hold that many more; what the reclaimer or a
    /// barrier collects from a list before its thread hands it over joins the backlog without a check.
    public static var maxBacklog: Int {
        get { Reclaimer.shared.lock.withLock { Reclaimer.shared.maxBacklog } }
        set {
            precondition(newValue > 0, "RCU.maxBacklog must be positive, got \(newValue)")
            Reclaimer.shared.lock.withLock {
                Reclaimer.shared.maxBacklog = newValue
                Reclaimer.shared.progress.broadcast()
            }
        }
    }

    /// Callbacks queued and not yet run.
    public static var backlog: Int { Reclaimer.shared.backlog }

    /// The largest backlog a thread's hand-over produced when it honoured the bound (never above
    /// ``maxBacklog`` at the time). Callbacks still on the threads' own lists, and those the reclaimer
    /// or a barrier collected from a list before its thread handed it over, are not counted in it.
    public static var peakBacklog: Int { Reclaimer.shared.lock.withLock { Reclaimer.shared.peakBacklog } }

    /// Starts measuring ``peakBacklog`` afresh.
    public static func resetPeakBacklog() { Reclaimer.shared.resetPeakBacklog() }

    // MARK: Debug reclamation

    /// Poison and quarantine retired ``RCUProtected`` objects instead of dropping them, so that an access
    /// after their grace period is reported with their history. Off by default; on with
    /// `KSYNC_RCU_DEBUG=1` at start; tests and the stress binary turn it on.
    public static var debugReclamation: Bool {
        get { Quarantine.enabled.load(ordering: .relaxed) }
        set { Quarantine.enabled.store(newValue, ordering: .relaxed) }
    }

    /// Run every callback on the reclaimer thread, as the kernel does for CPUs listed in `rcu_nocbs=`,
    /// instead of handing retired objects back to the threads that retired them once their grace
    /// period has passed. Off by default; on with `KSYNC_RCU_NOCBS=1` at start.
    ///
    /// By default a thread drops its own retired objects (``retire(_:file:line:)``, `RCUList`
    /// deletions, `RCUPointer` replacements) inside one of its later ``call(_:)`` / `retire` calls made
    /// outside read sections and atomic context and with no ``KernelMutex`` held (so never inside
    /// `RCUPointer.assign` or an `RCUList` deletion, which hold the update lock, nor inside any other
    /// critical section), as a CPU invokes its own callbacks in the kernel, from softirq rather than
    /// inside the task's critical section: their
    /// deinits run there, on the core that last touched them. Closures queued with ``call(_:)`` always
    /// run on the reclaimer. What a thread does not get to within a couple of milliseconds, what exited
    /// threads leave, and everything when someone waits in ``barrier(file:line:)``, runs on the
    /// reclaimer. Either way a callback runs after its grace period, and each thread's in the order it
    /// queued them. The rule for callers is the same in both modes (``call(_:)``): do not queue while
    /// holding a lock that a callback or a retired object's deinit takes (with the validator on, that is
    /// reported); and a deinit of a retired object must not wait for something its retiring thread does.
    public static var offloadsCallbacks: Bool {
        get { offloadsCallbacksFlag.load(ordering: .relaxed) }
        set { offloadsCallbacksFlag.store(newValue, ordering: .relaxed) }
    }

    private static let offloadsCallbacksFlag = Atomic<Bool>(
        environmentFlag("KSYNC_RCU_NOCBS"))

    // MARK: Testing the tests

    /// Ways to break grace periods on purpose, so that a torture test can prove it catches the bug.
    enum BrokenMode: Int {
        case none = 0
        /// Grace periods end without waiting for readers.
        case skipWait = 1
    }

    /// The current broken mode; ``BrokenMode/none`` unless a torture test sets it.
    static var brokenMode: BrokenMode {
        get { BrokenMode(rawValue: GracePeriodEngine.shared.brokenMode.load(ordering: .relaxed))! }
        set { GracePeriodEngine.shared.brokenMode.store(newValue.rawValue, ordering: .relaxed) }
    }

    // MARK: Helpers

    /// Reports a wait that is illegal here. Returns false when the caller must not wait (it is inside a
    /// read section of its own).
    private static func checkMayWait(call: String, file: StaticString, line: UInt) -> Bool {
        if isInReadSection {
            Lockdep.emit(RCUReportText.illegalSynchronize(call: call, site: "\(file):\(line)"))
            return false
        }
        Lockdep.mightSleep(call, file: file, line: line)
        return true
    }
}

/// A retired object in transit to the reclaimer, with the reference (+1) the retiring caller gave up;
/// only the reclaimer touches it afterwards, and drops the reference when it performs the callback.
///
/// Unmanaged, so that the callback is trivially copied as it moves from a thread's list to a batch: a
/// strong reference was retained and released by every copy, on the writer's path.
@usableFromInline
struct RetiredObject: @unchecked Sendable {
    let reference: Unmanaged<AnyObject>

    /// Takes over `reference` (+1), of any class.
    init<Object: AnyObject>(retained reference: Unmanaged<Object>) {
        self.reference = RetiredObject.erase(reference)
    }

    /// The same reference, typed as any object.
    @inlinable
    static func erase<Object: AnyObject>(_ reference: Unmanaged<Object>) -> Unmanaged<AnyObject> {
        Unmanaged<AnyObject>.fromOpaque(reference.toOpaque())
    }

    /// Poisons and quarantines an ``RCUProtected`` object (the quarantine takes a reference of its own).
    ///
    /// Context: the reclaimer, with debug reclamation on, before ``dropReference()``.
    func reclaim() {
        reference._withUnsafeGuaranteedRef { object in
            if let protected = object as? RCUProtected {
                protected.poison()
                Quarantine.shared.hold(protected)
            }
        }
    }

    /// Drops the reference. Context: the reclaimer, once per retired object.
    func dropReference() {
        reference.release()
    }

    /// The end of a retire: ``reclaim()`` with debug reclamation on, then ``dropReference()``.
    func release(debugReclamation: Bool) {
        if debugReclamation { reclaim() }
        dropReference()
    }
}
