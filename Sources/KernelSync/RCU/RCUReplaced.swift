/// The object an ``RCUPointer/replace(with:holding:file:line:)`` unpublished, with the pointer's
/// reference to it: a reader that loaded the pointer before the replacement may still be using the
/// object, so that reference must not be dropped before a grace period.
///
/// Consume it with ``free()`` (the `kfree()` after `synchronize_rcu()`), ``retire(file:line:)``
/// (`kfree_rcu()`), or ``RCU/retire(_:along:file:line:)`` together with an element detached in the
/// same update; dropping it unconsumed retires it, so it is never released early.
///
/// Kernel analogue: the old pointer that `rcu_replace_pointer()` returns, which its caller frees
/// through RCU however suits it.
///
/// Frozen: the inlinable retire paths that consume it (``RCU/retire(_:along:file:line:)``) discard it.
@frozen
public struct RCUReplaced<Object: AnyObject>: ~Copyable, @unchecked Sendable {
    /// The pointer's reference (+1), or nil when the pointer was nil.
    @usableFromInline let reference: Unmanaged<Object>?
    /// The grace period that must elapse before ``reference`` may be dropped.
    @usableFromInline let replacedAt: GracePeriodCookie

    /// Takes over the pointer's reference to its previous object; the grace period starts counting now.
    /// Context: the object was just unpublished by an atomic exchange of the pointer, with no store
    /// readers can see since (the cookie relies on the exchange's barrier).
    @inlinable
    init(previous: Unmanaged<Object>?) {
        reference = previous
        replacedAt = previous == nil ? GracePeriodCookie(target: 0) : RCU.snapshotAfterAtomicUpdate()
    }

    /// The previous object, or nil. Valid as long as this value is.
    public var object: Object? { reference?.takeUnretainedValue() }

    /// Drops the pointer's reference: at once if a grace period has elapsed since the replacement
    /// (after ``RCU/synchronize(file:line:)``, say), otherwise after one. Does not poison the object, as
    /// ``RCUDetached/free()`` does not: a caller that wants debug reclamation to watch it retires it.
    ///
    /// Kernel analogue: the `kfree()` after `synchronize_rcu()`.
    ///
    /// Context: as ``RCU/retire(_:file:line:)`` when no grace period has elapsed.
    public consuming func free() {
        let replacedAt = replacedAt
        guard let reference = take() else { return }
        RCU.drop(retained: reference, after: replacedAt)
    }

    /// Retires the previous object: its reference is dropped (and with debug reclamation an
    /// ``RCUProtected`` object poisoned) after a grace period.
    ///
    /// Kernel analogue: `kfree_rcu()` of the old pointer.
    ///
    /// Context: as ``RCU/retire(_:file:line:)``.
    public consuming func retire(file: StaticString = #fileID, line: UInt = #line) {
        let replacedAt = replacedAt
        guard let reference = take() else { return }
        RCU.retire(retained: reference, after: replacedAt, file: file, line: line)
    }

    /// The reference, handed to the caller, who must retire it. Consumes the token.
    @inlinable
    consuming func take() -> Unmanaged<Object>? {
        let reference = reference
        discard self
        return reference
    }

    deinit {
        if let reference { RCU.retire(retained: reference, after: replacedAt, file: #fileID, line: #line) }
    }
}
