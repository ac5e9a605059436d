import Foundation
import IOMMUModel

/// Runs the jobs of a plan: per job a warm-up of each implementation (which also sizes the runs when
/// a duration is asked for), then the repetitions alternated A B A B …, then for KernelSync a run with
/// lock statistics for the group mutex's hold times.
final class Runner {
    struct Settings: Sendable {
        let repetitions: Int
        /// Fixed cycles per run, or nil to size runs to `seconds`.
        let cycles: Int?
        let seconds: Double
        /// Individual group-mutex holds to sample per configuration; 0 for none.
        let holdSamples: Int
        let cPeer: CPeer?
    }

    /// Cycles of the warm-up run of each implementation on each configuration.
    static let warmupCycles = 20_000

    let settings: Settings
    private let progress: Progress

    init(settings: Settings, jobs: [Job]) {
        self.settings = settings
        progress = Progress(totalRuns: jobs.reduce(0) { total, job in
            total + job.implementations.count * (settings.repetitions + 1)
                + (job.section == .throughput && job.variant != nil && settings.holdSamples > 0 ? 1 : 0)
        }, jobCount: jobs.count)
    }

    func run(_ job: Job) throws -> (rows: [ResultRow], ratios: [Ratio]) {
        progress.start(job)
        var cycles: [Implementation: Int] = [:]
        for implementation in job.implementations {
            let warmup = try runOnce(implementation, job, cycles: min(settings.cycles ?? Self.warmupCycles, Self.warmupCycles))
            progress.finishedRun()
            cycles[implementation] = settings.cycles
                ?? max(1_000, Int(warmup.cyclesPerSecond * settings.seconds))
        }
        var samples: [Implementation: [Sample]] = [:]
        for _ in 0..<settings.repetitions {
            for implementation in job.implementations {
                samples[implementation, default: []].append(try runOnce(implementation, job, cycles: cycles[implementation]!))
                progress.finishedRun()
            }
        }
        var holds: HoldTimes?
        if job.section == .throughput, let variant = job.variant, settings.holdSamples > 0 {
            let result = IOMMUWorkload.run(
                variant: variant, threads: job.threads, groups: job.groups, cycles: cycles[.kernelSync]!,
                holdTimeSamples: settings.holdSamples)
            holds = HoldTimes(nanoseconds: result.groupMutexHoldTimes)
            progress.finishedRun()
        }
        let rows = job.implementations.map { implementation in
            let runs = samples[implementation]!
            return ResultRow(
                section: job.section, variant: job.variant?.rawValue, implementation: implementation,
                threads: job.threads, groups: job.groups, readers: job.readers, cycles: cycles[implementation]!,
                cyclesPerSecond: Summary(runs.map(\.cyclesPerSecond)),
                readerPassesPerSecond: job.readers > 0 ? Summary(runs.map(\.readerPassesPerSecond)) : nil,
                groupMutexHold: implementation == .kernelSync ? holds : nil)
        }
        return (rows, Ratio.pairwise(job: job, samples: samples))
    }

    /// The most a plain-Swift peer's run may take: ten times a sized run, at least a second. Their
    /// locks can fall into a convoy with more writers than cores (Mutex+ARC at 8 writers on 2 cores ran
    /// at 0.02 M cycles/s against 13 M on one, and one configuration took minutes).
    private var peerTimeLimit: Duration { .milliseconds(Int(max(1.0, 10 * settings.seconds) * 1000)) }

    private func runOnce(_ implementation: Implementation, _ job: Job, cycles: Int) throws -> Sample {
        switch implementation {
        case .kernelSync, .kernelSyncValidator:
            let result = IOMMUWorkload.run(
                variant: job.variant!, threads: job.threads, groups: job.groups, cycles: cycles,
                validator: implementation == .kernelSyncValidator, readers: job.readers)
            return Sample(cycles: result.cycles, seconds: result.seconds, readerPasses: result.readerPasses)
        case .liburcu:
            guard let peer = settings.cPeer else { preconditionFailure("a job names the C peer, which is not built") }
            return try peer.run(variant: job.variant!, threads: job.threads, groups: job.groups, cycles: cycles,
                                readers: job.readers)
        case .nsLock:
            return LockedPeerWorkload.run(NSLockGroup.self, variant: job.variant, threads: job.threads, groups: job.groups,
                                          cycles: cycles, readers: job.readers, timeLimit: peerTimeLimit)
        case .mutex:
            return LockedPeerWorkload.run(MutexGroup.self, variant: job.variant, threads: job.threads, groups: job.groups,
                                          cycles: cycles, readers: job.readers, timeLimit: peerTimeLimit)
        }
    }
}

/// Progress lines on standard error: which configuration, how many of how many, about how long is left.
final class Progress {
    private let totalRuns: Int
    private let jobCount: Int
    private var runsDone = 0
    private var jobsStarted = 0
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant

    init(totalRuns: Int, jobCount: Int) {
        self.totalRuns = totalRuns
        self.jobCount = jobCount
        start = clock.now
    }

    func start(_ job: Job) {
        jobsStarted += 1
        let elapsed = seconds(clock.now - start)
        let left = runsDone > 0 ? " about \(Int((elapsed / Double(runsDone) * Double(totalRuns - runsDone)).rounded())) s left" : ""
        let line = "[\(jobsStarted)/\(jobCount)] \(job.title) — \(Int(elapsed)) s elapsed,\(left.isEmpty ? " estimating" : left)\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finishedRun() { runsDone += 1 }

    private func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
