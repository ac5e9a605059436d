import Synchronization

/// A pointer that readers load inside read sections while a writer replaces what it points to.
///
/// Kernel analogue: an `__rcu` pointer with `rcu_assign_pointer()` / `rcu_dereference()` /
/// `rcu_dereference_protected()`.
///
/// ```swift
/// let current = RCUPointer<Config>(Config())
/// RCU.withReadLock { use(current.dereference()!) }
/// configLock.withLock { current.assign(Config(…), holding: configLock) }
/// ```
///
/// The pointer owns one strong reference to its object. ``assign(_:holding:file:line:)`` never drops
/// the old object itself: it hands that reference to ``RCU/retire(_:file:line:)``, so the last release
/// comes after a grace period and can never race with a reader that has just loaded the pointer. This is
/// what makes ARC safe here; the API offers no way to take the old value back.
public final class RCUPointer<T: AnyObject>: @unchecked Sendable {
    /// The object's address as an `Unmanaged` +1 reference, or 0.
    ///
    /// Ordering: stores are releases (the object's initialisation before its publication), loads are
    /// acquires (publication before the reader's accesses; the kernel's `rcu_dereference` is a consume).
    @usableFromInline let storage: Atomic<UInt>

    /// Creates a pointer to `initial`, which it retains.
    public init(_ initial: T? = nil) {
        storage = Atomic(RCUPointer.encode(initial))
    }

    deinit {
        // Readers may still hold what they loaded (they retained it); the pointer's own reference goes
        // through a grace period like any replaced value.
        if let old = RCUPointer.decode(storage.load(ordering: .acquiring)) {
            RCU.retire(retained: old, file: #fileID, line: #line)
        }
    }

    /// Loads the pointer for a reader.
    ///
    /// Kernel analogue: `rcu_dereference()`.
    ///
    /// Context: inside a read section; with the validator on, a load outside one is reported ("suspicious
    /// RCU usage"). The object stays valid (not retired-and-freed) only until the section ends.
    ///
    /// - Warning: Outside a read section this is memory-unsafe, and with the validator off nothing
    ///   reports it. The load turns the stored address into a reference with `takeUnretainedValue`, whose
    ///   retain comes after the load; only a read section makes the grace period wait for this thread
    ///   in between. Without one, a concurrent ``assign(_:holding:file:line:)`` can retire the object and
    ///   the reclaimer drop the last reference between the load and the retain: a use-after-free, not a
    ///   stale value. Call it only between ``RCU/readLock(file:line:)`` and ``RCU/readUnlock(file:line:)``
    ///   (or inside ``RCU/withReadLock(file:line:_:)``).
    public func dereference(file: StaticString = #fileID, line: UInt = #line) -> T? {
        if Lockdep.isValidating && !RCU.isInReadSection {
            Lockdep.emit(RCUReportText.suspicious(
                "rcu_dereference() usage outside an RCU read-side critical section", site: "\(file):\(line)"))
        }
        return RCUPointer.decode(storage.load(ordering: .acquiring))?.takeUnretainedValue()
    }

    /// Loads the pointer for the updater, who holds `lock` and so excludes other assignments.
    ///
    /// Kernel analogue: `rcu_dereference_protected(p, lockdep_is_held(lock))`.
    ///
    /// Context: `lock` held; otherwise reported ("suspicious RCU usage").
    public func dereferenceProtected(holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) -> T? {
        checkHeld(lock, what: "rcu_dereference_protected()", file: file, line: line)
        return RCUPointer.decode(storage.load(ordering: .acquiring))?.takeUnretainedValue()
    }

    /// Publishes `new` and retires the previous object through RCU.
    ///
    /// Kernel analogue: `rcu_replace_pointer()` followed by `kfree_rcu()` of the old value.
    ///
    /// Context: `lock` held (the update-side lock that serialises writers); otherwise reported. May sleep
    /// when the reclamation backlog is full (see ``RCU/call(_:)``).
    public func assign(_ new: __shared T?, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) {
        if let old = exchange(new, holding: lock, what: "rcu_assign_pointer()", file: file, line: line) {
            // Under the update lock: what was handed back to this thread runs at its unlock. The
            // cookie right after the exchange, whose barrier it relies on.
            RCU.retire(retained: old, after: RCU.snapshotAfterAtomicUpdate(), file: file, line: line)
        }
    }

    /// Publishes `new` into an empty pointer without an update lock, for an updater that nothing else
    /// updates this pointer against: the caller serialises its updates some other way (a device's
    /// probe and its removal never run at once). Traps if the pointer is not empty, as it is when
    /// another updater got there first; replace a value with ``assign(_:holding:file:line:)``.
    ///
    /// Kernel analogue: `rcu_assign_pointer()` with no lock held, as `iommu_group_add_device()` sets
    /// `dev->iommu_group` before it takes `group->mutex`.
    ///
    /// Ordering: release on success, as every store of the pointer (the object's initialisation before
    /// its publication).
    public func publish(_ new: T, file: StaticString = #fileID, line: UInt = #line) {
        let bits = RCUPointer.encode(new)
        let (exchanged, _) = storage.compareExchange(
            expected: 0, desired: bits, successOrdering: .releasing, failureOrdering: .relaxed)
        if _slowPath(!exchanged) {
            RCUPointer.decode(bits)?.release()
            preconditionFailure("RCUPointer.publish at \(file):\(line): the pointer is not empty (another updater published first, or it was never cleared); replace a value with assign(_:holding:) under the update lock")
        }
    }

    /// Publishes `new` and hands the previous object back to the caller, with the pointer's reference to
    /// it, as a token that frees it through RCU: after a ``RCU/synchronize(file:line:)`` the caller can
    /// drop it at once (``RCUReplaced/free()``), and a removal that also detaches a list
    /// element can retire both in one deferred action (``RCU/retire(_:along:file:line:)``).
    ///
    /// Kernel analogue: `rcu_replace_pointer()`.
    ///
    /// Context: as ``assign(_:holding:file:line:)``.
    ///
    /// Inlinable, so that the caller's module specialises it: the remove path calls it inside its
    /// critical section.
    @inlinable
    public func replace(
        with new: __shared T?, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line
    ) -> RCUReplaced<T> {
        RCUReplaced(previous: exchange(new, holding: lock, what: "rcu_replace_pointer()", file: file, line: line))
    }

    /// Stores `new` (retained) for the updater who holds `lock`, and returns the previous object's
    /// reference (+1), which the caller must retire.
    @inlinable @inline(__always)
    func exchange(
        _ new: __shared T?, holding lock: KernelMutex, what: StaticString, file: StaticString, line: UInt
    ) -> Unmanaged<T>? {
        checkHeld(lock, what: what, file: file, line: line)
        return RCUPointer.decode(storage.exchange(RCUPointer.encode(new), ordering: .acquiringAndReleasing))
    }

    @inlinable @inline(__always)
    func checkHeld(_ lock: KernelMutex, what: StaticString, file: StaticString, line: UInt) {
        if Lockdep.isValidating { RCUReportText.reportUnlessHeld(lock, what: what, file: file, line: line) }
    }

    @inlinable
    static func encode(_ object: T?) -> UInt {
        guard let object else { return 0 }
        return UInt(bitPattern: Unmanaged.passRetained(object).toOpaque())
    }

    @inlinable
    static func decode(_ bits: UInt) -> Unmanaged<T>? {
        guard let raw = UnsafeRawPointer(bitPattern: bits) else { return nil }
        return Unmanaged<T>.fromOpaque(raw)
    }
}
