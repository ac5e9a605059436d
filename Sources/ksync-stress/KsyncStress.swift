// ksync-stress: rcutorture-style stress of KernelSync's primitives and of the IOMMU model.
import ArgumentParser
import Foundation
import KernelSync

@main
struct KsyncStress: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ksync-stress",
        abstract: "Stress KernelSync on real threads and report PASS or FAIL.",
        discussion: """
            Each scenario runs for --duration seconds with seeded per-thread generators (the printed seed \
            replays the same operation sequences), prints progress lines, and ends with a verdict. The exit \
            status is 0 only on PASS; a hang is reported by a watchdog with every thread's held locks.
            """)

    @Argument(help: "What to stress: \(ScenarioName.allCases.map(\.rawValue).joined(separator: ", ")).")
    var scenario: ScenarioName = .all

    @Option(help: "Worker threads per scenario (at least 1).")
    var threads = 4

    @Option(help: "Seconds each scenario runs (more than 0).")
    var duration = 10.0

    @Option(help: "Seed of the per-thread generators (default: from the clock; printed either way).")
    var seed: UInt64?

    @Option(help: "Write the summary as JSON to this file.")
    var json: String?

    @Flag(help: "Print only the verdict and the summary, no progress lines.")
    var quiet = false

    @Option(help: "Seconds past the expected end after which the watchdog declares a hang (more than 0).")
    var hangTimeout = 60.0

    @Flag(help: "rcu: grace periods that skip the wait for readers; the torture must then FAIL.")
    var breakGracePeriods = false

    @Flag(help: "lockdep: take one pair of locks in reverse order once; the validator must report it.")
    var injectInversion = false

    @Flag(help: "lockdep: deadlock two threads for real, so that the watchdog must report the hang.")
    var injectHang = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
        guard duration > 0, duration.isFinite else { throw ValidationError("--duration must be more than 0 seconds, got \(duration)") }
        guard hangTimeout > 0, hangTimeout.isFinite else { throw ValidationError("--hang-timeout must be more than 0 seconds, got \(hangTimeout)") }
        if let json, !SummaryWriter.canWrite(to: json) {
            throw ValidationError("cannot write the JSON summary to \(json)")
        }
    }

    func run() throws {
        let options = StressOptions(
            threads: threads, duration: duration, seed: seed ?? UInt64(DispatchTime.now().uptimeNanoseconds),
            quiet: quiet, hangTimeout: hangTimeout, breakGracePeriods: breakGracePeriods,
            injectInversion: injectInversion, injectHang: injectHang)
        let summary = StressRun(options: options, scenarios: scenario.expanded).run()
        if let json { try SummaryWriter.write(summary, to: json) }
        if !summary.passed { throw ExitCode.failure }
    }
}

/// The scenarios by name.
enum ScenarioName: String, CaseIterable, ExpressibleByArgument {
    case rcu, workqueue, lockdep, all

    var expanded: [ScenarioName] { self == .all ? [.rcu, .workqueue, .lockdep] : [self] }
}

/// The command's options, as the scenarios see them.
struct StressOptions: Sendable {
    let threads: Int
    let duration: Double
    let seed: UInt64
    let quiet: Bool
    let hangTimeout: Double
    let breakGracePeriods: Bool
    let injectInversion: Bool
    let injectHang: Bool
}
