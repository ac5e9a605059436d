import KernelSync

/// What one ``IOMMUWorkload/run(variant:threads:groups:cycles:validator:readers:lockStatistics:holdTimeSamples:)`` did
/// and how long it took.
public struct WorkloadResult: Sendable, CustomStringConvertible {
    public let variant: RemoveVariant
    public let threads: Int
    public let groups: Int
    /// Probe+remove cycles, all threads together.
    public let cycles: Int
    public let readers: Int
    /// Whether the validator was on.
    public let validator: Bool
    /// Wall-clock time of the cycles (readers excluded from start-up and join).
    public let elapsed: Duration
    /// Read-side traversals of a group's device list that the readers completed.
    public let readerPasses: Int
    /// group_devices the readers found on those lists.
    public let readerDevicesSeen: Int
    /// The group mutex's lock statistics for the run (acquisitions, contentions, wait and hold time),
    /// when asked for.
    public let groupMutex: LockStatistics.Snapshot?
    /// Individual hold times of the group mutex in nanoseconds, probe and removal alike, when samples
    /// were asked for; empty otherwise.
    public let groupMutexHoldTimes: [UInt64]
    /// The model's counters after the run; every group_device and group is freed.
    public let counters: IOMMUCounters.Snapshot
    /// Validator reports involving the run's lock classes (zero for every variant but freeUnderMutex
    /// with the validator on, which never queues broken work here and so stays clean too).
    public let validatorReports: Int

    /// Elapsed time in seconds.
    public var seconds: Double {
        Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// Cycles per second, all threads together.
    public var cyclesPerSecond: Double { seconds > 0 ? Double(cycles) / seconds : 0 }

    /// Mean time the group mutex was held per acquisition, in nanoseconds, when statistics were on.
    public var meanGroupMutexHoldNanoseconds: Double? {
        guard let groupMutex, groupMutex.acquisitions > 0 else { return nil }
        return Double(groupMutex.holdNanosecondsTotal) / Double(groupMutex.acquisitions)
    }

    public var description: String {
        "\(variant) threads=\(threads) groups=\(groups) readers=\(readers) validator=\(validator): "
            + "\(cycles) cycles in \(seconds) s, \(Int(cyclesPerSecond)) cycles/s; \(counters)"
    }
}
