/// One implementation on one configuration: the medians of its repetitions.
struct ResultRow: Codable, Sendable, Equatable {
    let section: Section
    /// The remove-path variant (raw value); nil for the lock peers' own configurations.
    let variant: String?
    let implementation: Implementation
    let threads: Int
    let groups: Int
    let readers: Int
    /// Cycles per run.
    let cycles: Int
    let cyclesPerSecond: Summary
    /// Reader list walks per second; nil without readers.
    let readerPassesPerSecond: Summary?
    /// The group mutex's hold time, from a separate run with lock statistics on (KernelSync only).
    let groupMutexHold: HoldTimes?
}

/// A bound a ratio should meet (issue 7, section 4).
struct Target: Codable, Sendable, Equatable {
    let bound: Double
    /// True: the ratio must be at most ``bound``; false: at least.
    let atMost: Bool

    func isMet(by ratio: Double) -> Bool { atMost ? ratio <= bound : ratio >= bound }

    var description: String { (atMost ? "≤ " : "≥ ") + String(format2: bound) + "x" }
}

/// What a ratio compares.
enum Metric: String, Codable, Sendable {
    case cyclesPerSecond = "cycles/s"
    case readerPassesPerSecond = "reader passes/s"
}

/// Numerator against denominator, repetition by repetition of one alternated run (A B A B …).
struct Ratio: Codable, Sendable, Equatable {
    let section: Section
    let variant: String?
    let threads: Int
    let groups: Int
    let readers: Int
    let metric: Metric
    let numerator: Implementation
    let denominator: Implementation
    /// The pair-by-pair ratios and their median.
    let ratio: Summary
    let target: Target?

    var targetMet: Bool? { target.map { $0.isMet(by: ratio.median) } }

    /// The target the issue sets for this comparison, if any.
    static func target(section: Section, variant: String?, threads: Int, metric: Metric,
                       numerator: Implementation, denominator: Implementation) -> Target? {
        switch (section, numerator, denominator) {
        case (.throughput, .kernelSync, .liburcu) where threads <= 2:
            // deferredDisable: grace periods shared between concurrent callers should beat liburcu.
            if variant == "deferredDisable" && threads == 2 { return Target(bound: 2, atMost: false) }
            return Target(bound: 0.9, atMost: false)
        case (.mixed, .kernelSync, .nsLock), (.mixed, .kernelSync, .mutex):
            return Target(bound: metric == .readerPassesPerSecond ? 3 : 1, atMost: false)
        case (.validator, .kernelSync, .kernelSyncValidator):
            return Target(bound: 2, atMost: true)
        default:
            return nil
        }
    }

    /// The ratios of `job`'s first implementation against each of the others, pair by pair.
    static func pairwise(job: Job, samples: [Implementation: [Sample]]) -> [Ratio] {
        guard let first = job.implementations.first, let base = samples[first] else { return [] }
        var metrics: [Metric] = [.cyclesPerSecond]
        if job.readers > 0 { metrics.append(.readerPassesPerSecond) }
        return job.implementations.dropFirst().flatMap { other -> [Ratio] in
            guard let against = samples[other] else { return [] }
            return metrics.compactMap { metric -> Ratio? in
                let values = zip(base, against).compactMap { a, b -> Double? in
                    let (x, y) = metric == .cyclesPerSecond
                        ? (a.cyclesPerSecond, b.cyclesPerSecond) : (a.readerPassesPerSecond, b.readerPassesPerSecond)
                    return y > 0 ? x / y : nil
                }
                guard !values.isEmpty else { return nil }
                return Ratio(
                    section: job.section, variant: job.variant?.rawValue, threads: job.threads, groups: job.groups,
                    readers: job.readers, metric: metric, numerator: first, denominator: other,
                    ratio: Summary(values),
                    target: target(section: job.section, variant: job.variant?.rawValue, threads: job.threads,
                                   metric: metric, numerator: first, denominator: other))
            }
        }
    }
}

extension String {
    /// `value` with two decimals, without Foundation's `String(format:)`.
    init(format2 value: Double) {
        let hundredths = (value * 100).rounded()
        let sign = hundredths < 0 ? "-" : ""
        let magnitude = Int(abs(hundredths))
        let fraction = magnitude % 100
        self = "\(sign)\(magnitude / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
