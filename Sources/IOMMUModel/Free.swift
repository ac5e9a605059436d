import KernelSync

extension IOMMUSystem {
    /// Frees an unlinked group_device: removes its sysfs links and emits its trace event, makes sure
    /// its `broken_work` can no longer run on it (how depends on ``variant``), and hands it to RCU.
    ///
    /// Kernel analogue: `__iommu_group_free_device()` with the series' work teardown:
    /// - freeUnderMutex: called with `group->mutex` held; `cancel_work_sync()`, then `kfree_rcu()`.
    /// - deferredCancel: `lockdep_assert_not_held()`, `cancel_work_sync()`, `kfree_rcu()`.
    /// - deferredDisable: `lockdep_assert_not_held()`, `synchronize_rcu()`, `disable_work_sync()`, then
    ///   the free: `kfree()` as in v4, or, with ``KernelSync/RCU/debugReclamation`` on, `kfree_rcu()`, so
    ///   that the quarantine still catches a late access.
    /// - deferredDisableRCU: `lockdep_assert_not_held()`, `disable_work_sync()`, `kfree_rcu()`.
    ///
    /// A second free of one group_device raises ``IOMMUWarning/doubleFree`` and does nothing else.
    ///
    /// Context: may sleep. `group->mutex` held in freeUnderMutex, not held otherwise (asserted);
    /// `gdev` is no longer on the group's list.
    public func freeGroupDevice(_ gdev: GroupDevice, in group: IOMMUGroup) {
        guard quiesceForFree(gdev, in: group) else { return }
        if freesWithoutRCU { return }
        RCU.retire(gdev)
    }

    /// ``freeGroupDevice(_:in:)`` of a group_device the caller detached from its group's list, with
    /// the device's pointer to the group that the same removal cleared (``unbindGroup(_:_:)``): one
    /// deferred action retires the list's reference to the group_device and the pointer's to the group
    /// (not one each, nor one more for the group_device itself), and the free after deferredDisable's
    /// grace period drops both at once.
    ///
    /// Context: as ``freeGroupDevice(_:in:)``.
    func freeGroupDevice(
        _ detached: consuming RCUDetached<GroupDevice>, in group: IOMMUGroup, unbound: consuming RCUReplaced<IOMMUGroup>
    ) {
        guard detached.withElement({ quiesceForFree($0, in: group) }) else { return }
        if freesWithoutRCU {
            detached.free()
            unbound.free()
        } else {
            RCU.retire(detached, along: unbound)
        }
    }

    /// deferredDisable without debug reclamation: a grace period has passed already, so the free is
    /// v4's plain `kfree()`, dropping the references (readers that found the group_device have left
    /// their sections; ARC keeps any other holder safe). With debug reclamation the free is a
    /// `kfree_rcu()`, so that the quarantine still catches a late access.
    private var freesWithoutRCU: Bool { variant == .deferredDisable && !RCU.debugReclamation }

    /// The free up to the hand-over to RCU: the double-free check, the sysfs links and trace event, and
    /// the variant's work teardown. Returns false for a second free (warned).
    private func quiesceForFree(_ gdev: GroupDevice, in group: IOMMUGroup) -> Bool {
        if !variant.freesUnderMutex { group.mutex.assertNotHeld() }
        guard !gdev.freed.exchange(true, ordering: .acquiringAndReleasing) else {
            warn(.doubleFree, "\(gdev) freed a second time")
            return false
        }
        let device = gdev.device
        sysfs.remove("kernel/iommu_groups/\(group.id)/devices/\(gdev.name)")
        sysfs.remove("devices/\(device.name)/iommu_group")
        trace.record(.removeDeviceFromGroup(groupID: group.id, device: device.name))

        switch variant {
        case .freeUnderMutex, .deferredCancel:
            gdev.cancelBrokenWorkSync()
        case .deferredDisable:
            hooks.freeWillSynchronize?(gdev)
            RCU.synchronize()
            gdev.disableBrokenWorkSync()
        case .deferredDisableRCU:
            gdev.disableBrokenWorkSync()
        }
        hooks.freeQuiescedWork?(gdev)
        counters.groupDevicesFreed.increment()
        return true
    }
}
