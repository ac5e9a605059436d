import KernelSync
import Synchronization

/// A statistics counter that threads add to without sharing a cache line: one stripe per thread (by
/// kernel thread id, modulo the stripe count), summed when read.
///
/// Kernel analogue: `struct percpu_counter` / `this_cpu_inc()` on a per-CPU statistic. A single atomic
/// bumped by every writer of the remove path moved its cache line between the writers' cores four
/// times a cycle.
///
/// Ordering: relaxed; a read while threads add is approximate, and exact once they have been joined.
///
/// Non-copyable, stored in its owner as an `Atomic` is: a class here would be retained and released
/// around every increment.
struct StripedCounter: ~Copyable, @unchecked Sendable {
    /// A power of two, so that the stripe is a mask of the thread id.
    private static let stripes = 16
    /// Counters between two stripes, so that stripes are 128 bytes apart: never on one cache line, nor
    /// on a pair the adjacent-line prefetcher fetches together.
    private static let spacing = 16

    /// `stripes × spacing` counters, of which every `spacing`-th is a stripe. Never deallocated while
    /// the counter lives; freed in deinit.
    private let slots: UnsafeMutablePointer<Atomic<Int>>

    init() {
        let count = StripedCounter.stripes * StripedCounter.spacing
        slots = .allocate(capacity: count)
        for index in 0..<count { (slots + index).initialize(to: Atomic(0)) }
    }

    deinit {
        slots.deinitialize(count: StripedCounter.stripes * StripedCounter.spacing)
        slots.deallocate()
    }

    /// Adds `delta` to the calling thread's stripe.
    @inline(__always)
    func add(_ delta: Int) {
        let stripe = Int(KernelThread.currentID) & (StripedCounter.stripes - 1)
        // Wrapping: the trapping add is a compare-and-exchange loop (it checks for overflow).
        slots[stripe * StripedCounter.spacing].wrappingAdd(delta, ordering: .relaxed)
    }

    /// Adds one.
    @inline(__always)
    func increment() { add(1) }

    /// The sum of the stripes.
    var value: Int {
        (0..<StripedCounter.stripes).reduce(0) { sum, stripe in
            sum + slots[stripe * StripedCounter.spacing].load(ordering: .relaxed)
        }
    }
}
