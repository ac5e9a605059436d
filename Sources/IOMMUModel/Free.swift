import KernelSync

extension IOMMUSystem {
    /// Frees an unlinked group_device: removes its sysfs links and emits its trace event, makes sure
    /// its `broken_work` can no longer run on it (how depends on ``variant``), and hands it to RCU.
    ///
    /// Kernel analogue: `__iommu_group_free_device()` with the series' work teardown:
    /// - freeUnderMutex: called with `group->mutex` held; `cancel_work_sync()`, then `kfree_rcu()`.
    /// - deferredCancel: `lockdep_assert_not_held()`, `cancel_work_sync()`, `kfree_rcu()`.
    /// - deferredDisable: `lockdep_assert_not_held()`, `synchronize_rcu()`, `disable_work_sync()`, then
    ///   the free: `kfree()` as in v4, or, with ``KernelSync/RCU/debugReclamation`` on, `kfree_rcu()`, so that
///   the quarantine still catches a late access.
    /// - deferredDisableRCU: `lockdep_assert_not_held()`, `disable_work_sync()`, `kfree_rcu()`.
    ///
    /// A second free of one group_device raises ``IOMMUWarning/doubleFree`` and does nothing else.
    ///
    /// Context: may sleep. `group->mutex` held in freeUnderMutex, not held otherwise (asserted);
    /// `gdev` is no longer on the group's list.
    public func freeGroupDevice(_ gdev: GroupDevice, in group: IOMMUGroup) {
        if !variant.freesUnderMutex { group.mutex.assertNotHeld() }
        guard !gdev.freed.exchange(true, ordering: .acquiringAndReleasing) else {
            warn(.doubleFree, "\(gdev) freed a second time")
            return
        }
        let device = gdev.device
        sysfs.remove("kernel/iommu_groups/\(group.id)/devices/\(gdev.name)")
        sysfs.remove("devices/\(device.name)/iommu_group")
        trace.record(.removeDeviceFromGroup(groupID: group.id, device: device.name))

        switch variant {
        case .freeUnderMutex, .deferredCancel:
            gdev.brokenWork.cancelSync()
        case .deferredDisable:
            hooks.freeWillSynchronize?(gdev)
            RCU.synchronize()
            gdev.brokenWork.disableSync()
        case .deferredDisableRCU:
            gdev.brokenWork.disableSync()
        }
        hooks.freeQuiescedWork?(gdev)

        counters.groupDevicesFreed.increment()
        if variant == .deferredDisable && !RCU.debugReclamation {
            // A grace period has passed already: v4's plain kfree(). Dropping the caller's reference is
            // the free (readers that found it have left their sections; ARC keeps any other holder safe).
            return
        }
        RCU.retire(gdev)
    }
}
