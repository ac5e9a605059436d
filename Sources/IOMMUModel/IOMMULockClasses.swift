import KernelSync

/// The lock classes of one ``IOMMUSystem``: every group of a system shares one `group->mutex` class,
/// as every `struct iommu_group` shares the one static key of its `mutex_init()`.
///
/// The process-wide ``shared`` set is what a program uses. A test that needs its own findings apart
/// from those of tests running beside it gives its system a fresh set, and filters
/// ``KernelSync/Lockdep/reports(involving:)`` by it.
public struct IOMMULockClasses: Sendable {
    /// `iommu_probe_device_lock`.
    public let probeLock: LockClass
    /// `group->mutex`, for every group of the system.
    public let groupMutex: LockClass
    /// The table from topology to group (`ops->device_group` and `iommu_group_release`).
    public let groupTable: LockClass
    /// The model's sysfs registry.
    public let sysfs: LockClass
    /// The model's trace log.
    public let trace: LockClass
    /// `gdev->broken_work`, the pseudo-lock of every group_device's broken work.
    public let brokenWork: LockClass
    /// The tag the classes were made with, if any; it also names the system's threads.
    public let tag: String?

    /// The classes every system that does not ask for its own shares.
    public static let shared = IOMMULockClasses(tag: nil)

    /// A fresh set of classes; `tag`, when given, is appended to each name ("group->mutex#tag"), so
    /// reports say which set they are about.
    ///
    /// - Note: Classes live for the whole process; create a set per system that needs one, not per
    ///   operation.
    public init(tag: String?) {
        let suffix = tag.map { "#\($0)" } ?? ""
        self.tag = tag
        probeLock = LockClass(name: "iommu_probe_device_lock\(suffix)")
        groupMutex = LockClass(name: "group->mutex\(suffix)")
        groupTable = LockClass(name: "iommu_group_table\(suffix)")
        sysfs = LockClass(name: "kernfs\(suffix)")
        trace = LockClass(name: "iommu_trace\(suffix)")
        brokenWork = LockClass(name: "(work_completion)gdev->broken_work\(suffix)")
    }

    /// Every class of the set.
    public var all: [LockClass] { [probeLock, groupMutex, groupTable, sysfs, trace, brokenWork] }
}
