import IOMMUModel
import KernelSync
import Synchronization

/// What one scenario reports at the end.
struct ScenarioOutcome: Codable, Sendable {
    var name: String
    var passed: Bool
    /// Counts by kind (operations, runs, grace periods…).
    var counts: [String: Int]
    /// What failed, in words; empty on PASS.
    var failures: [String]
    /// The primitive's own end-of-test text (pipeline histogram and the like).
    var detail: String
    /// Validator reports the scenario examined itself (its verdict already says what they mean); any
    /// other report made while it ran fails it.
    var accountedReports = 0
}

extension ScenarioName {
    /// Runs the scenario to completion. Context: may sleep for the whole duration.
    func run(_ options: StressOptions) -> ScenarioOutcome {
        switch self {
        case .iommu: return runIOMMU(options)
        case .rcu: return runRCU(options)
        case .workqueue: return runWorkqueue(options)
        case .lockdep: return runLockdep(options)
        case .all: preconditionFailure("'all' is expanded before running")
        }
    }

    /// One line of live counters for the progress reporter.
    func progressLine() -> String {
        let reports = Lockdep.reports.count
        switch self {
        case .iommu:
            guard let counters = LiveSystem.current.withLock({ $0?.counters.snapshot }) else { return "starting" }
            return "probes \(counters.probes) (+\(counters.probeFailures) failed), removals \(counters.removals), "
                + "broken reports \(counters.reportsQueued), recoveries \(counters.recoveries), resets \(counters.resets), "
                + "group_devices live \(counters.liveGroupDevices), grace periods \(RCU.completedGracePeriods), "
                + "callbacks pending \(RCU.backlog), validator reports \(reports)"
        case .rcu, .all:
            return "grace periods \(RCU.completedGracePeriods), callbacks pending \(RCU.backlog), reports \(reports)"
        case .workqueue, .lockdep:
            return "reports \(reports), grace periods \(RCU.completedGracePeriods)"
        }
    }

    private func runIOMMU(_ options: StressOptions) -> ScenarioOutcome {
        var configuration = options.iommu
        configuration.seed = options.seed
        let result = IOMMUTorture.run(configuration) { system in LiveSystem.current.withLock { $0 = system } }
        LiveSystem.current.withLock { $0 = nil }
        let counters = result.counters
        var failures = result.violations
        for report in result.reports {
            failures.append("validator: \(report.kind) [\(report.classes.joined(separator: ", "))]")
        }
        if counters.removals == 0 { failures.append("no device was ever removed") }
        return ScenarioOutcome(
            name: "\(rawValue) (\(configuration.variant))", passed: result.passed,
            counts: [
                "probes": counters.probes, "probe failures": counters.probeFailures, "removals": counters.removals,
                "broken reports queued": counters.reportsQueued, "broken reports refused": counters.reportsRefused,
                "recoveries": counters.recoveries, "resets": counters.resets, "reader passes": result.readerPasses,
                "group_devices allocated": counters.groupDevicesAllocated, "group_devices freed": counters.groupDevicesFreed,
                "groups allocated": counters.groupsAllocated, "groups freed": counters.groupsFreed,
                "leaked group_devices": counters.liveGroupDevices, "leaked groups": counters.liveGroups,
                "model warnings": counters.warningCount,
            ],
            failures: failures, detail: result.description, accountedReports: result.reports.count)
    }

    private func runRCU(_ options: StressOptions) -> ScenarioOutcome {
        let result = RCUTorture.run(.init(
            seed: options.seed, durationSeconds: options.duration, readers: max(1, options.threads - 1),
            fakeWriters: 1, breakGracePeriods: options.breakGracePeriods))
        var failures: [String] = []
        if !result.passed {
            failures.append("\(result.errors) reader observations prove a too-short grace period")
        }
        return ScenarioOutcome(
            name: rawValue, passed: result.passed,
            counts: [
                "writes": result.writes, "grace periods": Int(result.gracePeriods),
                "poisoned observations": result.poisonedObservations,
                "reader observations": result.pipeline.reduce(0, +),
            ],
            failures: failures, detail: result.description)
    }

    private func runWorkqueue(_ options: StressOptions) -> ScenarioOutcome {
        let result = WorkqueueTorture.run(.init(
            seed: options.seed, threads: options.threads, items: 8, workers: 2, durationSeconds: options.duration))
        var failures: [String] = []
        if result.violations > 0 { failures.append("\(result.violations) work queue contract violations") }
        if result.peakConcurrency > 1 { failures.append("an item ran on \(result.peakConcurrency) workers at once") }
        if result.runs == 0 { failures.append("no work function ran") }
        return ScenarioOutcome(
            name: rawValue, passed: result.passed,
            counts: ["operations": result.operations, "work runs": result.runs, "cancelled": result.cancelled,
                     "violations": result.violations],
            failures: failures, detail: result.description)
    }

    private func runLockdep(_ options: StressOptions) -> ScenarioOutcome {
        if options.injectHang { InjectedDeadlock.run() }
        let result = LockdepTorture.run(.init(
            seed: options.seed, threads: options.threads, locks: 16, durationSeconds: options.duration,
            injectInversion: options.injectInversion))
        var failures: [String] = []
        if result.exclusionViolations > 0 { failures.append("\(result.exclusionViolations) locks lost updates") }
        if options.injectInversion && result.reports.map(\.kind) != [.circularDependency] {
            failures.append("the injected inversion was not reported as one circular dependency")
        }
        if !options.injectInversion && !result.reports.isEmpty {
            failures.append("\(result.reports.count) validator reports for a consistent lock order")
        }
        return ScenarioOutcome(
            name: rawValue, passed: result.passed,
            counts: ["acquisitions": result.acquisitions, "exclusion violations": result.exclusionViolations,
                     "reports": result.reports.count],
            failures: failures, detail: result.description, accountedReports: result.reports.count)
    }
}

/// Two threads that take two mutexes in opposite orders at the same time and so deadlock for real:
/// the watchdog must catch it. Only for proving the watchdog (`--inject-hang`).
enum InjectedDeadlock {
    static func run() {
        let first = KernelMutex(class: LockClass(name: "injected_hang_A"))
        let second = KernelMutex(class: LockClass(name: "injected_hang_B"))
        let bothHeld = AtomicCounter()
        let forward = KernelThread(name: "hang-forward") {
            first.lock()
            bothHeld.increment()
            while bothHeld.value < 2 {}
            second.lock()
        }
        let backward = KernelThread(name: "hang-backward") {
            second.lock()
            bothHeld.increment()
            while bothHeld.value < 2 {}
            first.lock()
        }
        forward.join()
        backward.join()
    }
}

/// The iommu scenario's system while it runs, for progress lines.
enum LiveSystem {
    static let current = Mutex<IOMMUSystem?>(nil)
}
