import KernelSync

extension IOMMUSystem {
    /// Prepares `device` for a reset: attaches it to the blocking domain so that it does no DMA while
    /// it resets. Returns whether the device was found in its group.
    ///
    /// Kernel analogue: `pci_dev_reset_iommu_prepare()` (the series).
    ///
    /// Context: may sleep; takes `group->mutex`.
    @discardableResult
    public func resetPrepare(_ device: Device) -> Bool {
        withGroupDevice(of: device) { gdev, group in
            gdev.resetting = true
            gdev.attachedDomain = blockingDomainLocked(group)
        }
    }

    /// Ends a reset: the device is healthy again, so its quarantine is lifted (``GroupDevice/blocked``
    /// cleared, `recovery_cnt` dropped) and it goes back to the group's domain. Returns whether the
    /// device was found in its group.
    ///
    /// Kernel analogue: `pci_dev_reset_iommu_done()` (the series).
    ///
    /// Context: may sleep; takes `group->mutex`.
    @discardableResult
    public func resetDone(_ device: Device) -> Bool {
        withGroupDevice(of: device) { gdev, group in
            gdev.resetting = false
            if gdev.blocked {
                gdev.blocked = false
                group.recoveryCount -= 1
            }
            gdev.attachedDomain = group.ownerCount > 0 ? blockingDomainLocked(group) : group.domain
            counters.resets.increment()
        }
    }

    /// Claims DMA ownership of `group` for a user-space driver: the group moves to the blocking domain
    /// while it is owned.
    ///
    /// Kernel analogue: `iommu_group_claim_dma_owner()`.
    ///
    /// Context: may sleep; takes `group->mutex`.
    public func claimDMAOwnership(of group: IOMMUGroup) {
        group.mutex.withLock {
            if group.ownerCount == 0 { group.domain = blockingDomainLocked(group) }
            group.ownerCount += 1
        }
    }

    /// Releases a DMA ownership claim; the last one moves the group back to its default domain.
    ///
    /// Kernel analogue: `iommu_group_release_dma_owner()`.
    ///
    /// Context: may sleep; takes `group->mutex`.
    public func releaseDMAOwnership(of group: IOMMUGroup) {
        group.mutex.withLock {
            precondition(group.ownerCount > 0, "iommu_group_release_dma_owner of \(group): not owned")
            group.ownerCount -= 1
            if group.ownerCount == 0 { group.domain = group.defaultDomain }
        }
    }

    /// Runs `body` with the group mutex held on the group_device of `device`; false if there is none.
    private func withGroupDevice(of device: Device, _ body: (GroupDevice, IOMMUGroup) -> Void) -> Bool {
        guard let group = device.iommuGroup else { return false }
        return group.mutex.withLock {
            guard let gdev = group.groupDevice(of: device) else { return false }
            body(gdev, group)
            return true
        }
    }
}
