import Synchronization

/// Per-class lock statistics: how often locks of a class are taken, how often a taker had to wait, and
/// for how long locks are waited for and held.
///
/// Kernel analogue: `CONFIG_LOCK_STAT` and `/proc/lock_stat`.
///
/// Collected only while ``Lockdep/lockStatisticsEnabled`` is true (or `KSYNC_LOCK_STAT=1` is set at
/// start); when it is off a lock pays nothing for it. Counters are per class, shared by every lock of the
/// class, and updated with relaxed atomics: a snapshot taken while locks are in use is approximate.
public final class LockStatistics: Sendable {
    /// Ordering: relaxed everywhere; these counters order nothing.
    private let acquisitions = Atomic<Int>(0)
    private let contentions = Atomic<Int>(0)
    private let waitTotal = Atomic<UInt64>(0)
    private let waitMaximum = Atomic<UInt64>(0)
    private let holdTotal = Atomic<UInt64>(0)
    private let holdMaximum = Atomic<UInt64>(0)
    /// Individual hold times, once ``sampleHoldTimes(capacity:stride:)`` armed it.
    private let holdSamples = AtomicLazyReference<HoldTimeSamples>()

    /// A copy of the counters at one moment.
    public struct Snapshot: Sendable, Equatable {
        public var acquisitions: Int
        /// Acquisitions that found the lock held and had to wait.
        public var contentions: Int
        public var waitNanosecondsTotal: UInt64
        public var waitNanosecondsMaximum: UInt64
        public var holdNanosecondsTotal: UInt64
        public var holdNanosecondsMaximum: UInt64
    }

    public var snapshot: Snapshot {
        Snapshot(
            acquisitions: acquisitions.load(ordering: .relaxed),
            contentions: contentions.load(ordering: .relaxed),
            waitNanosecondsTotal: waitTotal.load(ordering: .relaxed),
            waitNanosecondsMaximum: waitMaximum.load(ordering: .relaxed),
            holdNanosecondsTotal: holdTotal.load(ordering: .relaxed),
            holdNanosecondsMaximum: holdMaximum.load(ordering: .relaxed))
    }

    func recordAcquisition(contended: Bool, waitNanoseconds: UInt64) {
        acquisitions.wrappingAdd(1, ordering: .relaxed)
        guard contended else { return }
        contentions.wrappingAdd(1, ordering: .relaxed)
        waitTotal.wrappingAdd(waitNanoseconds, ordering: .relaxed)
        waitMaximum.max(waitNanoseconds, ordering: .relaxed)
    }

    func recordHold(nanoseconds: UInt64) {
        holdTotal.wrappingAdd(nanoseconds, ordering: .relaxed)
        holdMaximum.max(nanoseconds, ordering: .relaxed)
        holdSamples.load()?.record(nanoseconds: nanoseconds)
    }

    /// Keeps individual hold times of this class from now on: one in every `stride` releases, up to
    /// `capacity`, while statistics are on. Arms once; a later call returns the first buffer, whatever
    /// its arguments.
    ///
    /// Context: any; arm it before the holds to be sampled.
    public func sampleHoldTimes(capacity: Int, stride: Int) -> HoldTimeSamples {
        holdSamples.storeIfNil(HoldTimeSamples(capacity: capacity, stride: stride))
    }
}
