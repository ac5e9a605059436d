// RCU benchmarks, side by side with scripts/bench-rcu-peer.sh (liburcu urcu-memb).
import Benchmark
import Glibc
import KernelSync
import Synchronization

/// A reader thread that enters and leaves read sections until stopped.
final class BusyReader: @unchecked Sendable {
    private let stop = Atomic<Bool>(false)
    private var thread: KernelThread?

    func start() {
        let stop = self.stop
        thread = KernelThread(name: "bench-busy-reader") { [stop] in
            while !stop.load(ordering: .relaxed) { RCU.withReadLock {} }
        }
    }

    func finish() {
        stop.store(true, ordering: .relaxed)
        thread?.join()
    }
}

final class Payload {}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput], maxDuration: .seconds(3))

    Benchmark("RCU read lock+unlock", configuration: .init(scalingFactor: .mega)) { benchmark in
        for _ in benchmark.scaledIterations {
            RCU.readLock()
            RCU.readUnlock()
        }
    }

    Benchmark("RCU synchronize, 0 busy readers") { benchmark in
        for _ in benchmark.scaledIterations { RCU.synchronize() }
    }

    Benchmark("RCU synchronize, 1 busy reader") { benchmark in
        let reader = BusyReader()
        reader.start()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { RCU.synchronize() }
        benchmark.stopMeasurement()
        reader.finish()
    }

    Benchmark("RCU call", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations { RCU.call {} }
        RCU.barrier()
    }

    Benchmark("RCU retire (kfree_rcu)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations { RCU.retire(Payload()) }
        RCU.barrier()
    }

    Benchmark("RCU barrier, 1 callback queued") { benchmark in
        for _ in benchmark.scaledIterations {
            RCU.call {}
            RCU.barrier()
        }
    }

    Benchmark("RCU peak backlog, retire storm", configuration: .init(
        metrics: [.wallClock, .custom("peak backlog", polarity: .prefersSmaller)], maxDuration: .seconds(12),
        maxIterations: 1
    )) { benchmark in
        RCU.maxBacklog = 10_000
        RCU.barrier()
        RCU.resetPeakBacklog()
        let deadline = MonotonicDeadline.now(seconds: 10)
        KernelThread.runAll(count: 2, name: "bench-retire-storm") { _ in
            while !deadline.passed { for _ in 0..<1_000 { RCU.retire(Payload()) } }
        }
        RCU.barrier()
        benchmark.measurement(.custom("peak backlog"), RCU.peakBacklog)
    }
}

/// A monotonic deadline without Foundation.
struct MonotonicDeadline: Sendable {
    let nanoseconds: UInt64

    static func now(seconds: UInt64) -> Self {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Self(nanoseconds: UInt64(spec.tv_sec + Int(seconds)) * 1_000_000_000 + UInt64(spec.tv_nsec))
    }

    var passed: Bool {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec) >= nanoseconds
    }
}
