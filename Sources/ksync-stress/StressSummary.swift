import Foundation
import KernelSync

/// The end of a run: the verdict and what backs it. Printed, and written as JSON with `--json`.
struct StressSummary: Codable {
    var seed: UInt64
    var threads: Int
    var durationSeconds: Double
    var elapsedSeconds: Double
    var scenarios: [ScenarioOutcome]
    var reports: [ReportSummary]
    var maximumRCUBacklog: Int
    var lockStatistics: [LockStatisticsSummary]

    var passed: Bool { scenarios.allSatisfy(\.passed) }
    var verdict: String { passed ? "PASS" : "FAIL" }

    func print() {
        say("ksync-stress: ===== summary =====")
        for outcome in scenarios {
            let counts = outcome.counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            say("  \(outcome.name): \(outcome.passed ? "PASS" : "FAIL")"
                + (counts.isEmpty ? "" : "; " + counts.joined(separator: ", ")))
            for failure in outcome.failures { say("    failure: \(failure)") }
        }
        say("  validator reports: \(reports.count)\(reports.isEmpty ? "" : " — " + reports.map(\.description).joined(separator: "; "))")
        say("  maximum RCU callback backlog: \(maximumRCUBacklog)")
        say("  lock statistics (class: acquisitions, contentions, max hold µs):")
        for statistics in lockStatistics.prefix(12) {
            say("    \(statistics.lockClass): \(statistics.acquisitions), \(statistics.contentions), "
                        + String(format: "%.1f", Double(statistics.maximumHoldNanoseconds) / 1000))
        }
        say(String(format: "ksync-stress: elapsed %.1f s, seed %llu", elapsedSeconds, seed))
        say("ksync-stress: verdict \(verdict)")
    }
}

struct ReportSummary: Codable, CustomStringConvertible {
    var kind: String
    var classes: [String]
    var thread: String
    var site: String
    var occurrences: Int

    init(_ report: LockdepReport) {
        kind = report.kind.rawValue
        classes = report.classes
        thread = report.thread
        site = report.site
        occurrences = report.occurrences
    }

    var description: String { "\(kind) [\(classes.joined(separator: ", "))] ×\(occurrences)" }
}

struct LockStatisticsSummary: Codable {
    var lockClass: String
    var acquisitions: Int
    var contentions: Int
    var maximumHoldNanoseconds: UInt64
    var maximumWaitNanoseconds: UInt64

    /// The classes that were used, busiest first.
    static func collect() -> [LockStatisticsSummary] {
        Lockdep.lockClasses.compactMap { lockClass in
            let snapshot = lockClass.statistics.snapshot
            guard snapshot.acquisitions > 0 else { return nil }
            return LockStatisticsSummary(
                lockClass: lockClass.name, acquisitions: snapshot.acquisitions, contentions: snapshot.contentions,
                maximumHoldNanoseconds: snapshot.holdNanosecondsMaximum,
                maximumWaitNanoseconds: snapshot.waitNanosecondsMaximum)
        }.sorted { $0.acquisitions > $1.acquisitions }
    }
}

/// Writes the JSON summary.
enum SummaryWriter {
    /// Whether `path` can be written: an existing writable file, or a new file in a writable folder.
    static func canWrite(to path: String) -> Bool {
        let files = FileManager.default
        var isFolder: ObjCBool = false
        if files.fileExists(atPath: path, isDirectory: &isFolder) {
            return !isFolder.boolValue && files.isWritableFile(atPath: path)
        }
        let folder = (path as NSString).deletingLastPathComponent
        return files.isWritableFile(atPath: folder.isEmpty ? "." : folder)
    }

    static func write(_ summary: StressSummary, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(summary).write(to: URL(fileURLWithPath: path))
    }
}
