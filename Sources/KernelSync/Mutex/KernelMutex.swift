import CKernelSync
import Glibc

/// A sleeping, non-recursive, owner-tracked mutual-exclusion lock, checked by the lock validator.
///
/// Kernel analogue: `struct mutex` (`mutex_init`, `mutex_lock`, `mutex_unlock`, `mutex_trylock`,
/// `mutex_lock_nested`, `lockdep_assert_held`).
///
/// ```swift
/// let groupLock = KernelMutex(name: "group->mutex")
/// let count = groupLock.withLock { devices.count }
/// ```
///
/// is equivalent to
///
/// ```swift
/// groupLock.lock()
/// let count = devices.count
/// groupLock.unlock()
/// ```
///
/// Backed by a default `pthread_mutex_t` at a fixed heap address; glibc records its owner, which the
/// misuse checks read. A thread that finds it held spins briefly before it sleeps, as the kernel's
/// mutex spins while its owner runs (see ``PthreadMutex/lockSpinning()``). Every mutex created at one
/// source line belongs to one ``LockClass``, the unit the validator reasons about; pass `class:` where
/// that is wrong.
///
/// - Warning: Sleeping: never lock it in atomic context (``Lockdep/withAtomicContext(_:_:)``) or inside
///   an RCU read section; the validator reports "sleeping function called from invalid context".
/// - Warning: Not recursive. Locking a mutex the caller already holds is reported and then stops the
///   process (continuing would deadlock). Unlocking a mutex that is not held, or that another thread
///   holds, is reported and ignored. These misuse checks read the owner glibc records, and work in every
///   validator mode.
public final class KernelMutex: @unchecked Sendable, CustomStringConvertible {
    @usableFromInline let mutex: PthreadMutex
    /// The class every dependency of this lock is recorded under.
    public let lockClass: LockClass
    /// Monotonic time of the current acquisition, for hold-time statistics.
    /// Guarded by: self (written and read by the owner only).
    @usableFromInline var acquiredAt: UInt64 = 0

    /// Creates a mutex whose class is keyed by the calling source line (`mutex_init()` with its static
    /// key). The first mutex created at that line names the class; `name` defaults to "File.swift:line".
    ///
    /// - Note: Inside a macro expansion (a Swift Testing exit test, say) every line reports the macro's
    ///   line, so mutexes created there share one class; pass `class:` instead.
    public init(name: String? = nil, file: StaticString = #fileID, line: UInt = #line) {
        mutex = PthreadMutex()
        lockClass = LockClass.forSite(file: file, line: line, name: name)
    }

    /// Creates a mutex of an explicit class (`lockdep_set_class()`).
    public init(class lockClass: LockClass) {
        mutex = PthreadMutex()
        self.lockClass = lockClass
    }

    deinit {
        let owner = mutex.ownerThreadID
        if owner != 0 {
            Lockdep.emit(ReportText.destroyedWhileLocked(
                lockClass: lockClass, owner: ThreadRegistry.shared.describe(owner),
                thread: ThreadState.current.pointee.threadDescription))
            return
        }
        mutex.destroy()
    }

    public var description: String { "KernelMutex(\(lockClass.name))" }

    // MARK: Lock and unlock

    /// Acquires the mutex, sleeping until it is free.
    ///
    /// Kernel analogue: `mutex_lock()`.
    ///
    /// Context: may sleep. Not in atomic context, not inside an RCU read section, not while holding this
    /// mutex.
    @inlinable
    public func lock(file: StaticString = #fileID, line: UInt = #line) {
        if _fastPath(Lockdep.isIdle) {
            // Uncontended: one trylock, no other check. Busy: it may be the caller's own (a recursive
            // lock, which must not hang) or another thread's (wait for it).
            if _fastPath(mutex.tryLock() == 0) {
                ks_mutexes_held_add(1)
                return
            }
            lockContended(file: file, line: line)
            return
        }
        lockSlow(subclass: 0, file: file, line: line)
    }

