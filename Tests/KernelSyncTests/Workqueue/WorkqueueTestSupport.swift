import Glibc
import Synchronization
@testable import KernelSync

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
