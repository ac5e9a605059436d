import Synchronization

/// A list that readers traverse inside read sections while an updater, holding the list's update lock,
/// adds, deletes and replaces elements.
///
/// Kernel analogue: a `list_head` used with `list_add_tail_rcu()`, `list_del_rcu()`,
/// `list_replace_rcu()`, `list_for_each_entry_rcu()` and, for the updater,
/// `list_for_each_entry_rcu(…, lockdep_is_held(lock))`.
///
/// ```swift
/// RCU.withReadLock { group.devices.forEach { $0.reportBroken() } }
/// group.mutex.withLock { group.devices.delete(device, holding: group.mutex) }
/// ```
///
/// Deleted and replaced elements are retired through ``RCU/retire(_:file:line:)``: a reader that found
/// one before it was unlinked may use it until its section ends.
///
/// Like the kernel's list, it is a singly linked chain of nodes that updates change in place (O(1) to
/// add at the tail, O(n) to find what to unlink): no copy of the list per update. A reader sees each
/// element that stays on the list for its whole traversal once, in order; an element added or removed
/// during the traversal may or may not be seen, as with `list_for_each_entry_rcu()`.
///
/// Ordering: a node's ``RCUListLink/next`` is stored with release by the updater (the new node's element and
/// its own `next` before its publication, as `rcu_assign_pointer()`) and loaded with acquire by
/// readers (publication before the reader's accesses; the kernel's `rcu_dereference()` is a consume).
/// The updater, who holds the update lock, loads it relaxed: the lock orders it after every earlier
/// update.
///
/// Ordering: the last release of a node. Each `next` owns one strong reference to the node it points to, as an `Unmanaged`
/// +1; the list owns the first node through ``head``. Unlinking a node swings its predecessor's `next`
/// to its successor (taking a new reference for it) but leaves the unlinked node's own `next` as it was,
/// so a reader standing on it still reaches the rest of the list, as with `list_del_rcu()`. The
/// predecessor's old reference to the unlinked node is never dropped by the updater: it goes to the
/// reclaimer, which drops it after a grace period. So no reader that loaded a pointer to a node inside
/// its section can race with the last release of that node — the same argument as
/// ``RCUPointer/assign(_:holding:file:line:)`` — and the node, in turn, keeps its element and its
/// successor alive until then. Elements are retired separately, by ``delete(_:holding:file:line:)`` and
/// ``replace(_:with:holding:file:line:)``, or by the caller of ``unlink(_:holding:file:line:)``.
public final class RCUList<Element: AnyObject>: @unchecked Sendable {
    /// The list head (`struct list_head`), whose `next` is the first node.
    private let head = RCUListLink()
    /// The last node, or ``head`` when the list is empty: where ``addTail(_:holding:file:line:)``
    /// links.
    ///
    /// Guarded by: the update lock (whichever the callers pass; the list does not know it). Opts out of
    /// dynamic exclusivity checks since the lock makes access exclusive.
    @exclusivity(unchecked) private var tail: RCUListLink

    public init() { tail = head }

    /// Calls `body` on each element, in order, for a reader.
    ///
    /// Kernel analogue: `list_for_each_entry_rcu()`.
    ///
    /// Context: inside a read section; with the validator on, a traversal outside one is reported.
    public func forEach<E: Error>(
        file: StaticString = #fileID, line: UInt = #line, _ body: (Element) throws(E) -> Void
    ) throws(E) {
        if Lockdep.isValidating && !RCU.isInReadSection {
            Lockdep.emit(RCUReportText.suspicious(
                "rcu_dereference() usage outside an RCU read-side critical section", site: "\(file):\(line)"))
        }
        var node = head.nextNode
        while let current = node {
            try body(unsafeDowncast(current.element, to: Element.self))
            node = current.nextNode
        }
    }

    /// Calls `body` on each element, in order, for the updater.
    ///
    /// Kernel analogue: `list_for_each_entry_rcu(pos, head, member, lockdep_is_held(lock))`.
    ///
    /// Context: `lock` held; with the validator on, a traversal without it is reported ("suspicious RCU
    /// usage") and still performed. `body` may unlink the element it is given (the traversal goes on
    /// from the unlinked node's `next`, which the unlink leaves in place).
    public func forEachLocked<E: Error>(
        holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line,
        _ body: (Element) throws(E) -> Void
    ) throws(E) {
        checkHeld(lock, what: "rcu_dereference_protected()", file: file, line: line)
        var node = head.nextNodeLocked
        while let current = node {
            // The strong reference keeps `current` alive if `body` unlinks it and a grace period ends
            // before the traversal moves on (the updater is not in a read section).
            try withExtendedLifetime(current) { () throws(E) in try body(unsafeDowncast(current.element, to: Element.self)) }
            node = current.nextNodeLocked
        }
    }

    /// Whether the list is empty, for the updater. Context: `lock` held (checked as in ``forEachLocked``).
    public func isEmpty(holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        checkHeld(lock, what: "rcu_dereference_protected()", file: file, line: line)
        return head.next.load(ordering: .relaxed) == 0
    }

    /// Appends `element`.
    ///
    /// Kernel analogue: `list_add_tail_rcu()`.
    ///
    /// Context: `lock` held (checked with the validator on).
    public func addTail(_ element: Element, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) {
        checkHeld(lock, what: "rcu_assign_pointer()", file: file, line: line)
        let node = RCUListNode(element)
        // Ordering: release, so that the node's initialisation comes before its publication.
        tail.next.store(RCUListLink.encode(node), ordering: .releasing)
        tail = node
    }

