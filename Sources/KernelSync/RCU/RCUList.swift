import Synchronization

/// A list that readers traverse inside read sections while an updater, holding the list's update lock,
/// adds, deletes and replaces elements.
///
/// Kernel analogue: a `list_head` used with `list_add_tail_rcu()`, `list_del_rcu()`,
/// `list_replace_rcu()`, `list_for_each_entry_rcu()` and, for the updater,
/// `list_for_each_entry_rcu(…, lockdep_is_held(lock))`.
///
/// ```swift
/// final class GroupDevice: RCUListElement { … }      // embeds the link, as a struct embeds list_head
/// RCU.withReadLock { group.devices.forEach { $0.reportBroken() } }
/// group.mutex.withLock { group.devices.delete(device, holding: group.mutex) }
/// ```
///
/// Deleted and replaced elements are retired through ``RCU/retire(_:file:line:)``: a reader that found
/// one before it was unlinked may use it until its section ends.
///
/// Like the kernel's list, it is intrusive: elements subclass ``RCUListElement``, which carries the
/// `next` link, so adding an element allocates nothing and updates change the chain in place (O(1) to
/// add at the tail, O(n) to find what to unlink). An element is on at most one list, once: adding one
/// that is or was listed is a programming error and traps. A reader sees each element that stays on the
/// list for its whole traversal once, in order; an element added or removed during the traversal may or
/// may not be seen, as with `list_for_each_entry_rcu()`.
///
/// Ordering: an element's `next` is stored with release by the updater (the new element's
/// initialisation and its own `next` before its publication, as `rcu_assign_pointer()`) and loaded with
/// acquire by readers (publication before the reader's accesses; the kernel's `rcu_dereference()` is a
/// consume). The updater, who holds the update lock, loads it relaxed: the lock orders it after every
/// earlier update.
///
/// Ordering: the last release of an element. Each `next` owns one strong reference to the element it
/// points to, as an `Unmanaged` +1; the list's head owns the first. Unlinking an element swings its
/// predecessor's `next` to its successor (taking a new reference for it) but leaves the unlinked
/// element's own `next` as it was, so a reader standing on it still reaches the rest of the list, as
/// with `list_del_rcu()`. The predecessor's old reference to the unlinked element is never dropped by
/// the updater: it goes to the reclaimer, which drops it after a grace period (and does not poison the
/// element: that is its retire's business), or, with ``detach(_:holding:file:line:)``, to the caller as
/// an ``RCUDetached`` that can only be retired or dropped after a grace period. So no reader that loaded a pointer to an element inside its
/// section can race with its last release — the same argument as
/// ``RCUPointer/assign(_:holding:file:line:)`` — and the element, in turn, keeps its successor alive
/// until then. Elements are retired separately, by ``delete(_:holding:file:line:)`` and
/// ``replace(_:with:holding:file:line:)``, or by the caller of ``unlink(_:holding:file:line:)``.
public final class RCUList<Element: RCUListElement>: @unchecked Sendable {
    /// The list head (`struct list_head`): a bare element whose `next` is the first element.
    @usableFromInline let head = RCUListElement()
    /// Keeps ``tail``, which every addition and most removals store to, off the line of ``head``, which
    /// every reader loads on every traversal. Beside each other, one writer and one reader walking a
    /// 4-group system's lists ran at half the writer's speed and three quarters of the reader's
    /// (profile driver, deferredDisableRCU, one writer and one reader).
    private let readerLineGap = CacheLinePadding()
    /// The last element, or ``head`` when the list is empty: where ``addTail(_:holding:file:line:)``
    /// links.
    ///
    /// Guarded by: the update lock (whichever the callers pass; the list does not know it). Opts out of
    /// dynamic exclusivity checks since the lock makes access exclusive. Unowned: the tail is always
    /// ``head`` or an element the list holds (through its predecessor's `next`), and moves back before
    /// that element is detached; a counted reference here cost two retains and two releases a cycle.
    @usableFromInline @exclusivity(unchecked) unowned(unsafe) var tail: RCUListElement

    public init() { tail = head }