    /// Acquires the mutex as nesting level `subclass`, telling the validator that holding several
    /// mutexes of this class at once is intended and ordered by level.
    ///
    /// Kernel analogue: `mutex_lock_nested()`.
    ///
    /// Context: as ``lock(file:line:)``. `subclass` is in `0..<LockClass.maximumSubclasses`.
    public func lock(nested subclass: Int, file: StaticString = #fileID, line: UInt = #line) {
        precondition((0..<LockClass.maximumSubclasses).contains(subclass),
                     "lock(nested: \(subclass)) of \(lockClass.name) at \(file):\(line): subclass must be below \(LockClass.maximumSubclasses)")
        if Lockdep.isIdle {
            if mutex.tryLock() == 0 { ks_mutexes_held_add(1) } else { lockContended(file: file, line: line) }
            return
        }
        lockSlow(subclass: subclass, file: file, line: line)
    }

    /// Acquires the mutex if it is free, without waiting. Returns whether it was acquired.
    ///
    /// Kernel analogue: `mutex_trylock()` (which returns 1 on success, like this returns true).
    /// A trylock cannot deadlock, so the validator records no dependency into it, and a trylock of a
    /// mutex the caller already holds simply fails.
    @inlinable
    public func tryLock(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        let rc = mutex.tryLock()
        if _fastPath(rc == 0) {
            ks_mutexes_held_add(1)
            if !Lockdep.isIdle { acquired(subclass: 0, trylock: true, file: file, line: line) }
            return true
        }
        if rc == EBUSY { return false }
        pthreadFailed("pthread_mutex_trylock", rc, file: file, line: line)
    }

    /// Releases the mutex.
    ///
    /// Kernel analogue: `mutex_unlock()`.
    ///
    /// Context: the caller holds the mutex. An unlock by a thread that does not hold it is reported and
    /// has no effect.
    ///
    /// The thread's last unlock runs the RCU callbacks that were handed back to it while it held a
    /// mutex (the deinits of objects it retired), which are never run inside a critical section (see
    /// ``RCU/offloadsCallbacks``); one test of a thread-local flag otherwise.
    ///
    /// Always inlined, as the lock is: a call (the optimizer's choice once the held count was added)
    /// cost the remove path 37 instructions an unlock, most of them the call's frame.
    @inlinable @inline(__always)
    public func unlock(file: StaticString = #fileID, line: UInt = #line) {
        if _fastPath(Lockdep.isIdle) {
            if _slowPath(mutex.ownerThreadID != ks_gettid()) {
                unlockFailed(file: file, line: line)
                return
            }
            let rc = mutex.unlock()
            if _slowPath(rc != 0) { pthreadFailed("pthread_mutex_unlock", rc, file: file, line: line) }
            KernelMutex.released()
            return
        }
        unlockSlow(file: file, line: line)
    }

    /// Counts one mutex fewer held by the calling thread; the last one's release runs the RCU callbacks
    /// handed back to the thread meanwhile. Context: after the unlock.
    @inlinable @inline(__always)
    static func released() {
        ks_mutexes_held_add(-1)
        if _slowPath(ks_returned_deferred_get() != 0) && ks_mutexes_held_get() == 0 { runDeferredCallbacks() }
    }

    /// The thread released its last mutex with RCU callbacks handed back to it that it found while it
    /// held one (see ``Reclaimer/enqueue(_:)``): runs them now, outside every critical
    /// section, as the kernel runs pending softirqs on leaving a section that held them off.
    @usableFromInline @inline(never)
    static func runDeferredCallbacks() {
        ks_returned_deferred_set(0)
        Reclaimer.shared.runReturnedOfCurrentThread()
    }

    /// Runs `body` with the mutex held, and returns its result; the mutex is released however `body`
    /// exits.
    ///
    /// Kernel analogue: `guard(mutex)(&lock)` / `scoped_guard(mutex, &lock)`.
    ///
    /// Context: as ``lock(file:line:)``.
    @inlinable
    public func withLock<R: ~Copyable, E: Error>(
        file: StaticString = #fileID, line: UInt = #line, _ body: () throws(E) -> R
    ) throws(E) -> R {
        lock(file: file, line: line)
        defer { unlock(file: file, line: line) }
        return try body()
    }

    // MARK: Ownership

