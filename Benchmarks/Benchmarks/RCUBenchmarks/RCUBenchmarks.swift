// RCU benchmarks, KernelSync side by side with liburcu's urcu-memb (the URCUPeer C target) in one run.
//
// Names are "group: implementation"; liburcu is each group's baseline. An iteration is 1,000
// operations (scalingFactor .kilo) unless the group name says "[1 op]", so scripts/bench.sh reports
// nanoseconds per operation. The validator is off on both sides.
import Benchmark
import Glibc
import KernelSync
import Synchronization
import URCUPeer

/// A thread that enters and leaves KernelSync read sections until stopped.
final class BusyReader: Sendable {
    private let stop = Atomic<Bool>(false)
    private let running = Atomic<Bool>(false)

    func run() -> KernelThread {
        stop.store(false, ordering: .relaxed)
        let thread = KernelThread(name: "bench-busy-reader") { [self] in
            running.store(true, ordering: .releasing)
            while !stop.load(ordering: .relaxed) { RCU.withReadLock {} }
        }
        while !running.load(ordering: .acquiring) { sched_yield() }
        return thread
    }

    func finish(_ thread: KernelThread) {
        stop.store(true, ordering: .relaxed)
        thread.join()
        running.store(false, ordering: .relaxed)
    }
}

final class Payload {}

let benchmarks: @Sendable () -> Void = {
    Lockdep.mode = .off
    let perOperation = Benchmark.Configuration(
        metrics: [.wallClock, .throughput], scalingFactor: .kilo, maxDuration: .seconds(2), maxIterations: 10_000)
    let single = Benchmark.Configuration(
        metrics: [.wallClock, .throughput], maxDuration: .seconds(2), maxIterations: 1_000)

    Benchmark("read lock+unlock: liburcu urcu-memb (baseline)", configuration: perOperation, closure: { benchmark in
        urcu_peer_read_sections(benchmark.scaledIterations.count)
    }, setup: { urcu_peer_register() }, teardown: { urcu_peer_unregister() })
    Benchmark("read lock+unlock: KernelSync RCU", configuration: perOperation) { benchmark in
        for _ in benchmark.scaledIterations {
            RCU.readLock()
            RCU.readUnlock()
        }
    }

    // The caller is a registered reader thread on both sides, outside any read section. (liburcu returns
    // at once when no thread at all is registered; that case is not measured.)
    Benchmark("synchronize, no reader inside a section: liburcu urcu-memb (baseline)", configuration: perOperation, closure: { benchmark in
        for _ in benchmark.scaledIterations { urcu_peer_synchronize() }
    }, setup: { urcu_peer_register() }, teardown: { urcu_peer_unregister() })
    Benchmark("synchronize, no reader inside a section: KernelSync RCU", configuration: perOperation) { benchmark in
        for _ in benchmark.scaledIterations { RCU.synchronize() }
    }

    Benchmark("synchronize, 1 busy reader: liburcu urcu-memb (baseline)", configuration: perOperation, closure: { benchmark in
        for _ in benchmark.scaledIterations { urcu_peer_synchronize() }
    }, setup: { urcu_peer_start_busy_reader() }, teardown: { urcu_peer_stop_busy_reader() })
    let busy = BusyReader()
    let busyThread = Mutex<KernelThread?>(nil)
    Benchmark("synchronize, 1 busy reader: KernelSync RCU", configuration: perOperation, closure: { benchmark in
        for _ in benchmark.scaledIterations { RCU.synchronize() }
    }, setup: {
        busyThread.withLock { $0 = busy.run() }
    }, teardown: {
        busyThread.withLock { thread in
            if let running = thread { busy.finish(running) }
            thread = nil
        }
    })

    // Throughput: 100,000 callbacks queued, then a barrier waits until all of them ran, so the barrier's
    // own latency (10 ms in liburcu) is spread over the batch.
    let batch = 100_000
    Benchmark("call, queued and run [100000 ops]: liburcu urcu-memb (baseline)", configuration: single, closure: { _ in
        for _ in 0..<batch { urcu_peer_call() }
        urcu_peer_barrier()
    }, setup: { urcu_peer_register() }, teardown: { urcu_peer_unregister() })
    Benchmark("call, queued and run [100000 ops]: KernelSync RCU", configuration: single) { _ in
        for _ in 0..<batch { RCU.call {} }
        RCU.barrier()
    }
    Benchmark("call, queued and run [100000 ops]: KernelSync RCU retire (kfree_rcu)", configuration: single) { _ in
        for _ in 0..<batch { RCU.retire(Payload()) }
        RCU.barrier()
    }

    Benchmark("barrier, 1 callback queued [1 op]: liburcu urcu-memb (baseline)", configuration: single, closure: { _ in
        urcu_peer_call()
        urcu_peer_barrier()
    }, setup: { urcu_peer_register() }, teardown: { urcu_peer_unregister() })
    Benchmark("barrier, 1 callback queued [1 op]: KernelSync RCU", configuration: single) { _ in
        RCU.call {}
        RCU.barrier()
    }

    // One 10-second iteration; what matters is the "peak backlog" metric, which must stay within the bound.
    Benchmark("retire storm, 2 threads, 10 s: KernelSync RCU, bound 10,000", configuration: .init(
        metrics: [.wallClock, .custom("peak backlog", polarity: .prefersSmaller, useScalingFactor: false)],
        units: [.custom("peak backlog", polarity: .prefersSmaller, useScalingFactor: false): .count],
        maxDuration: .seconds(15), maxIterations: 1
    )) { benchmark in
        RCU.maxBacklog = 10_000
        RCU.barrier()
        RCU.resetPeakBacklog()
        let deadline = monotonicSeconds() + 10
        KernelThread.runAll(count: 2, name: "bench-retire-storm") { _ in
            while monotonicSeconds() < deadline { for _ in 0..<1_000 { RCU.retire(Payload()) } }
        }
        RCU.barrier()
        benchmark.measurement(.custom("peak backlog", polarity: .prefersSmaller, useScalingFactor: false), RCU.peakBacklog)
    }
}

func monotonicSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}