    /// Calls `body` on each element, in order, for a reader.
    ///
    /// Kernel analogue: `list_for_each_entry_rcu()`.
    ///
    /// Context: inside a read section; with the validator on, a traversal outside one is reported.
    @inlinable
    public func forEach<E: Error>(
        file: StaticString = #fileID, line: UInt = #line, _ body: (Element) throws(E) -> Void
    ) throws(E) {
        // Inlinable, so that the traversal is specialised in the reader's module: unspecialised, it
        // looked up generic metadata on every call.
        if Lockdep.isValidating && !RCU.isInReadSection { reportTraversalOutsideReadSection(file: file, line: line) }
        // No reference counting on the way: a reader must not write shared memory, and a retain and
        // release of each element would bounce its reference count between the reader's CPU and the
        // updater's. The read section keeps every element it can reach alive (see the type's
        // documentation), so each is lent to `body` without a retain.
        var failure: E?
        var bits = head.next.load(ordering: .acquiring)
        while let raw = UnsafeRawPointer(bitPattern: bits) {
            bits = Unmanaged<RCUListElement>.fromOpaque(raw)._withUnsafeGuaranteedRef { current -> UInt in
                do throws(E) {
                    try body(unsafeDowncast(current, to: Element.self))
                } catch {
                    failure = error
                    return 0
                }
                return current.next.load(ordering: .acquiring)
            }
        }
        if let failure { throw failure }
    }

    @usableFromInline @inline(never)
    func reportTraversalOutsideReadSection(file: StaticString, line: UInt) {
        Lockdep.emit(RCUReportText.suspicious(
            "rcu_dereference() usage outside an RCU read-side critical section", site: "\(file):\(line)"))
    }

    /// Calls `body` on each element, in order, for the updater.
    ///
    /// Kernel analogue: `list_for_each_entry_rcu(pos, head, member, lockdep_is_held(lock))`.
    ///
    /// Context: `lock` held; with the validator on, a traversal without it is reported ("suspicious RCU
    /// usage") and still performed. `body` may unlink the element it is given (the traversal goes on
    /// from the unlinked element's `next`, which the unlink leaves in place).
    public func forEachLocked<E: Error>(
        holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line,
        _ body: (Element) throws(E) -> Void
    ) throws(E) {
        checkHeld(lock, what: "rcu_dereference_protected()", file: file, line: line)
        var element = head.nextElementLocked
        while let current = element {
            // The strong reference keeps `current` alive if `body` unlinks it and a grace period ends
            // before the traversal moves on (the updater is not in a read section).
            try body(unsafeDowncast(current, to: Element.self))
            element = current.nextElementLocked
        }
    }

    /// The first element for which `predicate` is true, for the updater; nil when there is none.
    ///
    /// Kernel analogue: a `list_for_each_entry()` search under the update lock.
    ///
    /// Context: `lock` held (checked as in ``forEachLocked(holding:file:line:_:)``). `predicate` must not
    /// change the list: the walk lends it each element without a retain (the list's own reference keeps
    /// a listed element alive while the lock is held), and only the element returned is retained.
    @inlinable
    public func first(
        holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line,
        where predicate: (Element) -> Bool
    ) -> Element? {
        checkHeld(lock, what: "rcu_dereference_protected()", file: file, line: line)
        guard let previous = predecessor(where: predicate) else { return nil }
        let bits = previous._withUnsafeGuaranteedRef { $0.next.load(ordering: .relaxed) }
        return unsafeDowncast(Unmanaged<RCUListElement>.fromOpaque(UnsafeRawPointer(bitPattern: bits)!).takeUnretainedValue(), to: Element.self)
    }

    /// Whether the list is empty, for the updater. Context: `lock` held (checked as in ``forEachLocked``).
    ///
    /// Always inlined: it is one load (`list_empty()`), and a call cost the remove path's critical
    /// section twenty instructions more, most of them the call's frame.
    @inlinable @inline(__always)
    public func isEmpty(holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        checkHeld(lock, what: "rcu_dereference_protected()", file: file, line: line)
        return head.next.load(ordering: .relaxed) == 0
    }

    /// Appends `element`, which must never have been on a list.
    ///
    /// Kernel analogue: `list_add_tail_rcu()`.
    ///
    /// Context: `lock` held (checked with the validator on).
    ///
    /// Inlinable, so that the caller's module specialises it: the generic call cost the probe's
    /// critical section more than the addition itself.
    @inlinable
    public func addTail(_ element: Element, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) {
        checkHeld(lock, what: "rcu_assign_pointer()", file: file, line: line)
        element.claimForList(file: file, line: line)
        // Ordering: release, so that the element's initialisation comes before its publication.
        tail.next.store(RCUListElement.encode(element), ordering: .releasing)
        tail = element
    }

