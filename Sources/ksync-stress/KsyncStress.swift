// ksync-stress: rcutorture-style stress of KernelSync's primitives and of the IOMMU model.
import ArgumentParser
import Foundation
import IOMMUModel
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
    var scenario: ScenarioName = .iommu

    @Option(help: "iommu: the remove-path variant: \(RemoveVariant.allCases.map(\.rawValue).joined(separator: ", ")).")
    var variant: RemoveVariant = .deferredDisable

    @Option(help: "Worker threads per scenario (at least 1); iommu: threads that probe and remove.")
    var threads = 4

    @Option(help: "iommu: IOMMU groups (at least 1).")
    var groups = 4

    @Option(help: "iommu: devices per group (at least 1).")
    var devicesPerGroup = 3

    @Option(help: "iommu: chance that a probe is made to fail at one of its steps (0 to 1).")
    var probeFaultRate = 0.05

    @Option(help: "iommu: threads walking device lists under RCU (0 or more).")
    var readers = 1

    @Option(help: "iommu: longest random pause in µs of a reader (the report path too) inside its read section.")
    var readerDelay = 50

    @Option(help: "iommu: longest random pause in µs before the broken work touches its device (a busy pool).")
    var workDelay = 2_000

    @Option(help: "Seconds each scenario runs (more than 0).")
    var duration = 20.0

    @Option(help: "Seed of the per-thread generators (default: from the clock; printed either way).")
    var seed: UInt64?

    @Option(help: "Write the summary as JSON to this file.")
    var json: String?

    @Flag(help: "Print only the verdict and the summary, no progress lines.")
    var quiet = false

    @Option(help: "Seconds past the expected end after which the watchdog declares a hang (more than 0).")
    var hangTimeout = 30.0

    @Flag(help: "Keep running after the first validator report instead of stopping the run there.")
    var keepGoing = false

    @Flag(help: "rcu: grace periods that skip the wait for readers; the torture must then FAIL.")
    var breakGracePeriods = false

    @Flag(help: "lockdep: take one pair of locks in reverse order once; the validator must report it.")
    var injectInversion = false

    @Flag(help: "lockdep: deadlock two threads for real, so that the watchdog must report the hang.")
    var injectHang = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
        guard duration > 0, duration.isFinite else { throw ValidationError("--duration must be more than 0 seconds, got \(duration)") }
        guard groups >= 1 else { throw ValidationError("--groups must be at least 1, got \(groups)") }
        guard devicesPerGroup >= 1 else { throw ValidationError("--devices-per-group must be at least 1, got \(devicesPerGroup)") }
        guard (0...1).contains(probeFaultRate) else { throw ValidationError("--probe-fault-rate must be between 0 and 1, got \(probeFaultRate)") }
        guard readers >= 0 else { throw ValidationError("--readers must not be negative, got \(readers)") }
        guard readerDelay >= 0 else { throw ValidationError("--reader-delay must not be negative, got \(readerDelay)") }
        guard workDelay >= 0 else { throw ValidationError("--work-delay must not be negative, got \(workDelay)") }
        guard hangTimeout > 0, hangTimeout.isFinite else { throw ValidationError("--hang-timeout must be more than 0 seconds, got \(hangTimeout)") }
        if let json, !SummaryWriter.canWrite(to: json) {
            throw ValidationError("cannot write the JSON summary to \(json)")
        }
    }

    func run() throws {
        let options = StressOptions(
            threads: threads, duration: duration, seed: seed ?? UInt64(DispatchTime.now().uptimeNanoseconds),
            quiet: quiet, hangTimeout: hangTimeout, keepGoing: keepGoing, json: json,
            breakGracePeriods: breakGracePeriods,
            injectInversion: injectInversion, injectHang: injectHang,
            iommu: .init(
                variant: variant, seed: 0, durationSeconds: duration, threads: threads, groups: groups,
                devicesPerGroup: devicesPerGroup, probeFaultRate: probeFaultRate, readers: readers,
                readerDelayMicroseconds: readerDelay, workDelayMicroseconds: workDelay))
        let summary = StressRun(options: options, scenarios: scenario.expanded).run()
        if !summary.passed { throw ExitCode.failure }
    }
}

/// The scenarios by name.
enum ScenarioName: String, CaseIterable, ExpressibleByArgument {
    case iommu, rcu, workqueue, lockdep, all

    var expanded: [ScenarioName] { self == .all ? [.iommu, .rcu, .workqueue, .lockdep] : [self] }
}

extension RemoveVariant: ExpressibleByArgument {}

/// The command's options, as the scenarios see them.
struct StressOptions: Sendable {
    let threads: Int
    let duration: Double
    let seed: UInt64
    let quiet: Bool
    let hangTimeout: Double
    let keepGoing: Bool
    let json: String?
    let breakGracePeriods: Bool
    let injectInversion: Bool
    let injectHang: Bool
    /// The iommu scenario's settings; its seed is `seed`.
    let iommu: IOMMUTorture.Configuration
}
