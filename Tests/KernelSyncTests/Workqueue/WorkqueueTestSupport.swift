import Glibc
import Synchronization
@testable import KernelSync

/// A flag one thread raises and others wait for.
final class Flag: Sendable {
    private let raised = Atomic<Bool>(false)

    /// Ordering: releasing; pairs with the acquiring load in ``isRaised``.
    func raise() { raised.store(true, ordering: .releasing) }
    var isRaised: Bool { raised.load(ordering: .acquiring) }

    /// Waits until raised; false if that takes longer than a generous bound (a failure, not a timing).
    @discardableResult
    func wait() -> Bool { pollUntil { isRaised } }
}

/// A counter shared with work functions.
final class Counter: Sendable {
    private let atomic = Atomic<Int>(0)

    @discardableResult
    func increment() -> Int { atomic.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue }
    func decrement() { atomic.wrappingSubtract(1, ordering: .sequentiallyConsistent) }
    var value: Int { atomic.load(ordering: .sequentiallyConsistent) }
}

/// Tracks how many threads are inside a function at once, and the most ever seen.
final class ConcurrencyMeter: Sendable {
    private let inside = Counter()
    private let maximum = Atomic<Int>(0)

    func enter() {
        let now = inside.increment()
        var seen = maximum.load(ordering: .relaxed)
        while now > seen {
            let (exchanged, original) = maximum.compareExchange(
                expected: seen, desired: now, ordering: .relaxed)
            if exchanged { break }
            seen = original
        }
    }

    func leave() { inside.decrement() }
    var peak: Int { maximum.load(ordering: .relaxed) }
}

/// Polls `condition` every 200 µs; false when it stays false for 30 seconds.
@discardableResult
func pollUntil(_ condition: () -> Bool) -> Bool {
    let deadline = monotonicNanoseconds() + 30_000_000_000
    while !condition() {
        if monotonicNanoseconds() > deadline { return false }
        usleep(200)
    }
    return true
}

/// Raises `flag` from another thread a little later, so that the caller can block meanwhile.
func raiseSoon(_ flag: Flag) -> KernelThread {
    KernelThread(name: "raise-soon") {
        usleep(20_000)
        flag.raise()
    }
}

/// A queue whose only worker is busy in a function that waits for `release`: items queued behind it
/// stay pending until the flag is raised.
func blockedQueue(_ name: String, release: Flag) -> Workqueue {
    let queue = Workqueue(name: name)
    let started = Flag()
    let blocker = WorkItem(name: "\(name).blocker") { _ in
        started.raise()
        release.wait()
    }
    queue.queue(blocker)
    started.wait()
    return queue
}
