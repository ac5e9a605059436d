import CKernelSync
import Glibc
import Synchronization

/// rcutorture's method on real threads: proves that grace periods are long enough.
///
/// A writer publishes a new element through an ``RCUPointer`` and keeps the one it replaced in an ageing
/// pipeline; each time it has waited for a grace period (alternating ``RCU/synchronize(file:line:)`` and
/// polled grace periods), every element in the pipeline ages by one. Readers — some with long, randomly
/// delayed sections, some nested — load the current element and record its age while still inside the
/// section. An element a reader can still see was current when its section began, so at most one grace
/// period can end after its removal before the reader's section does: an observed age of 2 or more is a
/// grace period that ended too early. So is a reader that finds its element poisoned (debug reclamation).
/// Fake writers call ``RCU/synchronize(file:line:)``, ``RCU/barrier(file:line:)``, ``RCU/call(_:)`` and
/// ``RCU/startPoll()`` meanwhile.
///
/// The result's description is rcutorture's end-of-test text: a correct run shows a pipeline histogram
/// with zeros from age 2 on and "SUCCESS"; with ``Configuration/breakGracePeriods`` (grace periods that
/// skip waiting for readers) it must show "FAILURE". The seed is printed at the start, so that a run can
/// be replayed.
public enum RCUTorture {
    public struct Configuration: Sendable {
        public var seed: UInt64
        public var durationSeconds: Double
        public var readers: Int
        public var fakeWriters: Int
        /// Run with grace periods that do not wait for readers: the run must fail.
        public var breakGracePeriods: Bool

        public init(
            seed: UInt64 = UInt64(monotonicNanoseconds()), durationSeconds: Double = 3, readers: Int = 3,
            fakeWriters: Int = 2, breakGracePeriods: Bool = false
        ) {
            self.seed = seed
            self.durationSeconds = durationSeconds
            self.readers = readers
            self.fakeWriters = fakeWriters
            self.breakGracePeriods = breakGracePeriods
        }
    }

    public struct Result: Sendable, CustomStringConvertible {
        public let seed: UInt64
        /// `pipeline[age]`: reader observations of that age; the last slot counts every age beyond.
        public let pipeline: [Int]
        /// Reader observations of a poisoned element.
        public let poisonedObservations: Int
        public let writes: Int
        public let gracePeriods: UInt64

        /// Observations that prove a too-short grace period.
        public var errors: Int { pipeline.dropFirst(2).reduce(0, +) + poisonedObservations }
        public var passed: Bool { errors == 0 && pipeline.reduce(0, +) > 0 }

        public var description: String {
            "rcu-torture: seed \(seed) writes \(writes) grace periods \(gracePeriods)\n"
                + "rcu-torture: Reader Pipe: \(pipeline.map(String.init).joined(separator: " "))\n"
                + "rcu-torture: poisoned observations: \(poisonedObservations)\n"
                + "rcu-torture: --- End of test: \(passed ? "SUCCESS" : "FAILURE")\n"
        }
    }

    /// Ages kept in the pipeline before an element leaves it (rcutorture `RCU_TORTURE_PIPE_LEN`).
    static let pipelineLength = 10

