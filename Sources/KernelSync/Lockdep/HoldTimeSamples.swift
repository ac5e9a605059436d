import Synchronization

/// Individual hold times of one lock class, one in every `stride` releases, up to a fixed capacity:
/// the raw material for percentiles, which the totals and maximum of ``LockStatistics`` cannot give.
///
/// Armed per class with ``LockStatistics/sampleHoldTimes(capacity:stride:)``; filled only while
/// ``Lockdep/lockStatisticsEnabled`` is on, so a lock whose statistics are off pays nothing for it.
///
/// ```swift
/// let samples = groupClass.statistics.sampleHoldTimes(capacity: 100_000, stride: 4)
/// runTheWorkload()          // with Lockdep.lockStatisticsEnabled = true; join its threads
/// let holds = samples.values
/// ```
public final class HoldTimeSamples: @unchecked Sendable {
    /// One slot per sample; slot `n` belongs to the release that drew ticket `n * stride`.
    /// Guarded by: the ticket (each slot has one writer); read only after the writers are joined.
    private let slots: UnsafeMutableBufferPointer<UInt64>
    /// Releases seen so far.
    ///
    /// Ordering: relaxed; the counter only hands out slots. The slots' contents reach ``values``
    /// through the join of the recording threads, not through this counter.
    private let tickets = Atomic<Int>(0)
    /// One sample is kept in every `stride` releases.
    public let stride: Int

    init(capacity: Int, stride: Int) {
        precondition(capacity >= 1 && stride >= 1,
                     "HoldTimeSamples: capacity \(capacity) and stride \(stride) must be at least 1")
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: 0)
        self.stride = stride
    }

    deinit { slots.deallocate() }

    /// Context: the releasing thread, right after the unlock.
    func record(nanoseconds: UInt64) {
        let ticket = tickets.wrappingAdd(1, ordering: .relaxed).oldValue
        guard ticket % stride == 0 else { return }
        let slot = ticket / stride
        if slot < slots.count { slots[slot] = nanoseconds }
    }

    /// The hold times kept, in nanoseconds, in the order their tickets were drawn.
    ///
    /// Context: after every thread that released a lock of the class while sampling has been joined.
    public var values: [UInt64] {
        let kept = (tickets.load(ordering: .relaxed) + stride - 1) / stride
        return Array(slots.prefix(min(kept, slots.count)))
    }
}