    /// Unlinks `element` (by identity) and retires it through RCU. Returns false when it is not in the
    /// list.
    ///
    /// Kernel analogue: `list_del_rcu()` followed by `kfree_rcu()`.
    ///
    /// Context: `lock` held (checked with the validator on). May sleep on a full reclamation backlog.
    @discardableResult
    public func delete(_ element: Element, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        guard let detached = detach(element, holding: lock, file: file, line: line) else { return false }
        detached.retire(file: file, line: line)
        return true
    }

    /// Unlinks `element` (by identity) without retiring it: the caller owns it now, and must not free it
    /// before a grace period has passed (``RCU/retire(_:file:line:)`` or ``RCU/synchronize(file:line:)``),
    /// since readers that found it before the unlink may still use it. Returns false when it is not in
    /// the list.
    ///
    /// Kernel analogue: `list_del_rcu()` alone, for a caller that frees the element later, after
    /// dropping the update lock (`__iommu_group_remove_device`).
    ///
    /// Context: `lock` held (checked with the validator on). May sleep on a full reclamation backlog
    /// (the list's reference to the element goes through a grace period).
    @discardableResult
    public func unlink(_ element: Element, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        guard let detached = detach(element, holding: lock, file: file, line: line) else { return false }
        detached.free()
        return true
    }

    /// Unlinks `element` (by identity) and hands the caller the list's own reference to it, which
    /// readers that found the element before the unlink may still depend on: the caller then retires
    /// the element with that reference (one deferred action instead of two) or frees it after a grace
    /// period. Returns nil when the element is not in the list.
    ///
    /// Kernel analogue: `list_del_rcu()`, for a caller that frees the element later with `kfree_rcu()`
    /// or after `synchronize_rcu()` (`__iommu_group_remove_device`).
    ///
    /// Context: `lock` held (checked with the validator on).
    public func detach(_ element: Element, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) -> RCUDetached<Element>? {
        checkHeld(lock, what: "rcu_assign_pointer()", file: file, line: line)
        guard let previous = predecessor(where: { $0 === element }) else { return nil }
        return unlink(after: previous)
    }

    /// ``detach(_:holding:file:line:)`` of the first element that satisfies `predicate`, found and
    /// unlinked in one walk, with no reference counting on the way. Returns nil when none does.
    ///
    /// Kernel analogue: `list_for_each_entry()` to the entry, then `list_del_rcu()` on it.
    ///
    /// Context: as ``detach(_:holding:file:line:)``.
    @inlinable
    public func detachFirst(
        holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line,
        where predicate: (Element) -> Bool
    ) -> RCUDetached<Element>? {
        checkHeld(lock, what: "rcu_assign_pointer()", file: file, line: line)
        guard let previous = predecessor(where: predicate) else { return nil }
        return unlink(after: previous)
    }

    /// Unlinks the element after `previous` and returns it with the list's reference. Context: the
    /// update lock held; `previous` is listed (or the head) and has a successor.
    @inlinable
    func unlink(after previous: Unmanaged<RCUListElement>) -> RCUDetached<Element> {
        let unlinked = previous._withUnsafeGuaranteedRef { previous in
            let bits = previous.next.load(ordering: .relaxed)
            let element = Unmanaged<RCUListElement>.fromOpaque(UnsafeRawPointer(bitPattern: bits)!)
            // Ordering: release, as every store of a `next`; the successor was published already.
            return previous.next.exchange(element._withUnsafeGuaranteedRef { $0.retainedNextBits }, ordering: .releasing)
        }
        if UInt(bitPattern: Unmanaged.passUnretained(tail).toOpaque()) == unlinked {
            tail = previous.takeUnretainedValue()
        }
        return RCUDetached(unlinkedLink: unlinked)
    }

