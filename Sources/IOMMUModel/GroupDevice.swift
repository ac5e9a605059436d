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
    /// What ``brokenWork``'s function reaches this group_device through; linked by the first report.
    let workOwner: WorkOwner
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
        workOwner = owner
        super.init()
    }

    public var description: String { "GroupDevice(\(name) in group \(group.id))" }
}

/// How the work function reaches its group_device without keeping it alive (which would be a
/// reference cycle through ``GroupDevice/brokenWork``). The kernel's `container_of()`.
///
/// The weak reference is linked by the first report that queues the work, not at allocation: most
/// group_devices are never reported broken, and an object that is the target of a weak reference gets
/// a side table, which costs an allocation and sends every retain and release of it down the runtime's
/// slow path.
final class WorkOwner: @unchecked Sendable {
    /// The system whose broken work this is.
    let system: IOMMUSystem
    /// The group_device, once linked; ARC clears it when the group_device is truly gone. A
    /// Synchronization mutex (a futex word, not a validated lock): linking happens in atomic context.
    private let link = Mutex<WeakGroupDevice>(WeakGroupDevice())

    struct WeakGroupDevice {
        weak var device: GroupDevice?
        var linked = false
    }

    init(system: IOMMUSystem) {
        self.system = system
    }

    /// Links `gdev`, whose work this is, before its first queueing. Context: any; the caller holds a
    /// reference to `gdev`.
    func link(_ gdev: GroupDevice) {
        link.withLock { link in
            guard !link.linked else { return }
            link.device = gdev
            link.linked = true
        }
    }

    /// The group_device, or nil if it has been deallocated (or was never linked).
    var device: GroupDevice? { link.withLock { $0.device } }

    /// The work function.
    func run() { system.brokenWorkFunction(self) }
}