    /// Unlinks `element` (by identity) and retires it through RCU. Returns false when it is not in the
    /// list.
    ///
    /// Kernel analogue: `list_del_rcu()` followed by `kfree_rcu()`.
    ///
    /// Context: `lock` held (checked with the validator on). May sleep on a full reclamation backlog.
    @discardableResult
    public func delete(_ element: Element, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        guard unlink(element, holding: lock, file: file, line: line) else { return false }
        RCU.retire(element, file: file, line: line)
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
    /// (the list's node goes through a grace period).
    @discardableResult
    public func unlink(_ element: Element, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        checkHeld(lock, what: "rcu_assign_pointer()", file: file, line: line)
        guard let (previous, node) = find(element) else { return false }
        // Ordering: release, as every store of a `next`; the successor was published already.
        let unlinked = previous.next.exchange(RCUListLink.encode(node.nextNodeLocked), ordering: .releasing)
        if tail === node { tail = previous }
        retireNode(unlinked)
        return true
    }

    /// Puts `new` in the place of `old` and retires `old` through RCU. Returns false when `old` is not in
    /// the list.
    ///
    /// Kernel analogue: `list_replace_rcu()` followed by `kfree_rcu()`.
    ///
    /// Context: as ``delete(_:holding:file:line:)``.
    @discardableResult
    public func replace(
        _ old: Element, with new: Element, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line
    ) -> Bool {
        checkHeld(lock, what: "rcu_assign_pointer()", file: file, line: line)
        guard let (previous, node) = find(old) else { return false }
        let replacement = RCUListNode(new)
        replacement.next.store(RCUListLink.encode(node.nextNodeLocked), ordering: .relaxed)
        // Ordering: release, so that the replacement's element and `next` come before its publication.
        let unlinked = previous.next.exchange(RCUListLink.encode(replacement), ordering: .releasing)
        if tail === node { tail = replacement }
        retireNode(unlinked)
        RCU.retire(old, file: file, line: line)
        return true
    }

    /// The node holding `element` and the link that points to it. Context: the update lock held.
    private func find(_ element: Element) -> (RCUListLink, RCUListNode)? {
        var previous: RCUListLink = head
        while let node = previous.nextNodeLocked {
            if node.element === element { return (previous, node) }
            previous = node
        }
        return nil
    }

    /// Hands the reference a link held on an unlinked node to the reclaimer, which drops it after a grace
    /// period (see the type's documentation).
    private func retireNode(_ bits: UInt) {
        guard let raw = UnsafeRawPointer(bitPattern: bits) else { return }
        let node = Unmanaged<RCUListNode>.fromOpaque(raw).takeRetainedValue()
        Reclaimer.shared.enqueue(.release(RetiredObject(object: node)))
    }

    private func checkHeld(_ lock: KernelMutex, what: String, file: StaticString, line: UInt) {
        guard Lockdep.isValidating, !lock.isHeldByCurrentThread else { return }
        Lockdep.emit(RCUReportText.suspicious(
            "\(what) without holding \(lock.lockClass.name)", site: "\(file):\(line)", classes: [lock.lockClass]))
    }
}

/// The place a `next` pointer of an ``RCUList`` lives: the list's head, or a node.
private class RCUListLink {
    /// The next node as an `Unmanaged` +1 reference, or 0 at the end of the list.
    ///
    /// Ordering: see ``RCUList``'s documentation: release stores, acquire loads by readers, relaxed
    /// loads under the update lock.
    let next = Atomic<UInt>(0)

    final var nextNode: RCUListNode? { RCUListLink.decode(next.load(ordering: .acquiring)) }
    final var nextNodeLocked: RCUListNode? { RCUListLink.decode(next.load(ordering: .relaxed)) }

    deinit {
        // The last holder of a node gets here, when no reader can still reach it (see ``RCUList``).
        // The chain behind it is released iteratively, not by nested deinits: a node this link held
        // alone is emptied before it goes, a shared one is left to its other holders.
        // Ordering: relaxed; the last release of this object already ordered every earlier access.
        var bits = next.load(ordering: .relaxed)
        while let raw = UnsafeRawPointer(bitPattern: bits) {
            var node = Unmanaged<RCUListNode>.fromOpaque(raw).takeRetainedValue()
            guard isKnownUniquelyReferenced(&node) else { return }
            bits = node.next.exchange(0, ordering: .relaxed)
        }
    }

    static func decode(_ bits: UInt) -> RCUListNode? {
        guard let raw = UnsafeRawPointer(bitPattern: bits) else { return nil }
        return Unmanaged<RCUListNode>.fromOpaque(raw).takeUnretainedValue()
    }

    static func encode(_ node: RCUListNode?) -> UInt {
        guard let node else { return 0 }
        return UInt(bitPattern: Unmanaged.passRetained(node).toOpaque())
    }
}

private final class RCUListNode: RCUListLink {
    /// The element. Not generic, so that allocating a node needs no generic metadata lookup (the list's
    /// code is not specialised for its callers); the list casts it back.
    let element: AnyObject
    init(_ element: AnyObject) { self.element = element }
}