    /// Puts `new`, which must never have been on a list, in the place of `old` and retires `old` through
    /// RCU. Returns false when `old` is not in the list.
    ///
    /// Kernel analogue: `list_replace_rcu()` followed by `kfree_rcu()`.
    ///
    /// Context: as ``delete(_:holding:file:line:)``.
    @discardableResult
    public func replace(
        _ old: Element, with new: Element, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line
    ) -> Bool {
        checkHeld(lock, what: "rcu_assign_pointer()", file: file, line: line)
        guard let previous = predecessor(where: { $0 === old }) else { return false }
        new.claimForList(file: file, line: line)
        new.next.store(old.retainedNextBits, ordering: .relaxed)
        // Ordering: release, so that the replacement's initialisation and `next` come before its
        // publication.
        let unlinked = previous._withUnsafeGuaranteedRef { $0.next.exchange(RCUListElement.encode(new), ordering: .releasing) }
        if tail === old { tail = new }
        RCUDetached<Element>(unlinkedLink: unlinked).retire(file: file, line: line)
        return true
    }

    /// The updater's walk: the element (or the head) whose `next` is the first element that satisfies
    /// `predicate`, or nil. Context: the update lock held.
    ///
    /// It lends each element to `predicate` without a retain: listed elements are kept alive by the
    /// list's own references, which only the lock holder changes.
    @inlinable
    func predecessor(where predicate: (Element) -> Bool) -> Unmanaged<RCUListElement>? {
        var previous = Unmanaged.passUnretained(head)
        while true {
            let bits = previous._withUnsafeGuaranteedRef { $0.next.load(ordering: .relaxed) }
            guard let raw = UnsafeRawPointer(bitPattern: bits) else { return nil }
            let current = Unmanaged<RCUListElement>.fromOpaque(raw)
            if current._withUnsafeGuaranteedRef({ predicate(unsafeDowncast($0, to: Element.self)) }) { return previous }
            previous = current
        }
    }

    @inlinable @inline(__always)
    func checkHeld(_ lock: KernelMutex, what: StaticString, file: StaticString, line: UInt) {
        if Lockdep.isValidating { RCUReportText.reportUnlessHeld(lock, what: what, file: file, line: line) }
    }
}

/// The base class of ``RCUList`` elements: the link they embed, as a kernel structure embeds its
/// `struct list_head`. Subclass it (it is an ``RCUProtected``, so debug reclamation covers elements).
open class RCUListElement: RCUProtected, @unchecked Sendable {
    /// Set by the first ``RCUList/addTail(_:holding:file:line:)`` or ``RCUList/replace(_:with:holding:file:line:)``
    /// that lists the element. Ordering: relaxed; written under the list's update lock, and an element
    /// listed twice is a bug in the caller, caught even when two lists (two locks) race for it. First,
    /// so that it shares a word with ``RCUProtected``'s one-byte lifecycle.
    private let listed = Atomic<Bool>(false)
    /// The next element as an `Unmanaged` +1 reference, or 0 at the end of the list.
    ///
    /// Ordering: see ``RCUList``'s documentation: release stores, acquire loads by readers, relaxed
    /// loads under the update lock.
    @usableFromInline let next = Atomic<UInt>(0)

    public override init() {}

    deinit {
        // The last holder of an element gets here, when no reader can still reach it (see ``RCUList``).
        // The chain behind it is released iteratively, not by nested deinits: an element this link held
        // alone is emptied before it goes, a shared one is left to its other holders.
        // Ordering: relaxed; the last release of this object already ordered every earlier access.
        var bits = next.load(ordering: .relaxed)
        while let raw = UnsafeRawPointer(bitPattern: bits) {
            var element = Unmanaged<RCUListElement>.fromOpaque(raw).takeRetainedValue()
            guard isKnownUniquelyReferenced(&element) else { return }
            bits = element.next.exchange(0, ordering: .relaxed)
        }
    }

    final var nextElement: RCUListElement? { RCUListElement.decode(next.load(ordering: .acquiring)) }
    final var nextElementLocked: RCUListElement? { RCUListElement.decode(next.load(ordering: .relaxed)) }
    /// ``next`` with a reference of its own taken on the element it points to, for a link being copied
    /// (the updater's, under the list's lock). One retain, rather than the retain and release of going
    /// through a strong reference.
    @usableFromInline
    final var retainedNextBits: UInt {
        let bits = next.load(ordering: .relaxed)
        if let raw = UnsafeRawPointer(bitPattern: bits) { _ = Unmanaged<RCUListElement>.fromOpaque(raw).retain() }
        return bits
    }

