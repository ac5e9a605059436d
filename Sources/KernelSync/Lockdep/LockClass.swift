/// A lock class: the unit the validator reasons about (the kernel's `struct lock_class`).
///
/// Every lock belongs to a class, and dependencies are recorded between classes, not instances: once
/// any `group->mutex` has been taken while holding any `broken_work`, the validator knows the order for
/// all of them. By default a class is keyed by the source line that creates the lock, like the kernel's
/// static `lock_class_key` in `mutex_init()`; create a `LockClass` explicitly where locks made at one line
/// play different roles, or locks made at different lines play the same one.
///
/// Kernel analogue: `struct lock_class_key` with `lockdep_set_class_and_name()`.
///
/// ```swift
/// let deviceLockClass = LockClass(name: "dev->mutex")
/// let lock = KernelMutex(class: deviceLockClass)
/// ```
///
/// - Note: Classes live for the whole process, as in the kernel; create them once, not per lock.
public final class LockClass: Sendable, CustomStringConvertible {
    /// The most subclasses (`mutex_lock_nested` levels) a class can have, as in the kernel.
    public static let maximumSubclasses = 8

    /// The name shown in reports.
    public let name: String
    /// Where the class was keyed: "File.swift:42" for an init-site class, "explicit" otherwise.
    public let site: String
    /// Dense index, assigned at registration; graph nodes are `index × maximumSubclasses + subclass`.
    @usableFromInline let index: Int
    /// Lock statistics of every lock of this class (lock_stat).
    public let statistics = LockStatistics()

    /// Creates an explicit class named `name`.
    public convenience init(name: String) {
        self.init(name: name, site: "explicit", index: LockClassRegistry.shared.reserveIndex())
        LockClassRegistry.shared.fill(self)
    }

    /// Creates a class at a reserved index; the caller registers it.
    init(name: String, site: String, index: Int) {
        self.name = name
        self.site = site
        self.index = index
    }

    /// The class keyed by a source line: every lock created at `file:line` shares it. The first lock
    /// created there names it.
    static func forSite(file: StaticString, line: UInt, name: String?) -> LockClass {
        LockClassRegistry.shared.classForSite(file: file, line: line, name: name)
    }

    public var description: String { name }

    /// The display name of a graph node: the class name, with "/n" for a non-zero subclass.
    static func nodeName(_ node: Int) -> String {
        let lockClass = LockClassRegistry.shared.lockClass(at: node / maximumSubclasses)
        let subclass = node % maximumSubclasses
        return subclass == 0 ? lockClass.name : "\(lockClass.name)/\(subclass)"
    }
}

/// Every class ever created, by index and by init site.
final class LockClassRegistry: @unchecked Sendable {
    static let shared = LockClassRegistry()

    private let lock = PthreadMutex()
    /// Guarded by: lock. Slot `i` is nil only between ``reserveIndex()`` and ``fill(_:)``.
    private var classes: [LockClass?] = []
    /// Guarded by: lock.
    private var bySite: [String: LockClass] = [:]
    /// Guarded by: lock. The same classes by the address of their file literal and their line: a lookup
    /// that builds no string, for objects created often at one site (work items, group mutexes).
    private var byLiteral: [SiteLiteral: LockClass] = [:]

    struct SiteLiteral: Hashable {
        let file: UnsafeRawPointer
        let line: UInt
    }

    func reserveIndex() -> Int {
        lock.withLock {
            classes.append(nil)
            return classes.count - 1
        }
    }

    func fill(_ lockClass: LockClass) {
        lock.withLock { classes[lockClass.index] = lockClass }
    }

    /// The class at `index`. Context: `index` belongs to a class that finished its init.
    func lockClass(at index: Int) -> LockClass {
        lock.withLock { classes[index]! }
    }

    /// Every registered class, in index order.
    var all: [LockClass] { lock.withLock { classes.compactMap { $0 } } }

    func classForSite(file: StaticString, line: UInt, name: String?) -> LockClass {
        let literal = file.hasPointerRepresentation
            ? SiteLiteral(file: UnsafeRawPointer(file.utf8Start), line: line) : nil
        return lock.withLock {
            if let literal, let existing = byLiteral[literal] { return existing }
            let site = "\(file):\(line)"
            let found: LockClass
            if let existing = bySite[site] {
                found = existing
            } else {
                found = LockClass(name: name ?? site, site: site, index: classes.count)
                classes.append(found)
                bySite[site] = found
            }
            if let literal { byLiteral[literal] = found }
            return found
        }
    }
}
