import Synchronization

/// What the model allocated, freed and did, for tests, the stress binary and the benchmark.
///
/// Ordering: every counter is relaxed; a snapshot taken while the model runs is approximate, and exact
/// once the threads that update it have been joined (and, for ``Snapshot/groupsFreed``, after
/// ``KernelSync/RCU/barrier(file:line:)``).
public final class IOMMUCounters: Sendable {
    /// A copy of the counters at one moment.
    public struct Snapshot: Sendable, Equatable, CustomStringConvertible {
        /// group_devices allocated by `iommu_group_alloc_device()`.
        public var groupDevicesAllocated = 0
        /// group_devices freed (handed to RCU, or freed before they were ever published).
        public var groupDevicesFreed = 0
        /// Groups allocated by `iommu_group_alloc()`.
        public var groupsAllocated = 0
        /// Groups whose deferred free ran, a grace period after their last reference was put.
        public var groupsFreed = 0
        /// Devices probed successfully.
        public var probes = 0
        /// Probes that failed (and unwound).
        public var probeFailures = 0
        /// Devices removed from their group.
        public var removals = 0
        /// Broken-device reports that queued `broken_work`.
        public var reportsQueued = 0
        /// Broken-device reports that found the device but could not queue (pending already, or disabled).
        public var reportsRefused = 0
        /// Devices the broken work quarantined.
        public var recoveries = 0
        /// Resets completed (reset done).
        public var resets = 0
        /// Model warnings, by kind (see ``IOMMUWarning``).
        public var warnings: [IOMMUWarning: Int] = [:]

        /// group_devices allocated and not freed.
        public var liveGroupDevices: Int { groupDevicesAllocated - groupDevicesFreed }
        /// Groups allocated and not (yet) freed.
        public var liveGroups: Int { groupsAllocated - groupsFreed }
        /// All warnings together.
        public var warningCount: Int { warnings.values.reduce(0, +) }

        public var description: String {
            "group_devices \(groupDevicesAllocated)/\(groupDevicesFreed) (allocated/freed), groups "
                + "\(groupsAllocated)/\(groupsFreed), probes \(probes) (+\(probeFailures) failed), removals "
                + "\(removals), reports \(reportsQueued) queued/\(reportsRefused) refused, recoveries "
                + "\(recoveries), resets \(resets), warnings \(warnings)"
        }
    }

    // The four that every probe+remove cycle bumps are striped by thread; the rest are rare.
    let groupDevicesAllocated = StripedCounter()
    let groupDevicesFreed = StripedCounter()
    let groupsAllocated = Atomic<Int>(0)
    let groupsFreed = Atomic<Int>(0)
    let probes = StripedCounter()
    let probeFailures = Atomic<Int>(0)
    let removals = StripedCounter()
    let reportsQueued = Atomic<Int>(0)
    let reportsRefused = Atomic<Int>(0)
    let recoveries = Atomic<Int>(0)
    let resets = Atomic<Int>(0)
    private let emptyGroupOwnershipWarnings = Atomic<Int>(0)
    private let doubleFreeWarnings = Atomic<Int>(0)
    private let groupDeviceUseAfterFreeWarnings = Atomic<Int>(0)
    private let groupUseAfterFreeWarnings = Atomic<Int>(0)

    init() {}

    public var snapshot: Snapshot {
        var warnings: [IOMMUWarning: Int] = [:]
        for kind in IOMMUWarning.allCases {
            let count = self.warnings(kind)
            if count > 0 { warnings[kind] = count }
        }
        return Snapshot(
            groupDevicesAllocated: groupDevicesAllocated.value,
            groupDevicesFreed: groupDevicesFreed.value,
            groupsAllocated: groupsAllocated.load(ordering: .relaxed),
            groupsFreed: groupsFreed.load(ordering: .relaxed),
            probes: probes.value,
            probeFailures: probeFailures.load(ordering: .relaxed),
            removals: removals.value,
            reportsQueued: reportsQueued.load(ordering: .relaxed),
            reportsRefused: reportsRefused.load(ordering: .relaxed),
            recoveries: recoveries.load(ordering: .relaxed),
            resets: resets.load(ordering: .relaxed),
            warnings: warnings)
    }

    /// How many warnings of `kind` the model has raised.
    public func warnings(_ kind: IOMMUWarning) -> Int {
        withCounter(of: kind) { $0.load(ordering: .relaxed) }
    }

    func countWarning(_ kind: IOMMUWarning) {
        withCounter(of: kind) { $0.increment() }
    }

    private func withCounter<R>(of kind: IOMMUWarning, _ body: (borrowing Atomic<Int>) -> R) -> R {
        switch kind {
        case .emptyGroupOwnership: body(emptyGroupOwnershipWarnings)
        case .doubleFree: body(doubleFreeWarnings)
        case .groupDeviceUseAfterFree: body(groupDeviceUseAfterFreeWarnings)
        case .groupUseAfterFree: body(groupUseAfterFreeWarnings)
        }
    }
}

extension Atomic<Int> {
    /// Adds one, relaxed: a statistics counter.
    func increment() { wrappingAdd(1, ordering: .relaxed) }
}
