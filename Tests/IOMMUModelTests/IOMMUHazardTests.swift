import IOMMUModel
import KernelSync
import Synchronization
import Testing

/// The three hazards of DESIGN.md's story table, each caught by the runtime on real threads, and the
/// fixed designs shown clean by the same sequence.
@Suite struct IOMMUHazardTests {
    // MARK: Hazard 1: sleeping on group->mutex in atomic context

    @Test func aReportPathThatTakesTheGroupMutexIsReportedAsSleepingInAtomicContext() throws {
        let system = makeSystem(.deferredDisableRCU, tag: "hazard1")
        defer { system.shutdown() }
        let device = Device(name: "atc-timeout", topology: 1)
        try system.probeDevice(device)

        #expect(system.reportDeviceBrokenTakingMutex(device))

        let reports = system.reports.filter { $0.kind == .sleepInAtomicContext }
        #expect(reports.count == 1)
        #expect(reports.first?.involves(system.lockClasses.groupMutex) == true)
        system.removeDevice(device)
    }

    @Test func theReportPathOfTheSeriesQueuesWorkAndSleepsNowhere() throws {
        let system = makeSystem(.deferredDisableRCU, tag: "hazard1-fixed")
        defer { system.shutdown() }
        let device = Device(name: "atc-timeout", topology: 1)
        try system.probeDevice(device)
        let gdev = try #require(system.groupDevice(of: device))
        let threadName = "irq-\(system.lockClasses.tag!)"

        let interrupt = KernelThread(name: threadName) { _ = system.reportDeviceBroken(device) }
        interrupt.join()
        gdev.brokenWork.flush()

        #expect(Lockdep.reports.filter { $0.thread.hasPrefix(threadName) }.isEmpty)
        #expect(gdev.group.mutex.withLock { gdev.blocked })
        system.removeDevice(device)
        expectEverythingReleased(system)
    }

    // MARK: Hazard 2: cancelSync of broken_work under group->mutex

    /// Probes devices named `names` into one group, runs the first one's broken work once (so the
    /// validator learns work → group->mutex) and waits until it is idle. Returns the devices, in order.
    private func devicesWhoseFirstWorkRanOnce(in system: IOMMUSystem, _ names: [String]) throws -> [Device] {
        let devices = names.map { Device(name: $0, topology: 1) }
        for device in devices { try system.probeDevice(device) }
        let gdev = try #require(system.groupDevice(of: devices[0]))
        #expect(system.reportDeviceBroken(devices[0]))
        gdev.brokenWork.flush()
        #expect(!gdev.brokenWork.isPending && !gdev.brokenWork.isRunning)
        return devices
    }

    /// Runs the broken work once, then removes the device: the free cancels or disables the idle work.
    /// Never deadlocks.
    private func removeAfterTheWorkRanOnce(_ variant: RemoveVariant) throws -> IOMMUSystem {
        let system = makeSystem(variant, tag: "hazard2")
        let device = try devicesWhoseFirstWorkRanOnce(in: system, ["quarantined"])[0]
        system.removeDevice(device)
        return system
    }

    /// Hazard 2 as the validator reports it: one circular dependency, between group->mutex and the
    /// broken work.
    private func expectOneCycleThroughTheBrokenWork(_ system: IOMMUSystem) throws {
        let cycles = system.reports.filter { $0.kind == .circularDependency }
        #expect(cycles.count == 1)
        let cycle = try #require(cycles.first)
        #expect(cycle.involves(system.lockClasses.groupMutex))
        #expect(cycle.classes.contains { $0.contains("gdev->broken_work") })
    }

    @Test func freeingUnderTheMutexIsReportedAsACircularDependencyWithTheBrokenWork() throws {
        let system = try removeAfterTheWorkRanOnce(.freeUnderMutex)
        defer { system.shutdown() }
        try expectOneCycleThroughTheBrokenWork(system)
    }

    @Test func freeingUnderTheMutexIsReportedForADeviceWhoseWorkWasNeverMade() throws {
        // One device's work runs, so the validator learns broken_work → group->mutex. The other device
        // of the group was never reported broken, so its work item was never made; its free still
        // records the cancel's wait, under the mutex.
        let system = makeSystem(.freeUnderMutex, tag: "hazard2-unmade")
        defer { system.shutdown() }
        let devices = try devicesWhoseFirstWorkRanOnce(in: system, ["quarantined", "never-reported"])
        #expect(system.reports.isEmpty)

        system.removeDevice(devices[1])

        try expectOneCycleThroughTheBrokenWork(system)
        system.removeDevice(devices[0])
    }

