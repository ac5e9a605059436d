import KernelSync

extension IOMMUSystem {
    /// Reports that `device` stopped answering (an ATC invalidation timed out): finds its group_device
    /// under RCU and queues its `broken_work`, which quarantines it. Never sleeps, never takes
    /// `group->mutex`. Returns whether the work was queued (false: the device is in no group, or its
    /// work is pending already or disabled because the device is being removed).
    ///
    /// Kernel analogue: `iommu_report_device_broken()` (the series, patch 07/11), called by the SMMU
    /// driver from its event-queue interrupt handler; the model enters atomic context itself, as that
    /// handler does.
    ///
    /// Context: any, atomic context included (it runs in one).
    @discardableResult
    public func reportDeviceBroken(_ device: Device) -> Bool {
        Lockdep.withAtomicContext("hardirq") {
            RCU.withReadLock {
                guard let group = device.groupPointer.dereference() else { return false }
                if group.isFreed {
                    warn(.groupUseAfterFree, "\(group) reached through \(device) after its free")
                }
                var found: GroupDevice?
                group.devices.forEach { gdev in
                    if found == nil && gdev.device === device { found = gdev }
                }
                guard let gdev = found else { return false }
                hooks.reportFoundDevice?(gdev)
                checkLive(gdev)
                // container_of(): linked before queueing, by a reporter that holds gdev (the same value
                // each time; linking it here rather than at allocation spares unreported group_devices
                // a weak-reference side table).
                gdev.brokenWork.context = gdev
                let queued = brokenWorkQueue.queue(gdev.brokenWork)
                if queued { counters.reportsQueued.increment() } else { counters.reportsRefused.increment() }
                return queued
            }
        }
    }

    /// The broken work: quarantines its device, if it is still in its group, by moving it to the
    /// blocking domain.
    ///
    /// Kernel analogue: the series' `broken_work` function: `container_of()` to the group_device,
    /// `mutex_lock(&gdev->group->mutex)`, a check that the device is still on the group's list, the
    /// attach to `group->blocking_domain`, `gdev->blocked = true`, `group->recovery_cnt++`.
    ///
    /// Context: a worker of ``brokenWorkQueue``; may sleep; takes `group->mutex`.
    func brokenWorkFunction(_ item: WorkItem) {
        hooks.brokenWorkStarts?()
        guard let gdev = item.context as? GroupDevice else {
            warn(.groupDeviceUseAfterFree, "broken_work ran after its group_device was deallocated")
            return
        }
        checkLive(gdev)
        let group = gdev.group
        group.mutex.lock()
        defer { group.mutex.unlock() }
        quarantineLocked(gdev, group)
    }

    /// The quarantine itself. Context: `group->mutex` held.
    func quarantineLocked(_ gdev: GroupDevice, _ group: IOMMUGroup) {
        group.mutex.assertHeld()
        let listed = group.devices.first(holding: group.mutex) { $0 === gdev } != nil
        guard listed, !gdev.blocked else { return }
        gdev.attachedDomain = blockingDomainLocked(group)
        gdev.blocked = true
        group.recoveryCount += 1
        counters.recoveries.increment()
    }

    /// The group's blocking domain, allocated on first use.
    ///
    /// Kernel analogue: `__iommu_group_alloc_blocking_domain()`.
    ///
    /// Context: `group->mutex` held.
    func blockingDomainLocked(_ group: IOMMUGroup) -> IOMMUDomain {
        group.mutex.assertHeld()
        if let domain = group.blockingDomain { return domain }
        let domain = IOMMUDomain(kind: .blocked, groupID: group.id)
        group.blockingDomain = domain
        return domain
    }

    /// A deliberately broken report path, for hazard 1: it quarantines the device directly, taking
    /// `group->mutex` in atomic context. The validator reports "sleeping function called from invalid
    /// context". Returns whether the device was found in its group.
    ///
    /// Kernel analogue: what `iommu_report_device_broken()` would be without `broken_work`.
    ///
    /// Context: atomic (it enters it), which is exactly the bug: never use it outside a demonstration.
    @discardableResult
    public func reportDeviceBrokenTakingMutex(_ device: Device) -> Bool {
        Lockdep.withAtomicContext("hardirq") {
            guard let group = device.iommuGroup else { return false }
            group.mutex.lock()
            defer { group.mutex.unlock() }
            guard let gdev = group.groupDevice(of: device) else { return false }
            quarantineLocked(gdev, group)
            return true
        }
    }

    /// Checks an access to `gdev` by a reader or the broken work: RCU debug reclamation reports a
    /// poisoned one as a use after free, and the model counts it.
    func checkLive(_ gdev: GroupDevice, file: StaticString = #fileID, line: UInt = #line) {
        let poisoned = gdev.isPoisoned
        gdev.assertLive(file: file, line: line)
        if poisoned { warn(.groupDeviceUseAfterFree, "\(gdev) accessed after its free", file: file, line: line) }
    }
}
