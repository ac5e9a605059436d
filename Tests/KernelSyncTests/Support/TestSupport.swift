import Glibc
import Synchronization
@testable import KernelSync

/// A one-way flag one thread raises and others test or wait for.
final class Flag: Sendable {
    private let raised = Atomic<Bool>(false)

    /// Ordering: releasing; pairs with the acquiring load in ``isRaised``.
    func raise() { raised.store(true, ordering: .releasing) }
    var isRaised: Bool { raised.load(ordering: .acquiring) }

    /// Waits until raised; false if that takes longer than a generous bound (a failure, not a timing).
    @discardableResult
    func wait() -> Bool { eventually { isRaised } }
}

/// A counter shared between threads.
final class Counter: Sendable {
    private let atomic = Atomic<Int>(0)

    @discardableResult
    func increment() -> Int { atomic.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue }
    func decrement() { atomic.wrappingSubtract(1, ordering: .sequentiallyConsistent) }
    var value: Int { atomic.load(ordering: .sequentiallyConsistent) }
}

/// Values appended from several threads.
final class Recorder<Value: Sendable>: @unchecked Sendable {
    private let lock = PthreadMutex()
    /// Guarded by: lock.
    private var stored: [Value] = []
    func append(_ value: Value) { lock.withLock { stored.append(value) } }
    var values: [Value] { lock.withLock { stored } }
}

/// Gives the reclaimer time to run whatever is ready to run, and runs what it handed back to this
/// thread: an object that a reader still stands on, found alive after this, was not handed to a
/// callback whose grace period had already elapsed (a queued callback wakes the reclaimer at once).
/// Not a timing assertion: a busy reclaimer (another test's batch waiting on this test's reader) only
/// makes the check more lenient. Context: no KernelMutex held; inside a read section it only sleeps.
func letTheReclaimerCatchUp() {
    usleep(30_000)
    Reclaimer.shared.runReturnedOfCurrentThread()
}

/// Polls `condition` every 200 µs; false if it did not hold within `seconds` (a guard against a hang,
/// not a timing assertion).
@discardableResult
func eventually(within seconds: Double = 30, _ condition: () -> Bool) -> Bool {
    let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
    while !condition() {
        if monotonicNanoseconds() > deadline { return false }
        usleep(200)
    }
    return true
}
