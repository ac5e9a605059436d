import Synchronization

/// Torture for the mutex and the validator: threads take random subsets (one to four) of a set of
/// mutexes, always in one global order, and count under each lock what the lock protects.
///
/// What a run proves: mutual exclusion (every lock's counter equals the acquisitions made of it, which
/// lost updates would break); no false alarm (the validator reports nothing for a consistent order, at
/// any nesting depth, from many threads at once); and, with ``Configuration/injectInversion``, that one
/// inverted pair among millions of ordered acquisitions is still reported as a circular dependency.
///
/// A correct run prints "SUCCESS".
public enum LockdepTorture {
    public struct Configuration: Sendable {
        public var seed: UInt64
        public var threads: Int
        /// Mutexes in the ordered set (each has its own class, "torture_lock_<i>").
        public var locks: Int
        public var durationSeconds: Double
        /// After the ordered threads finish, one thread takes the first and last locks in reverse order,
        /// once: the run passes only if the validator reports it.
        public var injectInversion: Bool

        public init(seed: UInt64, threads: Int = 4, locks: Int = 16, durationSeconds: Double = 2, injectInversion: Bool = false) {
            self.seed = seed
            self.threads = threads
            self.locks = locks
            self.durationSeconds = durationSeconds
            self.injectInversion = injectInversion
        }
    }

    public struct Result: Sendable, CustomStringConvertible {
        public let seed: UInt64
        public let acquisitions: Int
        /// Locks whose protected counter disagrees with the acquisitions made of it.
        public let exclusionViolations: Int
        /// Reports the validator made about the torture's classes.
        public let reports: [LockdepReport]
        public let injectedInversion: Bool

        public var passed: Bool {
            guard exclusionViolations == 0 && acquisitions > 0 else { return false }
            return injectedInversion
                ? reports.map(\.kind) == [.circularDependency]
                : reports.isEmpty
        }

        public var description: String {
            "lockdep-torture: seed \(seed) acquisitions \(acquisitions) exclusion violations \(exclusionViolations) "
                + "reports \(reports.map(\.kind.rawValue))\(injectedInversion ? " (one inversion injected)" : "")\n"
                + "lockdep-torture: --- End of test: \(passed ? "SUCCESS" : "FAILURE")\n"
        }
    }

    /// Runs the torture. Context: may sleep; the validator's mode is the caller's (in `off` mode only
    /// exclusion is checked, and an injected inversion cannot be found).
    public static func run(_ configuration: Configuration) -> Result {
        let guarded = (0..<configuration.locks).map { GuardedCounter(index: $0) }
        let deadline = monotonicNanoseconds() + UInt64(configuration.durationSeconds * 1e9)
        let acquisitions = Atomic<Int>(0)
        KernelThread.runAll(count: configuration.threads, name: "lockdep-torture") { thread in
            var random = SplitMix64(seed: configuration.seed &+ UInt64(thread))
            var done = 0
            var rounds = 0
            while rounds & 63 != 0 || monotonicNanoseconds() < deadline {
                // One to four locks, in index order: deep enough for long chains, few enough distinct
                // sequences (a few thousand) that the chain cache holds them, as real code's do.
                let depth = 1 + Int(random.next() % 4)
                let chosen = Set((0..<depth).map { _ in Int(random.next() % UInt64(guarded.count)) }).sorted()
                for index in chosen { guarded[index].lock.lock() }
                for index in chosen { guarded[index].protectedCount += 1 }
                for index in chosen.reversed() { guarded[index].lock.unlock() }
                for index in chosen { guarded[index].acquisitions.wrappingAdd(1, ordering: .relaxed) }
                done += chosen.count
                rounds += 1
            }
            acquisitions.wrappingAdd(done, ordering: .relaxed)
        }
        // Once the ordered threads are done, so that the inversion cannot deadlock with them for real:
        // the validator must find it from the order they recorded, not from a hang.
        if configuration.injectInversion && guarded.count >= 2 {
            let (first, last) = (guarded[0], guarded[guarded.count - 1])
            KernelThread(name: "lockdep-torture-inversion") { last.lock.withLock { first.lock.withLock {} } }.join()
        }
        let violations = guarded.filter { counter in
            counter.lock.withLock { counter.protectedCount } != counter.acquisitions.load(ordering: .relaxed)
        }.count
        let classes = guarded.map(\.lock.lockClass)
        let reports = Lockdep.reports.filter { report in classes.contains { report.involves($0) } }
        return Result(
            seed: configuration.seed, acquisitions: acquisitions.load(ordering: .relaxed),
            exclusionViolations: violations, reports: reports, injectedInversion: configuration.injectInversion)
    }
}

/// A mutex and the counter it protects.
private final class GuardedCounter: @unchecked Sendable {
    let lock: KernelMutex
    /// Guarded by: lock.
    var protectedCount = 0
    /// Acquisitions made, counted outside the lock. Ordering: relaxed; read after the threads are joined.
    let acquisitions = Atomic<Int>(0)

    init(index: Int) {
        lock = KernelMutex(class: LockClass(name: "torture_lock_\(index)"))
    }
}