    /// Whether the calling thread holds this mutex. Always exact: glibc records the owner of every
    /// mutex, so this does not depend on the validator's mode.
    ///
    /// Kernel analogue: `lockdep_is_held()` / `mutex_is_locked()` combined with an owner check.
    @inlinable
    public var isHeldByCurrentThread: Bool { mutex.ownerThreadID == KernelThread.currentID }

    /// Whether any thread holds the mutex (a racy snapshot). Kernel analogue: `mutex_is_locked()`.
    public var isLocked: Bool { mutex.ownerThreadID != 0 }

    /// Held or not held by the calling thread. Never ``Lockdep/HeldState/unknown`` for a mutex, because the
    /// owner is always recorded; pseudo-locks (``LockdepMap``) answer unknown when the validator is off.
    public var heldState: Lockdep.HeldState { isHeldByCurrentThread ? .held : .notHeld }

    /// Reports unless the calling thread holds the mutex.
    ///
    /// Kernel analogue: `lockdep_assert_held()`.
    ///
    /// Inlinable, with the report outlined: the check is two loads and a compare, as cheap as the
    /// kernel's when lockdep is on, and the remove path makes it inside its critical section.
    @inlinable
    public func assertHeld(file: StaticString = #fileID, line: UInt = #line) {
        let owner = mutex.ownerThreadID
        if _fastPath(owner == KernelThread.currentID) { return }
        reportNotHeld(owner: owner, file: file, line: line)
    }

    @usableFromInline @inline(never)
    func reportNotHeld(owner: Int32, file: StaticString, line: UInt) {
        Lockdep.emit(ReportText.assertionFailed(
            assertion: "lockdep_assert_held", lockClass: lockClass,
            thread: ThreadState.current.pointee.threadDescription,
            owner: owner == 0 ? nil : ThreadRegistry.shared.describe(owner), site: "\(file):\(line)"))
    }

    /// Reports if the calling thread holds the mutex. Another thread holding it is fine.
    ///
    /// Kernel analogue: `lockdep_assert_not_held()`.
    @inlinable
    public func assertNotHeld(file: StaticString = #fileID, line: UInt = #line) {
        if _fastPath(!isHeldByCurrentThread) { return }
        reportHeld(file: file, line: line)
    }

    @usableFromInline @inline(never)
    func reportHeld(file: StaticString, line: UInt) {
        let thread = ThreadState.current.pointee.threadDescription
        Lockdep.emit(ReportText.assertionFailed(
            assertion: "lockdep_assert_not_held", lockClass: lockClass, thread: thread, owner: thread,
            site: "\(file):\(line)"))
    }

    // MARK: Slow paths

    @usableFromInline
    var identity: UnsafeRawPointer { UnsafeRawPointer(mutex.handle) }

    /// Validator or statistics on: validate before blocking (so a deadlock is reported before it
    /// happens), then lock, timing the wait when statistics are on.
    @usableFromInline @inline(never)
    func lockSlow(subclass: Int, file: StaticString, line: UInt) {
        let flags = Lockdep.currentFlags
        let validating = flags & Lockdep.modeMask != 0
        if validating {
            let state = ThreadState.current
            if _slowPath(state.pointee.atomicDepth > 0 || state.pointee.readSections > 0) {
                Lockdep.reportSleep(
                    state: state, what: "mutex_lock(\(lockClass.name))", acquiring: lockClass, site: "\(file):\(line)")
            }
            Lockdep.acquire(
                node: lockClass.index &* LockClass.maximumSubclasses &+ subclass, instance: identity,
                kind: .mutex, trylock: false, file: file, line: line)
        }
        if mutex.ownerThreadID == ks_gettid() { recursiveLock(file: file, line: line) }
        let rc: Int32
        if flags & Lockdep.statisticsFlag != 0 {
            rc = lockCountingContention()
        } else {
            rc = mutex.tryLock() == 0 ? 0 : mutex.lockSpinning()
        }
        if _slowPath(rc != 0) { pthreadFailed("pthread_mutex_lock", rc, file: file, line: line) }
        ks_mutexes_held_add(1)
    }

