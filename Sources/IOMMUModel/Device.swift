import KernelSync
import Synchronization

/// A device that can sit behind an IOMMU.
///
/// Kernel analogue: the IOMMU part of `struct device`: `dev->iommu_group` and `dev->iommu`.
public final class Device: Sendable, CustomStringConvertible {
    /// The device's name, like "0000:00:01.0".
    public let name: String
    /// Which hardware group the device belongs to: devices with one topology share a group (what the
    /// driver's `device_group` callback decides from the PCI topology).
    public let topology: Int

    /// `dev->iommu_group`: set by probe (`iommu_init_device`) or `iommu_group_add_device`, cleared by
    /// `iommu_deinit_device` or the remove path. The device holds one group reference while it is set.
    /// Readers (the report path) load it inside a read section. Writers: probe holds
    /// `iommu_probe_device_lock`, removal the group's mutex, and `iommu_group_add_device` publishes it
    /// into the empty pointer before it takes the mutex, as the kernel does (a device's probe and its
    /// removal never run at once).
    let groupPointer = RCUPointer<IOMMUGroup>()
    /// `dev->iommu != NULL`: the device was set up by probe rather than added to a group by hand.
    ///
    /// Ordering: relaxed; written and read under the group mutex or the probe lock.
    let hasIOMMU = Atomic<Bool>(false)

    public init(name: String, topology: Int) {
        self.name = name
        self.topology = topology
    }

    /// The device's group, or nil when it is not probed (a snapshot).
    ///
    /// Kernel analogue: `iommu_group_get()` without the reference: the returned object stays valid
    /// (ARC), but it may have been removed from the device meanwhile.
    public var iommuGroup: IOMMUGroup? { RCU.withReadLock { groupPointer.dereference() } }

    public var description: String { "Device(\(name))" }
}