    @Test(arguments: [RemoveVariant.deferredCancel, .deferredDisable, .deferredDisableRCU])
    func freeingAfterUnlockIsNotReported(variant: RemoveVariant) throws {
        let system = try removeAfterTheWorkRanOnce(variant)
        defer { system.shutdown() }
        expectEverythingReleased(system)
    }

    // MARK: Hazard 3: a reader queues the work after the cancel

    /// What the interleaving did.
    struct Interleaving {
        let queued: Bool
        let useAfterFree: Int
        let system: IOMMUSystem
    }

    /// A reader (an "interrupt" thread) finds the device under RCU before the remover unlinks it; the
    /// remover runs the free up to its cancel or disable (or, in deferredDisable, into `synchronize`,
    /// which waits for the reader); only then does the reader queue the work and leave its section.
    /// The work is held back until the free's grace period has passed, then runs.
    private func readerQueuesAfterTheCancel(_ variant: RemoveVariant) throws -> Interleaving {
        RCU.debugReclamation = true
        let found = Flag()
        let removerPassedTheCancel = Flag()
        let workMayRun = Flag()
        let hooks = IOMMUTestHooks(
            reportFoundDevice: { _ in
                found.raise()
                removerPassedTheCancel.wait()
            },
            freeWillSynchronize: { _ in removerPassedTheCancel.raise() },
            freeQuiescedWork: { _ in removerPassedTheCancel.raise() },
            brokenWorkStarts: { workMayRun.wait() })
        let system = makeSystem(variant, tag: "hazard3", hooks: hooks)
        let device = Device(name: "late-report", topology: 1)
        try system.probeDevice(device)
        let gdev = try #require(system.groupDevice(of: device))
        // Where no use after free can follow, the work may run whenever it is queued: deferredDisable's
        // disableSync waits for it.
        if variant != .deferredCancel { workMayRun.raise() }

        let queued = Atomic<Bool>(false)
        let interrupt = KernelThread(name: "irq-\(variant)") {
            queued.store(system.reportDeviceBroken(device), ordering: .relaxed)
        }
        let remover = KernelThread(name: "remover-\(variant)") {
            found.wait()
            system.removeDevice(device)
        }
        interrupt.join()
        remover.join()
        RCU.barrier()
        #expect(gdev.isPoisoned)
        workMayRun.raise()
        gdev.brokenWork.flush()
        return Interleaving(
            queued: queued.load(ordering: .relaxed),
            useAfterFree: system.counters.warnings(.groupDeviceUseAfterFree), system: system)
    }

    @Test func cancellingTheWorkLetsALateReaderQueueItOnFreedMemory() throws {
        let result = try readerQueuesAfterTheCancel(.deferredCancel)
        defer { result.system.shutdown() }
        #expect(result.queued)
        #expect(result.useAfterFree == 1)
        let reports = Lockdep.reports.filter {
            $0.kind == .useAfterFree && $0.site.hasPrefix("IOMMUModel/") && $0.thread.contains("hazard3-deferredCancel")
        }
        #expect(reports.count == 1)
        #expect(reports.first?.text.contains("GroupDevice") == true)
    }

    @Test func synchronizingBeforeDisablingWaitsForTheReaderAndWithdrawsItsWork() throws {
        let result = try readerQueuesAfterTheCancel(.deferredDisable)
        defer { result.system.shutdown() }
        // The reader queued before the remover's synchronize returned; disableSync then withdrew the
        // work or waited for it, before the free.
        #expect(result.queued)
        #expect(result.useAfterFree == 0)
        expectEverythingReleased(result.system)
    }

    @Test func disablingThenFreeingThroughRCURefusesTheLateReadersWork() throws {
        let result = try readerQueuesAfterTheCancel(.deferredDisableRCU)
        defer { result.system.shutdown() }
        #expect(!result.queued)
        #expect(result.system.counters.snapshot.reportsRefused == 1)
        #expect(result.useAfterFree == 0)
        expectEverythingReleased(result.system)
    }
}
