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

        let outcomes = Mutex<[ScenarioOutcome]>([])
        let current = Mutex<ScenarioName?>(nil)
        let watchdog = Watchdog(
            limitSeconds: Double(scenarios.count) * options.duration + options.hangTimeout,
            stopAtFirstReport: !options.keepGoing,
            reportsExpected: { current.withLock { $0 } == .lockdep && options.injectInversion }
        ) { reason in
            // The run cannot finish (threads may be deadlocked): summarise what is known and leave.
            let failing = current.withLock { $0 }
            var known = outcomes.withLock { $0 }
            if let failing {
                known.append(ScenarioOutcome(
                    name: failing.rawValue, passed: false, counts: [:], failures: [reason], detail: ""))
            }
            finish(known, started: started).print()
        }
        for scenario in scenarios {
            current.withLock { $0 = scenario }
            say("ksync-stress: === \(scenario.rawValue) ===")
            let progress = options.quiet ? nil : ProgressReporter(scenario: scenario, started: started)
            let reportsBefore = Lockdep.reports.count
            var outcome = scenario.run(options)
            progress?.stop()
            let unaccounted = Lockdep.reports.count - reportsBefore - outcome.accountedReports
            if unaccounted > 0 {
                outcome.passed = false
                outcome.failures.append("\(unaccounted) validator report\(unaccounted == 1 ? "" : "s") beyond what the scenario checked")
            }
            if !options.quiet { say(outcome.detail, terminator: "") }
            say("ksync-stress: \(outcome.name): \(outcome.passed ? "PASS" : "FAIL")"
                + (outcome.failures.isEmpty ? "" : " — " + outcome.failures.joined(separator: "; ")))
            outcomes.withLock { $0.append(outcome) }
        }
        watchdog.stop()
        let summary = finish(outcomes.withLock { $0 }, started: started)
        summary.print()
        return summary
    }

    /// The summary of `outcomes`, written as JSON when asked for.
    private func finish(_ outcomes: [ScenarioOutcome], started: DispatchTime) -> StressSummary {
        let summary = StressSummary(
            seed: options.seed, threads: options.threads, durationSeconds: options.duration,
            elapsedSeconds: Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9,
            scenarios: outcomes, reports: Lockdep.reports.map(ReportSummary.init),
            maximumRCUBacklog: RCU.peakBacklog, lockStatistics: LockStatisticsSummary.collect())
        if let path = options.json {
            do {
                try SummaryWriter.write(summary, to: path)
            } catch {
                say("ksync-stress: could not write the JSON summary to \(path): \(error)")
            }
        }
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

/// The hung-task detector and the stop at the first report.
///
/// If the run has not finished `limitSeconds` after it started, it prints every thread's held locks (the
/// kernel's hung-task report and `debug_show_all_locks()`) and exits with status 2 instead of hanging.
/// With `stopAtFirstReport`, the first validator report that the running scenario did not ask for ends
/// the run with status 1 (like `panic_on_warn`): a lock-order report often precedes the very deadlock it
/// predicts, and waiting for it would only add a hang to the finding.
final class Watchdog: Sendable {
    /// How long the run goes on after its first report, so that findings racing with it are named too.
    static let settleMicroseconds: UInt32 = 300_000

    private let stopped = Atomic<Bool>(false)
    private let thread = Mutex<KernelThread?>(nil)

    init(
        limitSeconds: Double, stopAtFirstReport: Bool, reportsExpected: @escaping @Sendable () -> Bool,
        summarise: @escaping @Sendable (String) -> Void
    ) {
        let watcher = KernelThread(name: "stress-watchdog") { [self] in
            let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(limitSeconds * 1e9)
            var accounted = 0
            while !self.stopped.load(ordering: .acquiring) {
                let reports = Lockdep.reports
                if reportsExpected() { accounted = reports.count }
                if stopAtFirstReport, reports.count > accounted {
                    // Let the findings racing with the first one land too (a use after free and the lock
                    // cycle of the same bug often come within milliseconds), then name one of each kind.
                    usleep(Watchdog.settleMicroseconds)
                    var kinds = Set<LockdepReport.Kind>()
                    let findings = Lockdep.reports.dropFirst(accounted).filter { kinds.insert($0.kind).inserted }.map {
                        "\($0.kind) [\($0.classes.joined(separator: ", "))] at \($0.site) by \($0.thread)"
                    }
                    let reason = "stopped at the first validator report: " + findings.joined(separator: "; also ")
                    say("ksync-stress: \(reason) (--keep-going runs on)")
                    summarise(reason)
                    _exit(1)
                }
                if DispatchTime.now().uptimeNanoseconds >= deadline {
                    var report = "\nINFO: ksync-stress blocked for more than \(Int(limitSeconds)) seconds.\n"
                    report += "      a thread made no progress past the expected end of the run: a hang.\n"
                    report += Lockdep.describeAllHeldLocks()
                    FileHandle.standardError.write(report.data(using: .utf8)!)
                    summarise("hang detected by the watchdog after \(Int(limitSeconds)) s")
                    _exit(2)
                }
                usleep(50_000)
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

/// Writes a line to standard output at once, with one write(2) and no stdio buffer or lock, so that
/// progress reaches a pipe (CI, `tee`) as it happens and the watchdog can still print while other
/// threads are stuck.
func say(_ line: String, terminator: String = "\n") {
    FileHandle.standardOutput.write((line + terminator).data(using: .utf8)!)
}
