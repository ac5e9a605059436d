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
public final class GroupDevice: RCUProtected, @unchecked Sendable, CustomStringConvertible {
    /// The device (`gdev->dev`).
    public let device: Device
    /// The name of its link in the group's devices directory (`gdev->name`).
    public let name: String
    /// The group it belongs to, for the worker: stable for the group_device's whole life, unlike
    /// `dev->iommu_group`, which the remove path clears.
    public let group: IOMMUGroup
    /// Whether the device is quarantined in the blocking domain.
    ///
    /// Guarded by: group.mutex.
    public internal(set) var blocked = false
    /// The domain the device is attached to.
    ///
    /// Guarded by: group.mutex.
    public internal(set) var attachedDomain: IOMMUDomain?
    /// Whether a reset is in progress (between reset prepare and reset done).
    ///
    /// Guarded by: group.mutex.
    public internal(set) var resetting = false
    /// Quarantines the device; queued by ``IOMMUSystem/reportDeviceBroken(_:)``.
    public let brokenWork: WorkItem
    /// Set by the first free; a second free is a model warning.
    ///
    /// Ordering: acquiring-and-releasing exchange, so that one free wins.
    let freed = Atomic<Bool>(false)

    /// `iommu_group_alloc_device()`'s allocation. Context: any.
    init(device: Device, name: String, group: IOMMUGroup) {
        self.device = device
        self.name = name
        self.group = group
        let owner = WorkOwner(system: group.system)
        // The closure captures one reference and nothing else, so it needs no context allocation.
        brokenWork = WorkItem(name: "gdev->broken_work", class: group.system.lockClasses.brokenWork) { _ in
            owner.run()
        }
        super.init()
        owner.device = self
    }

    public var description: String { "GroupDevice(\(name) in group \(group.id))" }
}

/// How the work function reaches its group_device without keeping it alive (which would be a
/// reference cycle through ``GroupDevice/brokenWork``). The kernel's `container_of()`.
final class WorkOwner: @unchecked Sendable {
    /// The system whose broken work this is.
    let system: IOMMUSystem
    /// Set once, right after the group_device's init and before its work can be queued; cleared by
    /// ARC only when the group_device is truly gone.
    weak var device: GroupDevice?

    init(system: IOMMUSystem) {
        self.system = system
    }

    /// The work function.
    func run() { system.brokenWorkFunction(self) }
}
