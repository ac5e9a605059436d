import KernelSync

extension IOMMUSystem {
    /// Removes `device` from its group: unlinks its group_device, unbinds the device, frees the
    /// group_device the way ``variant`` says, and puts the device's group reference. Does nothing for a
    /// device in no group.
    ///
    /// Kernel analogue: `iommu_release_device()` / `iommu_group_remove_device()` →
    /// `__iommu_group_remove_device()`, as changed by the seed: the free runs after `mutex_unlock`
    /// (under the mutex in the freeUnderMutex variant).
    ///
    /// Context: may sleep (in deferredDisable, for a whole grace period). Takes `group->mutex`; not in
    /// atomic context, not inside a read section.
    public func removeDevice(_ device: Device) {
        guard let group = device.iommuGroup else { return }
        removeDevice(device, from: group)
    }

    /// ``removeDevice(_:)`` for a caller that has the device's group at hand, as the kernel's
    /// `__iommu_group_remove_device()` has `dev->iommu_group`: the benchmark workload, whose writers
    /// borrow their groups unretained (like the C peer's `remove_device(dev, group)`), so that the
    /// group's reference count, which every writer shares, is not written twice more a removal. A
    /// device whose group_device is not on `group`'s list is left alone.
    ///
    /// With the group as a borrowed parameter, the compiler also loads `group.mutex` and
    /// `group.devices` without a retain and release around every use, which it did when the group was
    /// a local it owned (eight reference-count operations a removal).
    ///
    /// Context: as ``removeDevice(_:)``.
    func removeDevice(_ device: Device, from group: IOMMUGroup) {
        group.mutex.lock()
        guard let detached = group.detachGroupDevice(of: device) else {
            group.mutex.unlock()
            return
        }
        detached.withElement { gdev in
            if gdev.blocked {
                gdev.blocked = false
                group.recoveryCount -= 1
            }
        }
        assertEmptyGroupOwnership(group)
        let unbound = device.hasIOMMU.load(ordering: .relaxed) ? deinitDevice(device, group) : unbindGroup(device, group)
        if variant.freesUnderMutex {
            freeGroupDevice(detached, in: group, unbound: unbound)
            group.mutex.unlock()
        } else {
            group.mutex.unlock()
            freeGroupDevice(detached, in: group, unbound: unbound)
        }
        counters.removals.increment()
        // Pairs with the get in iommu_init_device() or iommu_group_add_device().
        group.put()
    }

    /// Checks, on a group that has just lost a device, that an empty group is no longer owned and is
    /// back in its default domain; raises ``IOMMUWarning/emptyGroupOwnership`` otherwise.
    ///
    /// Kernel analogue: `__iommu_group_empty_assert_owner_cnt()` (split out of
    /// `__iommu_group_free_device()` by the seed): `lockdep_assert_held` and the `WARN_ON`.
    ///
    /// Context: `group->mutex` held (asserted).
    @inline(__always)
    public func assertEmptyGroupOwnership(_ group: IOMMUGroup, file: StaticString = #fileID, line: UInt = #line) {
        group.mutex.assertHeld(file: file, line: line)
        // If the group has become empty then ownership must have been released, and the current
        // domain must be set back to nil or the default domain.
        guard group.devices.isEmpty(holding: group.mutex) else { return }
        if group.ownerCount != 0 || group.domain !== group.defaultDomain {
            warnEmptyGroupOwned(group, file: file, line: line)
        }
    }

    /// The warning of ``assertEmptyGroupOwnership(_:file:line:)``, kept out of line: the check runs
    /// inside every removal's critical section, and the report's formatting made its frame five times
    /// the size the check needs.
    @inline(never)
    private func warnEmptyGroupOwned(_ group: IOMMUGroup, file: StaticString, line: UInt) {
        warn(.emptyGroupOwnership,
             "group \(group.id): owner_cnt \(group.ownerCount), domain \(group.domain.map(String.init(describing:)) ?? "none"), default domain \(group.defaultDomain.map(String.init(describing:)) ?? "none")",
             file: file, line: line)
    }
}
