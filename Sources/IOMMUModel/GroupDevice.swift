import KernelSync
import Synchronization

/// A device's membership in a group, the element of the group's RCU device list.
///
/// Kernel analogue: `struct group_device` with the series' `blocked` and `broken_work`.
///
/// Readers (``IOMMUSystem/reportDeviceBroken(_:)``) find it under RCU; the broken work reaches it
/// through ``brokenWork``. Both call ``KernelSync/RCUProtected/assertLive(file:line:)`` on access, so with
/// ``KernelSync/RCU/debugReclamation`` on, an access after ``IOMMUSystem/freeGroupDevice(_:in:)`` has
/// been reclaimed is reported.
///
/// The fields guarded by the group mutex opt out of Swift's dynamic exclusivity checks: the mutex is
/// what makes their access exclusive (ThreadSanitizer checks that in the sanitizer runs), and the check
/// would cost a thread-local lookup on every access of the hot remove path.
public final class GroupDevice: RCUListElement, @unchecked Sendable, CustomStringConvertible {
    /// The device (`gdev->dev`).
    public let device: Device
    /// The name of its link in the group's devices directory (`gdev->name`).
    public let name: String
    /// The group it belongs to, for the worker: stable for the group_device's whole life, unlike
    /// `dev->iommu_group`, which the remove path clears.
    public let group: IOMMUGroup
    /// The domain the device is attached to.
    ///
    /// Guarded by: group.mutex.
    @exclusivity(unchecked) public internal(set) var attachedDomain: IOMMUDomain?
    /// Quarantines the device; queued by ``IOMMUSystem/reportDeviceBroken(_:)``.
    public let brokenWork: WorkItem
    // The one-byte fields come last, so that they share a word: the object is 83 bytes, which glibc
    // serves from a 96-byte chunk (it was 105 bytes, a 128-byte chunk).
    /// Whether the device is quarantined in the blocking domain.
    ///
    /// Guarded by: group.mutex.
    @exclusivity(unchecked) public internal(set) var blocked = false
    /// Whether a reset is in progress (between reset prepare and reset done).
    ///
    /// Guarded by: group.mutex.
    @exclusivity(unchecked) public internal(set) var resetting = false
    /// Set by the first free; a second free is a model warning.
    ///
    /// Ordering: acquiring-and-releasing exchange, so that one free wins.
    let freed = Atomic<Bool>(false)

    /// `iommu_group_alloc_device()`'s allocation. Context: any.
    init(device: __shared Device, name: String, group: __shared IOMMUGroup) {
        self.device = device
        self.name = name
        self.group = group
        // The closure captures one reference and nothing else, so it needs no context allocation. It
        // captures the group, not the system: the group's header line is this thread's already (the
        // retain for `self.group` just wrote it), while the system's is shared by every writer, and a
        // retain of it here and a release at the drop moved that line between the writers' cores twice
        // a cycle. The work finds its group_device through the item's context, which the first report
        // links (a weak reference made at allocation would give every group_device a side table, and
        // send all its retains and releases down the runtime's slow path).
        brokenWork = WorkItem(name: "gdev->broken_work", class: group.system.lockClasses.brokenWork) { [group] item in
            group.system.brokenWorkFunction(item)
        }
        super.init()
    }

    public var description: String { "GroupDevice(\(name) in group \(group.id))" }
}
