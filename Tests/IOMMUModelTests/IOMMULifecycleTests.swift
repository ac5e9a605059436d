import IOMMUModel
import KernelSync
import Testing

@Suite struct IOMMULifecycleTests {
    @Test(arguments: RemoveVariant.allCases)
    func probeAndRemoveLeaveSysfsTraceAndCountersBalanced(variant: RemoveVariant) throws {
        let system = makeSystem(variant)
        defer { system.shutdown() }
        let devices = [Device(name: "a", topology: 1), Device(name: "b", topology: 1), Device(name: "c", topology: 2)]
        for device in devices { try system.probeDevice(device) }

        let group = try #require(devices[0].iommuGroup)
        #expect(devices[1].iommuGroup === group)
        #expect(devices[2].iommuGroup !== group)
        #expect(system.sysfs.entriesSnapshot.count == 2 + 2 * devices.count)
        #expect(system.trace.unbalanced.count == devices.count)
        #expect(group.mutex.withLock { group.domain === group.defaultDomain && group.domain?.kind == .dma })

        for device in devices { system.removeDevice(device) }
        #expect(devices.allSatisfy { $0.iommuGroup == nil })
        let counters = system.counters.snapshot
        #expect(counters.probes == 3 && counters.removals == 3)
        #expect(counters.groupDevicesAllocated == 3 && counters.groupsAllocated == 2)
        expectEverythingReleased(system)
    }

    @Test(arguments: RemoveVariant.allCases, ProbeFault.allCases)
    func aFailedProbeLeavesNothingBehind(variant: RemoveVariant, fault: ProbeFault) throws {
        let system = makeSystem(variant)
        defer { system.shutdown() }
        let alone = Device(name: "alone", topology: 1)
        system.faults.failNext(fault)
        #expect(throws: IOMMUError.self) { try system.probeDevice(alone) }
        #expect(alone.iommuGroup == nil)
        #expect(system.faults.firedCount == 1)
        expectEverythingReleased(system)

        // In a group that has a member already, the group survives and keeps only that member.
        let member = Device(name: "member", topology: 2)
        let newcomer = Device(name: "newcomer", topology: 2)
        try system.probeDevice(member)
        system.faults.failNext(fault)
        #expect(throws: IOMMUError.self) { try system.probeDevice(newcomer) }
        let group = try #require(member.iommuGroup)
        #expect(newcomer.iommuGroup == nil)
        #expect(group.referenceCount == 1)
        #expect(system.groupDevice(of: newcomer) == nil)
        #expect(!system.sysfs.entriesSnapshot.contains { $0.contains("newcomer") })
        system.removeDevice(member)
        expectEverythingReleased(system)
        #expect(system.counters.snapshot.probeFailures == 2)
    }

    @Test func aGroupIsFreedAGracePeriodAfterItsLastReferenceGoes() throws {
        let system = makeSystem(.deferredDisableRCU)
        defer { system.shutdown() }
        let first = Device(name: "first", topology: 7)
        let second = Device(name: "second", topology: 7)
        try system.probeDevice(first)
        try system.probeDevice(second)
        let group = try #require(first.iommuGroup)
        #expect(group.referenceCount == 2)

        system.removeDevice(first)
        RCU.barrier()
        #expect(!group.isFreed)
        #expect(system.sysfs.entriesSnapshot.contains("kernel/iommu_groups/\(group.id)"))

        system.removeDevice(second)
        RCU.barrier()
        #expect(group.isFreed)
        #expect(system.counters.snapshot.groupsFreed == 1)

        try system.probeDevice(first)
        #expect(first.iommuGroup.map { $0.id != group.id } == true)
        system.removeDevice(first)
        expectEverythingReleased(system)
    }

    @Test func theBrokenWorkQuarantinesTheDeviceAndResetLiftsTheQuarantine() throws {
        let system = makeSystem(.deferredDisableRCU)
        defer { system.shutdown() }
        let device = Device(name: "broken", topology: 1)
        let healthy = Device(name: "healthy", topology: 1)
        try system.probeDevice(device)
        try system.probeDevice(healthy)
        let gdev = try #require(system.groupDevice(of: device))
        let group = gdev.group

        #expect(system.reportDeviceBroken(device))
        gdev.brokenWork.flush()
        group.mutex.withLock {
            #expect(gdev.blocked)
            #expect(gdev.attachedDomain?.kind == .blocked)
            #expect(group.recoveryCount == 1)
            #expect(group.domain === group.defaultDomain)
        }
        system.reportDeviceBroken(device)
        gdev.brokenWork.flush()
        #expect(system.counters.snapshot.recoveries == 1)

        #expect(system.resetPrepare(device))
        #expect(system.resetDone(device))
        group.mutex.withLock {
            #expect(!gdev.blocked)
            #expect(group.recoveryCount == 0)
            #expect(gdev.attachedDomain === group.domain)
        }

        system.reportDeviceBroken(device)
        gdev.brokenWork.flush()
        system.removeDevice(device)
        #expect(group.mutex.withLock { group.recoveryCount } == 0)
        system.removeDevice(healthy)
        expectEverythingReleased(system)
    }

    @Test func aGroupLeftEmptyWhileOwnedRaisesTheOwnerCountWarning() throws {
        let system = makeSystem(.deferredDisableRCU)
        defer { system.shutdown() }
        let empty = system.allocGroup()
        empty.mutex.withLock { system.assertEmptyGroupOwnership(empty) }
        #expect(system.counters.warnings(.emptyGroupOwnership) == 0)

        let device = Device(name: "owned", topology: 3)
        try system.probeDevice(device)
        let group = try #require(device.iommuGroup)
        system.claimDMAOwnership(of: group)
        system.removeDevice(device)
        #expect(system.counters.warnings(.emptyGroupOwnership) == 1)
        empty.put()
    }

    @Test func aSecondFreeOfAGroupDeviceIsCaughtAndChangesNothing() throws {
        let system = makeSystem(.deferredDisableRCU)
        defer { system.shutdown() }
        let device = Device(name: "twice", topology: 1)
        try system.probeDevice(device)
        let gdev = try #require(system.groupDevice(of: device))
        system.removeDevice(device)
        system.freeGroupDevice(gdev, in: gdev.group)
        #expect(system.counters.warnings(.doubleFree) == 1)
        let counters = system.counters.snapshot
        #expect(counters.groupDevicesFreed == 1)
        #expect(system.sysfs.isEmpty && system.trace.isBalanced)
    }

    @Test func theDeferredFreeAssertsTheGroupMutexIsNotHeld() throws {
        let system = makeSystem(.deferredDisableRCU)
        defer { system.shutdown() }
        let group = system.allocGroup()
        let device = Device(name: "held", topology: -1)
        try system.addDevice(device, to: group)
        let gdev = try #require(system.groupDevice(of: device))
        group.mutex.withLock {
            group.devices.unlink(gdev, holding: group.mutex)
            system.freeGroupDevice(gdev, in: group)
        }
        let assertions = Lockdep.reports(involving: system.lockClasses.groupMutex).filter { $0.kind == .assertionFailed }
        #expect(assertions.count == 1)
        #expect(assertions.first?.text.contains("lockdep_assert_not_held") == true)
    }
}
