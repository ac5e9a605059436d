import KernelSync

extension IOMMUSystem {
    /// Allocates a group that no topology leads to, holding one reference for the caller: a group a
    /// driver manages itself (VFIO's no-IOMMU groups, the benchmark's groups).
    ///
    /// Kernel analogue: `iommu_group_alloc()`.
    ///
    /// Context: may sleep.
    public func allocGroup() -> IOMMUGroup {
        groupTableLock.withLock { newGroup(topology: -1) }
    }

    /// The group a device of `topology` joins, with a reference for the caller: the existing one, or a
    /// new one.
    ///
    /// Kernel analogue: the driver's `ops->device_group()` (`generic_device_group`,
    /// `pci_device_group`), which returns a group reference.
    ///
    /// Context: may sleep.
    func deviceGroup(topology: Int) -> IOMMUGroup {
        groupTableLock.withLock {
            if let group = groupsByTopology[topology], group.tryGet() { return group }
            let group = newGroup(topology: topology)
            groupsByTopology[topology] = group
            return group
        }
    }

    /// `iommu_group_alloc()`'s body. Context: groupTableLock held.
    private func newGroup(topology: Int) -> IOMMUGroup {
        groupTableLock.assertHeld()
        let group = IOMMUGroup(system: self, id: nextGroupID, topology: topology)
        nextGroupID += 1
        let created = sysfs.create("kernel/iommu_groups/\(group.id)")
        precondition(created, "sysfs: kernel/iommu_groups/\(group.id) exists already")
        counters.groupsAllocated.increment()
        return group
    }

    /// The last reference to `group` went: take it out of the table and its sysfs directory, and free
    /// it after a grace period (readers may still be looking at it).
    ///
    /// Kernel analogue: `iommu_group_release()` (which frees at once; the model defers it, see
    /// DESIGN.md).
    ///
    /// Context: may sleep; called by ``IOMMUGroup/put()``.
    func releaseGroup(_ group: IOMMUGroup) {
        group.mutex.assertNotHeld()
        groupTableLock.withLock {
            if groupsByTopology[group.topology] === group { groupsByTopology[group.topology] = nil }
        }
        sysfs.remove("kernel/iommu_groups/\(group.id)")
        let counters = counters
        RCU.call {
            group.markFreed()
            counters.groupsFreed.increment()
        }
    }
}
