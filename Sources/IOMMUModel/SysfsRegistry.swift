import KernelSync

/// The model's sysfs: the set of directories and links the paths create and remove, so that a test can
/// check that every path leaves it balanced.
///
/// Kernel analogue: the kernfs entries behind `sysfs_create_link()` / `sysfs_remove_link()` and the
/// group's kobject directory under `/sys/kernel/iommu_groups/`.
///
/// With bookkeeping off (``IOMMUSystem/Configuration/bookkeeping``) every call does nothing and succeeds.
public final class SysfsRegistry: @unchecked Sendable {
    private let enabled: Bool
    /// Serialises the entries (kernfs's own lock). Taken after `group->mutex` in the freeUnderMutex
    /// variant, never before a group mutex.
    private let lock: KernelMutex
    /// Guarded by: lock. Full paths, like "devices/dev0/iommu_group".
    private var entries: Set<String> = []

    init(enabled: Bool, lockClass: LockClass) {
        self.enabled = enabled
        lock = KernelMutex(class: lockClass)
    }

    /// Creates `path`. Returns false, creating nothing, when it exists already (`-EEXIST`).
    ///
    /// Kernel analogue: `sysfs_create_link()`, `kobject_add()`.
    ///
    /// Context: may sleep. `path` is built only with bookkeeping on (inlined, so that with bookkeeping
    /// off not even the closure that builds it is made).
    @inline(__always)
    func create(_ path: @autoclosure () -> String) -> Bool {
        guard enabled else { return true }
        let path = path()
        return lock.withLock { entries.insert(path).inserted }
    }

    /// Removes `path`; removing an entry that does not exist is a bug in the model (reported).
    ///
    /// Kernel analogue: `sysfs_remove_link()`, `kobject_del()`.
    ///
    /// Context: may sleep. `path` is built only with bookkeeping on (inlined, as ``create(_:)``).
    @inline(__always)
    func remove(_ path: @autoclosure () -> String) {
        guard enabled else { return }
        let path = path()
        let removed = lock.withLock { entries.remove(path) != nil }
        precondition(removed, "sysfs: removing \(path), which does not exist")
    }

    /// The entries that exist now, sorted.
    public var entriesSnapshot: [String] { lock.withLock { entries.sorted() } }

    /// Whether nothing is left: every created entry was removed.
    public var isEmpty: Bool { lock.withLock { entries.isEmpty } }
}
