// Uncontended lock+unlock pairs and a two-thread contended case, for KernelMutex (validator off, and on
// with a cached chain) against a raw pthread mutex, Synchronization.Mutex and Foundation's NSLock.
//
// Each benchmark iteration does 1,000 pairs (scalingFactor .kilo), so the reported time is per pair.
// Ratios against "uncontended: pthread raw (baseline)" are computed by scripts/bench.sh from one run.
import Benchmark
import Foundation
import Glibc
import KernelSync
import Synchronization

/// A default (PTHREAD_MUTEX_NORMAL) mutex at a fixed address: the baseline.
final class RawPthreadMutex: @unchecked Sendable {
    let handle = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    init() { pthread_mutex_init(handle, nil) }
    deinit {
        pthread_mutex_destroy(handle)
        handle.deallocate()
    }
    @inline(__always) func lock() { pthread_mutex_lock(handle) }
    @inline(__always) func unlock() { pthread_mutex_unlock(handle) }
}

/// Runs `body` on two threads at once and waits for both.
func onTwoThreads(_ body: @escaping @Sendable () -> Void) {
    KernelThread.runAll(count: 2, name: "contender") { _ in body() }
}

/// Pairs done by each thread per contended iteration (1,000 per thread: the scaling factor).
let contendedPairsPerThread = 1_000

let benchmarks: @Sendable () -> Void = {
    let pairs = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .instructions],
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 100_000)
    let contended = Benchmark.Configuration(
        metrics: [.wallClock, .throughput],
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 2_000)

    let raw = RawPthreadMutex()
    Benchmark("uncontended: pthread raw (baseline)", configuration: pairs) { benchmark in
        for _ in benchmark.scaledIterations {
            raw.lock()
            raw.unlock()
        }
    }

    let kernelOff = KernelMutex(name: "bench_off")
    Benchmark("uncontended: KernelMutex validator off", configuration: pairs, closure: { benchmark in
        for _ in benchmark.scaledIterations {
            kernelOff.lock()
            kernelOff.unlock()
        }
    }, setup: { Lockdep.mode = .off })

    let kernelOn = KernelMutex(name: "bench_on")
    Benchmark("uncontended: KernelMutex validator on, cached chain", configuration: pairs, closure: { benchmark in
        for _ in benchmark.scaledIterations {
            kernelOn.lock()
            kernelOn.unlock()
        }
    }, setup: { Lockdep.mode = .report }, teardown: { Lockdep.mode = .off })

    let outer = KernelMutex(name: "bench_outer")
    let inner = KernelMutex(name: "bench_inner")
    Benchmark("uncontended: KernelMutex validator on, two nested (2 pairs), cached chain", configuration: pairs, closure: { benchmark in
        for _ in benchmark.scaledIterations {
            outer.lock()
            inner.lock()
            inner.unlock()
            outer.unlock()
        }
    }, setup: { Lockdep.mode = .report }, teardown: { Lockdep.mode = .off })

    let swiftMutex = Synchronization.Mutex(0)
    Benchmark("uncontended: Synchronization.Mutex", configuration: pairs) { benchmark in
        for _ in benchmark.scaledIterations {
            swiftMutex.withLock { $0 &+= 1 }
        }
    }

    let nsLock = NSLock()
    Benchmark("uncontended: NSLock", configuration: pairs) { benchmark in
        for _ in benchmark.scaledIterations {
            nsLock.lock()
            nsLock.unlock()
        }
    }

    Benchmark("contended 2 threads: pthread raw (baseline)", configuration: contended) { _ in
        onTwoThreads {
            for _ in 0..<contendedPairsPerThread {
                raw.lock()
                raw.unlock()
            }
        }
    }

    Benchmark("contended 2 threads: KernelMutex validator off", configuration: contended, closure: { _ in
        onTwoThreads {
            for _ in 0..<contendedPairsPerThread {
                kernelOff.lock()
                kernelOff.unlock()
            }
        }
    }, setup: { Lockdep.mode = .off })

    Benchmark("contended 2 threads: KernelMutex validator on", configuration: contended, closure: { _ in
        onTwoThreads {
            for _ in 0..<contendedPairsPerThread {
                kernelOn.lock()
                kernelOn.unlock()
            }
        }
    }, setup: { Lockdep.mode = .report }, teardown: { Lockdep.mode = .off })
}