    /// Runs the torture test and returns its verdict; prints the seed first.
    ///
    /// Context: may sleep for ``Configuration/durationSeconds``; not in a read section. Turns
    /// ``RCU/debugReclamation`` on.
    public static func run(_ configuration: Configuration) -> Result {
        writeToStandardError("rcu-torture: seed \(configuration.seed)\(configuration.breakGracePeriods ? " (broken grace periods)" : "")\n")
        RCU.debugReclamation = true
        if configuration.breakGracePeriods { RCU.brokenMode = .skipWait }
        defer { if configuration.breakGracePeriods { RCU.brokenMode = .none } }

        let shared = Shared()
        let startGracePeriods = RCU.completedGracePeriods
        let deadline = monotonicNanoseconds() + UInt64(configuration.durationSeconds * 1e9)
        var threads: [KernelThread] = []
        for index in 0..<configuration.readers {
            let seed = configuration.seed &+ UInt64(index) &+ 1
            threads.append(KernelThread(name: "rcu_torture_reader/\(index)") { reader(shared, seed: seed) })
        }
        for index in 0..<configuration.fakeWriters {
            let seed = configuration.seed &+ 1000 &+ UInt64(index)
            threads.append(KernelThread(name: "rcu_torture_fakewriter/\(index)") { fakeWriter(shared, seed: seed) })
        }
        let writes = writer(shared, seed: configuration.seed, deadline: deadline)
        shared.stop.store(true, ordering: .relaxed)
        for thread in threads { thread.join() }

        let result = shared.lock.withLock {
            Result(
                seed: configuration.seed, pipeline: shared.pipeline, poisonedObservations: shared.poisoned,
                writes: writes, gracePeriods: RCU.completedGracePeriods - startGracePeriods)
        }
        return result
    }

    final class Element: RCUProtected, @unchecked Sendable {
        /// Grace periods completed since removal. Ordering: relaxed; only its order relative to the
        /// grace-period machinery matters, and that is what is under test.
        let age = Atomic<Int>(0)
    }

    final class Shared: @unchecked Sendable {
        let current = RCUPointer<Element>(Element())
        let writerLock = KernelMutex(name: "rcu_torture_writer")
        /// Ordering: relaxed; a stop request, polled.
        let stop = Atomic<Bool>(false)
        let lock = PthreadMutex()
        /// Guarded by: lock.
        var pipeline = Array(repeating: 0, count: RCUTorture.pipelineLength + 1)
        /// Guarded by: lock.
        var poisoned = 0
    }

    /// The one writer: publish, age the pipeline after each grace period, drop the oldest.
    private static func writer(_ shared: Shared, seed: UInt64, deadline: UInt64) -> Int {
        var random = SplitMix64(seed: seed)
        var pipeline: [Element] = []
        var writes = 0
        while monotonicNanoseconds() < deadline {
            shared.writerLock.withLock {
                if let old = shared.current.dereferenceProtected(holding: shared.writerLock) { pipeline.append(old) }
                shared.current.assign(Element(), holding: shared.writerLock)
            }
            writes += 1
            if random.next() % 2 == 0 {
                RCU.synchronize()
            } else {
                let cookie = RCU.startPoll()
                while !RCU.poll(cookie) { sched_yield() }
            }
            for element in pipeline { element.age.wrappingAdd(1, ordering: .relaxed) }
            pipeline.removeAll { $0.age.load(ordering: .relaxed) >= pipelineLength }
        }
        return writes
    }

    private static func reader(_ shared: Shared, seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var pipeline = Array(repeating: 0, count: pipelineLength + 1)
        var poisoned = 0
        while !shared.stop.load(ordering: .relaxed) {
            let roll = random.next()
            RCU.readLock()
            let nested = roll % 4 == 0
            if nested { RCU.readLock() }
            if let element = shared.current.dereference() {
                if roll % 16 == 1 {
                    usleep(UInt32(random.next() % 2000))
                } else {
                    for _ in 0..<(random.next() % 64) { ks_compiler_barrier() }
                }
                let age = element.age.load(ordering: .relaxed)
                pipeline[min(age, pipelineLength)] += 1
                if element.isPoisoned { poisoned += 1 }
            }
            if nested { RCU.readUnlock() }
            RCU.readUnlock()
        }
        shared.lock.withLock {
            for (age, count) in pipeline.enumerated() { shared.pipeline[age] += count }
            shared.poisoned += poisoned
        }
    }

    private static func fakeWriter(_ shared: Shared, seed: UInt64) {
        var random = SplitMix64(seed: seed)
        while !shared.stop.load(ordering: .relaxed) {
            switch random.next() % 4 {
            case 0: RCU.synchronize()
            case 1: RCU.barrier()
            case 2: RCU.call {}
            default: _ = RCU.startPoll()
            }
            usleep(UInt32(random.next() % 500))
        }
    }
}