    /// Marks the element listed; traps if it was listed before.
    @usableFromInline
    final func claimForList(file: StaticString, line: UInt) {
        let (exchanged, _) = listed.compareExchange(expected: false, desired: true, ordering: .relaxed)
        precondition(exchanged, "RCUList: \(objectName) added at \(file):\(line) is or was on a list already; an element is listed once (a reader may still stand on it)")
    }

    static func decode(_ bits: UInt) -> RCUListElement? {
        guard let raw = UnsafeRawPointer(bitPattern: bits) else { return nil }
        return Unmanaged<RCUListElement>.fromOpaque(raw).takeUnretainedValue()
    }

    @inlinable
    static func encode(_ element: RCUListElement?) -> UInt {
        guard let element else { return 0 }
        return UInt(bitPattern: Unmanaged.passRetained(element).toOpaque())
    }
}

/// An element ``RCUList/detach(_:holding:file:line:)`` took off its list, with the list's reference to
/// it: a reader that found the element before the detach may still be using it, so that reference must
/// not be dropped before a grace period. Consume it with ``RCU/retire(_:file:line:)`` (`kfree_rcu()`:
/// dropped, and with debug reclamation poisoned, after a grace period) or ``free()``; dropping it
/// unconsumed does what ``free()`` does, so it is never released early.
///
/// Frozen: the inlinable retire paths that consume it (``RCU/retire(_:along:file:line:)``) discard it.
@frozen
public struct RCUDetached<Element: RCUListElement>: ~Copyable, @unchecked Sendable {
    /// The list's reference (+1).
    @usableFromInline let reference: Unmanaged<Element>
    /// The grace period that must elapse before ``reference`` may be dropped.
    @usableFromInline let detachedAt: GracePeriodCookie

    /// Takes over the reference that `bits`, the old value of the `next` that pointed at the element,
    /// held; the grace period starts counting now. Context: the element was just unlinked by an atomic
    /// exchange of that `next`, with no store readers can see since (the cookie relies on the
    /// exchange's barrier; the list's `tail`, which readers never load, may have been stored).
    @inlinable
    init(unlinkedLink bits: UInt) {
        reference = Unmanaged<Element>.fromOpaque(UnsafeRawPointer(bitPattern: bits)!)
        detachedAt = RCU.snapshotAfterAtomicUpdate()
    }

    /// The element.
    public var element: Element { reference.takeUnretainedValue() }

    /// Calls `body` with the element, lent without a retain (this value holds a reference to it).
    public func withElement<R>(_ body: (Element) throws -> R) rethrows -> R {
        try reference._withUnsafeGuaranteedRef(body)
    }

    /// Drops the list's reference: at once if a grace period has elapsed since the detach (after
    /// ``RCU/synchronize(file:line:)``, say), otherwise after one. Does not poison the element.
    ///
    /// Kernel analogue: the `kfree()` after `synchronize_rcu()`.
    public consuming func free() {
        let reference = reference
        let detachedAt = detachedAt
        discard self
        RCU.drop(retained: reference, after: detachedAt)
    }

    /// Hands the list's reference and `replaced`'s to the reclaimer as one retire of both (one retire of
    /// the element when `replaced` holds nothing). Context: as ``RCU/retire(_:file:line:)``.
    /// The callback waits for the later of the two tokens' cookies, which were taken after their
    /// updates: no fresh snapshot (and its fence) is needed.
    @inlinable
    consuming func retire<Other>(along replaced: consuming RCUReplaced<Other>, file: StaticString, line: UInt) {
        let reference = reference
        let detachedAt = detachedAt
        discard self
        let replacedAt = replaced.replacedAt
        if let other = replaced.take() {
            RCU.retire(retained: RetiredObject.erase(reference), and: RetiredObject.erase(other),
                       after: max(detachedAt, replacedAt), file: file, line: line)
        } else {
            RCU.retire(retained: reference, after: detachedAt, file: file, line: line)
        }
    }

    /// Hands the list's reference to the reclaimer as a retire of the element, after the grace period
    /// the detach named. Context: as ``RCU/retire(_:file:line:)``.
    @inlinable
    consuming func retire(file: StaticString, line: UInt) {
        let reference = reference
        let detachedAt = detachedAt
        discard self
        RCU.retire(retained: reference, after: detachedAt, file: file, line: line)
    }

    deinit { RCU.drop(retained: reference, after: detachedAt) }
}
