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
/// - Note: Unlike the kernel's linked list, each update publishes a new immutable array (copy on
///   write, O(n) per update), so a reader sees one consistent version of the whole list. The lists this
///   library is built for (devices of a group) are short and read far more than written.
public final class RCUList<Element: AnyObject>: @unchecked Sendable {
    private final class Version {
        let elements: [Element]
        init(_ elements: [Element]) { self.elements = elements }
    }

    private let head = RCUPointer<Version>(Version([]))

    public init() {}

    /// Calls `body` on each element, in order, for a reader.
    ///
    /// Kernel analogue: `list_for_each_entry_rcu()`.
    ///
    /// Context: inside a read section; with the validator on, a traversal outside one is reported.
    public func forEach<E: Error>(
        file: StaticString = #fileID, line: UInt = #line, _ body: (Element) throws(E) -> Void
    ) throws(E) {
        guard let version = head.dereference(file: file, line: line) else { return }
        for element in version.elements { try body(element) }
    }

    /// Calls `body` on each element, in order, for the updater.
    ///
    /// Kernel analogue: `list_for_each_entry_rcu(pos, head, member, lockdep_is_held(lock))`.
    ///
    /// Context: `lock` held; with the validator on, a traversal without it is reported ("suspicious RCU
    /// usage") and still performed.
    public func forEachLocked<E: Error>(
        holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line,
        _ body: (Element) throws(E) -> Void
    ) throws(E) {
        for element in elements(holding: lock, file: file, line: line) { try body(element) }
    }

    /// Whether the list is empty, for the updater. Context: `lock` held (checked as in ``forEachLocked``).
    public func isEmpty(holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        elements(holding: lock, file: file, line: line).isEmpty
    }

    /// Appends `element`.
    ///
    /// Kernel analogue: `list_add_tail_rcu()`.
    ///
    /// Context: `lock` held (checked with the validator on).
    public func addTail(_ element: Element, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) {
        publish(elements(holding: lock, file: file, line: line) + [element], holding: lock, file: file, line: line)
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
    /// Context: `lock` held (checked with the validator on).
    @discardableResult
    public func unlink(_ element: Element, holding lock: KernelMutex, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        var elements = elements(holding: lock, file: file, line: line)
        guard let index = elements.firstIndex(where: { $0 === element }) else { return false }
        elements.remove(at: index)
        publish(elements, holding: lock, file: file, line: line)
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
        var elements = elements(holding: lock, file: file, line: line)
        guard let index = elements.firstIndex(where: { $0 === old }) else { return false }
        elements[index] = new
        publish(elements, holding: lock, file: file, line: line)
        RCU.retire(old, file: file, line: line)
        return true
    }

    private func elements(holding lock: KernelMutex, file: StaticString, line: UInt) -> [Element] {
        head.dereferenceProtected(holding: lock, file: file, line: line)?.elements ?? []
    }

    private func publish(_ elements: [Element], holding lock: KernelMutex, file: StaticString, line: UInt) {
        head.assign(Version(elements), holding: lock, file: file, line: line)
    }
}
