import Foundation
import KernelSync
import Synchronization

/// Runs the scenarios one after another with a progress reporter and a watchdog, and builds the summary.
struct StressRun {
    let options: StressOptions
    let scenarios: [ScenarioName]

    func run() -> StressSummary {
        Lockdep.lockStatisticsEnabled = true
        let started = DispatchTime.now()
        say("ksync-stress: scenarios \(scenarios.map(\.rawValue).joined(separator: ", ")), threads \(options.threads), "
              + "duration \(options.duration) s each, seed \(options.seed)")
        say("ksync-stress: replay with --seed \(options.seed)")

        let watchdog = Watchdog(limitSeconds: Double(scenarios.count) * options.duration + options.hangTimeout)
        var outcomes: [ScenarioOutcome] = []
        for scenario in scenarios {
            say("ksync-stress: === \(scenario.rawValue) ===")
            let progress = options.quiet ? nil : ProgressReporter(scenario: scenario, started: started)
            let outcome = scenario.run(options)
            progress?.stop()
            if !options.quiet { say(outcome.detail, terminator: "") }
            say("ksync-stress: \(scenario.rawValue): \(outcome.passed ? "PASS" : "FAIL")"
                  + (outcome.failures.isEmpty ? "" : " — " + outcome.failures.joined(separator: "; ")))
            outcomes.append(outcome)
        }
        watchdog.stop()

        let summary = StressSummary(
            seed: options.seed, threads: options.threads, durationSeconds: options.duration,
            elapsedSeconds: Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9,
            scenarios: outcomes, reports: Lockdep.reports.map(ReportSummary.init),
            maximumRCUBacklog: RCU.peakBacklog, lockStatistics: LockStatisticsSummary.collect())
        summary.print()
        return summary
    }
}

/// Prints a line of live counters every few seconds until stopped.
final class ProgressReporter: Sendable {
    private let stopped = Atomic<Bool>(false)
    private let thread = Mutex<KernelThread?>(nil)

    static let intervalSeconds = 3.0

    init(scenario: ScenarioName, started: DispatchTime) {
        let reporter = KernelThread(name: "stress-progress") { [self] in
            var next = DispatchTime.now().uptimeNanoseconds + UInt64(Self.intervalSeconds * 1e9)
            while !self.stopped.load(ordering: .acquiring) {
                usleep(100_000)
                let now = DispatchTime.now().uptimeNanoseconds
                guard now >= next else { continue }
                next = now + UInt64(Self.intervalSeconds * 1e9)
                let elapsed = Double(now - started.uptimeNanoseconds) / 1e9
                Swift.print(String(format: "[%7.1fs] ", elapsed) + "\(scenario.rawValue): \(scenario.progressLine())")
                fflush(nil)
            }
        }
        thread.withLock { $0 = reporter }
    }

    func stop() {
        stopped.store(true, ordering: .releasing)
        thread.withLock { $0?.join() }
    }
}

/// The hung-task detector: if the run has not finished `limitSeconds` after it started, prints every
/// thread's held locks (the kernel's hung-task report and `debug_show_all_locks()`) and exits with
/// status 2, instead of hanging.
final class Watchdog: Sendable {
    private let stopped = Atomic<Bool>(false)
    private let thread = Mutex<KernelThread?>(nil)

    init(limitSeconds: Double) {
        let watcher = KernelThread(name: "stress-watchdog") { [self] in
            let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(limitSeconds * 1e9)
            while !self.stopped.load(ordering: .acquiring) {
                if DispatchTime.now().uptimeNanoseconds >= deadline {
                    var report = "\nINFO: ksync-stress blocked for more than \(Int(limitSeconds)) seconds.\n"
                    report += "      a thread made no progress past the expected end of the run: a hang.\n"
                    report += Lockdep.describeAllHeldLocks()
                    report += "ksync-stress: verdict FAIL (hang detected by the watchdog)\n"
                    FileHandle.standardError.write(report.data(using: .utf8)!)
                    fflush(nil)
                    _exit(2)
                }
                usleep(100_000)
            }
        }
        thread.withLock { $0 = watcher }
    }

    func stop() {
        stopped.store(true, ordering: .releasing)
        thread.withLock { $0?.join() }
    }
}

/// A counter shared between threads.
final class AtomicCounter: Sendable {
    private let storage = Atomic<Int>(0)
    func increment() { storage.wrappingAdd(1, ordering: .sequentiallyConsistent) }
    var value: Int { storage.load(ordering: .sequentiallyConsistent) }
}

/// Prints a line and flushes it at once, so that progress reaches a pipe (CI, `tee`) as it happens.
func say(_ line: String, terminator: String = "\n") {
    Swift.print(line, terminator: terminator)
    fflush(nil)
}
