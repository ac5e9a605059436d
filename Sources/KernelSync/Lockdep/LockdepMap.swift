/// A pseudo-lock: something the validator treats as a lock although no lock exists, so that waiting on
/// it takes part in deadlock detection.
///
/// Kernel analogue: `struct lockdep_map` with `lock_map_acquire()` / `lock_map_release()`. The work queue
/// gives each work item one: the worker "holds" it around the work function, and `cancelSync` / `flush`
/// "acquire" it in the caller, so `lock(L); cancelSync(w)` against a `w` that takes `L` is a cycle.
///
/// ```swift
/// let work = LockdepMap(name: "(work_completion)(&gdev->broken_work)")
/// work.acquire(); work.release()   // what a flush records
/// ```
///
/// - Note: With the validator off, acquire and release do nothing and ``heldState`` is
///   ``Lockdep/HeldState/unknown``.
public final class LockdepMap: @unchecked Sendable, CustomStringConvertible {
    /// The class every dependency of this pseudo-lock is recorded under.
    public let lockClass: LockClass
    @usableFromInline let kind: HeldLockKind

    /// Creates a pseudo-lock whose class is keyed by the calling source line.
    ///
    /// - Parameter readSection: true for a read-side section (RCU): it records no dependencies, and
    ///   sleeping while it is held is reported by ``Lockdep/mightSleep(_:file:line:)``.
    public init(name: String? = nil, readSection: Bool = false, file: StaticString = #fileID, line: UInt = #line) {
        lockClass = LockClass.forSite(file: file, line: line, name: name)
        kind = readSection ? .readSection : .pseudo
    }

    /// Creates a pseudo-lock of an explicit class.
    public init(class lockClass: LockClass, readSection: Bool = false) {
        self.lockClass = lockClass
        kind = readSection ? .readSection : .pseudo
    }

    public var description: String { "LockdepMap(\(lockClass.name))" }

    @usableFromInline
    var identity: UnsafeRawPointer { UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()) }

    /// Records an acquisition by the calling thread, validating the dependency it creates.
    ///
    /// Kernel analogue: `lock_map_acquire()` (`lock_acquire_exclusive`), or `lock_map_acquire_read` style
    /// tracking for a read section.
    @inlinable
    public func acquire(subclass: Int = 0, trylock: Bool = false, file: StaticString = #fileID, line: UInt = #line) {
        guard Lockdep.isValidating else { return }
        Lockdep.acquire(
            node: lockClass.index * LockClass.maximumSubclasses + subclass, instance: identity, kind: kind,
            trylock: trylock, file: file, line: line)
    }

    /// Records the release. Releasing a pseudo-lock the thread does not hold is reported.
    ///
    /// Kernel analogue: `lock_map_release()`.
    @inlinable
    public func release(file: StaticString = #fileID, line: UInt = #line) {
        guard Lockdep.isValidating else { return }
        if !Lockdep.release(instance: identity) { releaseUnheld(file: file, line: line) }
    }

    /// Removes this pseudo-lock from the calling thread's held stack if it is there, whatever the mode is
    /// now: ends an acquisition made while the validator was on, which must not outlive a switch to off
    /// (``release(file:line:)`` does nothing then). Returns whether it was held.
    @discardableResult
    func releaseRecorded() -> Bool { Lockdep.release(instance: identity) }

    /// Whether the calling thread holds this pseudo-lock; unknown when the validator is off.
    public var heldState: Lockdep.HeldState { Lockdep.heldState(of: identity) }

    @usableFromInline @inline(never)
    func releaseUnheld(file: StaticString, line: UInt) {
        LockdepMap.reportUnheldRelease(of: lockClass, file: file, line: line)
    }

    /// Reports the release of a pseudo-lock of `lockClass` that the calling thread does not hold.
    @inline(never)
    static func reportUnheldRelease(of lockClass: LockClass, file: StaticString, line: UInt) {
        Lockdep.emit(ReportText.badUnlock(
            kind: .badUnlockBalance, lockClass: lockClass, thread: ThreadState.current.pointee.threadDescription,
            owner: nil, site: "\(file):\(line)"))
    }
}

/// A pseudo-lock embedded in another object, whose address is its identity: a ``LockdepMap`` without an
/// allocation of its own, for objects made by the million (the kernel embeds `struct lockdep_map` in
/// `struct work_struct` for the same reason).
///
/// Context: the owner must outlive every acquisition (it is not retained).
struct EmbeddedLockdepMap {
    /// Unowned: lock classes live as long as the process, and a counted reference would write the
    /// class's reference count on every idle cancel of every item of the class, from every thread.
    unowned(unsafe) let lockClass: LockClass
    /// The owning object's address.
    let identity: UnsafeRawPointer

    init(class lockClass: LockClass, owner: AnyObject) {
        self.init(class: lockClass, identity: UnsafeRawPointer(Unmanaged.passUnretained(owner).toOpaque()))
    }

    /// A map whose identity is an address the caller chose (an object's that it belongs to).
    init(class lockClass: LockClass, identity: UnsafeRawPointer) {
        self.lockClass = lockClass
        self.identity = identity
    }

    /// As ``LockdepMap/acquire(subclass:trylock:file:line:)``.
    func acquire(file: StaticString = #fileID, line: UInt = #line) {
        guard Lockdep.isValidating else { return }
        Lockdep.acquire(
            node: lockClass.index * LockClass.maximumSubclasses, instance: identity, kind: .pseudo,
            trylock: false, file: file, line: line)
    }

    /// As ``LockdepMap/release(file:line:)``.
    func release(file: StaticString = #fileID, line: UInt = #line) {
        guard Lockdep.isValidating else { return }
        if !Lockdep.release(instance: identity) { LockdepMap.reportUnheldRelease(of: lockClass, file: file, line: line) }
    }
}