    /// Locks, recording the acquisition, whether it had to wait, and for how long.
    func lockCountingContention() -> Int32 {
        var rc = mutex.tryLock()
        if rc == EBUSY {
            let start = monotonicNanoseconds()
            rc = mutex.lockSpinning()
            guard rc == 0 else { return rc }
            acquiredAt = monotonicNanoseconds()
            lockClass.statistics.recordAcquisition(contended: true, waitNanoseconds: acquiredAt &- start)
        } else if rc == 0 {
            acquiredAt = monotonicNanoseconds()
            lockClass.statistics.recordAcquisition(contended: false, waitNanoseconds: 0)
        }
        return rc
    }

    /// The validator-off path after a failed trylock: stop on a recursive lock, otherwise wait.
    @usableFromInline @inline(never)
    func lockContended(file: StaticString, line: UInt) {
        if mutex.ownerThreadID == ks_gettid() { recursiveLock(file: file, line: line) }
        let rc = mutex.lockSpinning()
        if rc != 0 { pthreadFailed("pthread_mutex_lock", rc, file: file, line: line) }
        ks_mutexes_held_add(1)
    }

    /// Records a successful trylock with the validator and the statistics.
    @usableFromInline @inline(never)
    func acquired(subclass: Int, trylock: Bool, file: StaticString, line: UInt) {
        let flags = Lockdep.currentFlags
        if flags & Lockdep.modeMask != 0 {
            Lockdep.acquire(
                node: lockClass.index &* LockClass.maximumSubclasses &+ subclass, instance: identity,
                kind: .mutex, trylock: trylock, file: file, line: line)
        }
        if flags & Lockdep.statisticsFlag != 0 {
            acquiredAt = monotonicNanoseconds()
            lockClass.statistics.recordAcquisition(contended: false, waitNanoseconds: 0)
        }
    }

    @usableFromInline @inline(never)
    func unlockSlow(file: StaticString, line: UInt) {
        guard mutex.ownerThreadID == ks_gettid() else {
            unlockFailed(file: file, line: line)
            return
        }
        let flags = Lockdep.currentFlags
        let heldAt = flags & Lockdep.statisticsFlag != 0 ? acquiredAt : 0
        let rc = mutex.unlock()
        if rc != 0 { pthreadFailed("pthread_mutex_unlock", rc, file: file, line: line) }
        if heldAt != 0 {
            lockClass.statistics.recordHold(nanoseconds: monotonicNanoseconds() &- heldAt)
        }
        if flags & Lockdep.modeMask != 0 { Lockdep.release(instance: identity) }
        KernelMutex.released()
    }

    /// The caller locks a mutex it already holds. Continuing would deadlock, so this reports and stops
    /// the process.
    @usableFromInline @inline(never)
    func recursiveLock(file: StaticString, line: UInt) -> Never {
        let thread = ThreadState.current.pointee.threadDescription
        var text = ReportText.banner("WARNING: recursive locking of a non-recursive mutex")
        text += "\(thread) is trying to acquire lock (\(lockClass.name)) at \(file):\(line)\n"
        text += "but it already holds this very lock: the thread would wait for itself forever.\n\n"
        writeToStandardError(text)
        fatalError("KernelMutex(\(lockClass.name)): recursive lock by \(thread) at \(file):\(line)")
    }

    /// glibc returned an error that a correctly used default mutex never returns.
    @usableFromInline @inline(never)
    func pthreadFailed(_ call: String, _ rc: Int32, file: StaticString, line: UInt) -> Never {
        fatalError("KernelMutex(\(lockClass.name)): \(call) failed with \(rc) at \(file):\(line)")
    }

    /// The caller unlocks a mutex it does not hold. Reported and ignored.
    @usableFromInline @inline(never)
    func unlockFailed(file: StaticString, line: UInt) {
        let owner = mutex.ownerThreadID
        Lockdep.emit(ReportText.badUnlock(
            kind: owner == 0 ? .badUnlockBalance : .unlockByNonOwner, lockClass: lockClass,
            thread: ThreadState.current.pointee.threadDescription,
            owner: owner == 0 ? nil : ThreadRegistry.shared.describe(owner), site: "\(file):\(line)"))
    }
}
