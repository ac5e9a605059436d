import KernelSync

extension IOMMUSystem {
    /// Probes `device`: finds or creates its group, adds a group_device for it and attaches it to the
    /// group's domain. Does nothing if the device is in a group already. On failure everything is
    /// undone and the error says at which step.
    ///
    /// Kernel analogue: `iommu_probe_device()`: `__iommu_probe_device()` under
    /// `iommu_probe_device_lock`.
    ///
    /// Context: may sleep. Takes `iommu_probe_device_lock`, then `group->mutex`.
    public func probeDevice(_ device: Device) throws(IOMMUError) {
        probeLock.lock()
        defer { probeLock.unlock() }
        do {
            try probeDeviceLocked(device)
        } catch {
            counters.probeFailures.increment()
            throw error
        }
    }

    /// The body of the probe, with its two error exits.
    ///
    /// Kernel analogue: `__iommu_probe_device()`, with the seed's error exits: `err_remove_gdev` unlinks
    /// the group_device and runs the empty-group assertion, `err_put_group` deinitialises the device,
    /// and the group_device is freed after `mutex_unlock` (under it in the freeUnderMutex variant).
    ///
    /// Context: `iommu_probe_device_lock` held; may sleep.
    func probeDeviceLocked(_ device: Device) throws(IOMMUError) {
        probeLock.assertHeld()
        // Probed already if in a group.
        if device.iommuGroup != nil { return }

        let group = try initDevice(device)
        let allocated = Result { () throws(IOMMUError) -> GroupDevice in try allocGroupDevice(group, device) }

        group.mutex.lock()
        let failure: IOMMUError
        var toFree: GroupDevice?
        switch allocated {
        case .failure(let error):
            failure = error
        case .success(let gdev):
            group.devices.addTail(gdev, holding: group.mutex)
            do {
                try attachToGroupDomain(gdev, group)
                group.mutex.unlock()
                counters.probes.increment()
                return
            } catch {
                failure = error
            }
            // err_remove_gdev:
            group.devices.unlink(gdev, holding: group.mutex)
            assertEmptyGroupOwnership(group)
            toFree = gdev
        }
        // err_put_group:
        _ = deinitDevice(device, group)
        if variant.freesUnderMutex, let gdev = toFree {
            freeGroupDevice(gdev, in: group)
            toFree = nil
        }
        group.mutex.unlock()
        if let gdev = toFree { freeGroupDevice(gdev, in: group) }
        group.put()
        throw failure
    }

    /// Sets the device up for the IOMMU and binds it to its group, whose reference the binding holds.
    ///
    /// Kernel analogue: `iommu_init_device()` (`dev_iommu_get`, `ops->probe_device`,
    /// `ops->device_group`, `dev->iommu_group = group`). A failure there unwinds itself.
    ///
    /// Context: `iommu_probe_device_lock` held; may sleep.
    func initDevice(_ device: Device) throws(IOMMUError) -> IOMMUGroup {
        try faults.check(.initDevice)
        let group = deviceGroup(topology: device.topology)
        device.hasIOMMU.store(true, ordering: .relaxed)
        device.groupPointer.assign(group, holding: probeLock)
        return group
    }

    /// Undoes ``initDevice(_:)``: unbinds the device from its group (the caller puts the reference).
    /// The last device to leave takes the group's domains with it. Returns the device's pointer to the
    /// group, unpublished, for the caller to free through RCU (see ``unbindGroup(_:_:)``).
    ///
    /// Kernel analogue: `iommu_deinit_device()`.
    ///
    /// Context: `group->mutex` held.
    func deinitDevice(_ device: Device, _ group: IOMMUGroup) -> RCUReplaced<IOMMUGroup> {
        group.mutex.assertHeld()
        if group.devices.isEmpty(holding: group.mutex) {
            group.defaultDomain = nil
            group.blockingDomain = nil
            group.domain = nil
        }
        let unbound = unbindGroup(device, group)
        device.hasIOMMU.store(false, ordering: .relaxed)
        return unbound
    }

    /// Clears `dev->iommu_group`. The report path may have loaded it under RCU, so the pointer's
    /// reference to the group comes back as a token for the caller to free through RCU: the removal
    /// retires it with the group_device, in one deferred action (``RCU/retire(_:along:file:line:)``),
    /// or frees it after deferredDisable's grace period; dropping the token retires it.
    ///
    /// Context: `group->mutex` held.
    func unbindGroup(_ device: Device, _ group: IOMMUGroup) -> RCUReplaced<IOMMUGroup> {
        device.groupPointer.replace(with: nil, holding: group.mutex)
    }

    /// Allocates the group_device of `device`, with its sysfs links and its trace event; on failure
    /// removes what it made and frees it (it was never published).
    ///
    /// Kernel analogue: `iommu_group_alloc_device()`, with its `err_remove_link` / `err_free_device`
    /// exits and the `-EEXIST` retry with a suffixed name.
    ///
    /// Context: may sleep; not with `group->mutex` held.
    func allocGroupDevice(_ group: IOMMUGroup, _ device: Device) throws(IOMMUError) -> GroupDevice {
        let created = sysfs.create("devices/\(device.name)/iommu_group")
        precondition(created, "sysfs: devices/\(device.name)/iommu_group exists already: \(device) is in two groups")
        do {
            try faults.check(.allocGroupDevice)
        } catch {
            sysfs.remove("devices/\(device.name)/iommu_group")
            throw error
        }
        var name = device.name
        var suffix = 1
        while !sysfs.create("kernel/iommu_groups/\(group.id)/devices/\(name)") {
            name = "\(device.name).\(suffix)"
            suffix += 1
        }
        let gdev = GroupDevice(device: device, name: name, group: group)
        counters.groupDevicesAllocated.increment()
        trace.record(.addDeviceToGroup(groupID: group.id, device: device.name))
        return gdev
    }

    /// Attaches a newly listed device to its group's domain, setting the default domain up when the
    /// group has none.
    ///
    /// Kernel analogue: the middle of `__iommu_probe_device()`: `iommu_setup_default_domain()` or
    /// `__iommu_device_set_domain()`.
    ///
    /// Context: `group->mutex` held.
    func attachToGroupDomain(_ gdev: GroupDevice, _ group: IOMMUGroup) throws(IOMMUError) {
        group.mutex.assertHeld()
        try faults.check(.attachDomain)
        if group.defaultDomain == nil {
            let domain = IOMMUDomain(kind: .dma, groupID: group.id)
            group.defaultDomain = domain
            group.domain = domain
        }
        gdev.attachedDomain = group.domain
    }

    /// Adds `device` to a group the caller holds a reference to, without an IOMMU probe: the group_device
    /// goes on the list, the device binds to the group and takes a reference of its own.
    ///
    /// Kernel analogue: `iommu_group_add_device()`. The benchmark's probe step.
    ///
    /// Context: may sleep. Takes `group->mutex`.
    public func addDevice(_ device: Device, to group: IOMMUGroup) throws(IOMMUError) {
        let gdev = try allocGroupDevice(group, device)
        group.get()
        // As the kernel does, before the mutex: the device is in no group (the caller's contract), and
        // nothing else updates its pointer while it is added.
        device.groupPointer.publish(group)
        group.mutex.lock()
        gdev.attachedDomain = group.domain
        // Last use of gdev: the list takes over the reference.
        group.devices.addTail(gdev, holding: group.mutex)
        group.mutex.unlock()
        counters.probes.increment()
    }
}
