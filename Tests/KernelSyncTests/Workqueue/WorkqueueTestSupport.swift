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

/// An item whose function has started and now waits for `release`; `finished` is raised as it returns.
struct BlockedRun {
    let item: WorkItem
    let release: Flag
    let finished: Flag
}

/// Queues on `queue` an item that blocks until its `release` flag is raised, and waits until its function
/// has started. The item's class is keyed by the caller's line, so each test has its own.
func startBlockedRun(on queue: Workqueue, name: String, file: StaticString = #fileID, line: UInt = #line) -> BlockedRun {
    let started = Flag()
    let release = Flag()
    let finished = Flag()
    let item = WorkItem(name: name, file: file, line: line) { _ in
        started.raise()
        release.wait()
        finished.raise()
    }
    queue.queue(item)
    started.wait()
    return BlockedRun(item: item, release: release, finished: finished)
}
