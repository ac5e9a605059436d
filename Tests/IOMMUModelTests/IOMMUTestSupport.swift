import Glibc
import IOMMUModel
import KernelSync
import Synchronization
import Testing

/// A one-way flag one thread raises and others test or wait for.
final class Flag: Sendable {
    private let raised = Atomic<Bool>(false)

    /// Ordering: releasing; pairs with the acquiring load in ``isRaised``.
    func raise() { raised.store(true, ordering: .releasing) }
    var isRaised: Bool { raised.load(ordering: .acquiring) }

    /// Waits until raised (polling, with plain usleep: callable in atomic context and read sections);
    /// false after 30 s, a failure rather than a timing.
    @discardableResult
    func wait() -> Bool {
        for _ in 0..<150_000 {
            if isRaised { return true }
            usleep(200)
        }
        return false
    }
}

/// A system with lock classes of its own, tagged `tag`, so that its findings can be told apart from
/// those of the tests running beside it.
func makeSystem(
    _ variant: RemoveVariant, tag: String = "test", hooks: IOMMUTestHooks = IOMMUTestHooks(),
    brokenWorkConcurrency: Int = 2
) -> IOMMUSystem {
    let unique = "\(tag)-\(variant)-\(systemCounter.add(1, ordering: .relaxed).newValue)"
    return IOMMUSystem(.init(
        variant: variant, lockClasses: IOMMULockClasses(tag: unique),
        brokenWorkConcurrency: brokenWorkConcurrency, hooks: hooks))
}

private let systemCounter = Atomic<Int>(0)

extension IOMMUSystem {
    /// The group_device of `device`, found as a reader would.
    func groupDevice(of device: Device) -> GroupDevice? {
        guard let group = device.iommuGroup else { return nil }
        return RCU.withReadLock {
            var found: GroupDevice?
            group.devices.forEach { if $0.device === device { found = $0 } }
            return found
        }
    }
}

/// Checks the invariants every path must leave behind once all devices are removed: every
/// group_device and every group freed exactly once, sysfs and the trace log balanced, no model
/// warning and no validator report.
func expectEverythingReleased(_ system: IOMMUSystem, sourceLocation: SourceLocation = #_sourceLocation) {
    RCU.barrier()
    let counters = system.counters.snapshot
    #expect(counters.groupDevicesAllocated == counters.groupDevicesFreed, "\(counters)", sourceLocation: sourceLocation)
    #expect(counters.groupsAllocated == counters.groupsFreed, "\(counters)", sourceLocation: sourceLocation)
    #expect(counters.warningCount == 0, "\(counters)", sourceLocation: sourceLocation)
    #expect(system.sysfs.isEmpty, "left in sysfs: \(system.sysfs.entriesSnapshot)", sourceLocation: sourceLocation)
    #expect(system.trace.isBalanced, "unbalanced trace: \(system.trace.unbalanced)", sourceLocation: sourceLocation)
    #expect(system.reports.isEmpty, "\(system.reports)", sourceLocation: sourceLocation)
}
