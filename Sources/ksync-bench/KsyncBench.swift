// ksync-bench: probe+remove cycles per second of the IOMMU model's remove-path variants on KernelSync,
// side by side with C + liburcu and plain Swift (NSLock, Mutex) doing the same work (DESIGN.md, "The
// benchmark workload"; issue 7).
import ArgumentParser
import Foundation
import IOMMUModel

@main
struct KsyncBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ksync-bench",
        abstract: "Throughput of the remove path, KernelSync against its peers, with tables, JSON and CSV.",
        discussion: """
            Sections: throughput (each variant × threads × groups, KernelSync against the C + liburcu peer \
            in the variant's shape, plus the NSLock and Mutex peers), mixed (writers with readers walking \
            the device lists: RCU against readers that take the lock), validator (on against off). Each \
            configuration gets a warm-up per implementation, then --repetitions runs alternated A B A B; \
            ratios are taken pair by pair. Build the C peer with scripts/bench-remove-path.sh.
            """)

    @Option(help: "Remove-path variants, comma-separated (\(RemoveVariant.allCases.map(\.rawValue).joined(separator: ","))).",
            transform: { try parseList($0, option: "--variants") { RemoveVariant(rawValue: $0) } })
    var variants: [RemoveVariant] = RemoveVariant.allCases

    @Option(help: "Writer thread counts, comma-separated.", transform: { try parseList($0, option: "--threads", positiveInteger) })
    var threads: [Int] = [1, 2, 4, 8]

    @Option(help: "Group counts, comma-separated.", transform: { try parseList($0, option: "--groups", positiveInteger) })
    var groups: [Int] = [1, 4, 64]

    @Option(help: "Sections to run, comma-separated (throughput,mixed,validator).",
            transform: { try parseList($0, option: "--sections") { Section(rawValue: $0) } })
    var sections: [Section] = Section.allCases

    @Option(help: "Timed runs per implementation and configuration (at least 1).")
    var repetitions = 5

    @Option(help: "Cycles per run (overrides --seconds).")
    var cycles: Int?

    @Option(help: "Seconds per run, sized from the warm-up's rate (more than 0).")
    var seconds = 0.25

    @Option(help: "Writer threads of the mixed run.")
    var mixedWriters = 1

    @Option(help: "Reader threads of the mixed run.")
    var mixedReaders = 1

    @Option(help: "Groups of the mixed run and of the validator comparison.")
    var mixedGroups = 4

    @Option(help: "Writer thread counts of the validator comparison, comma-separated.",
            transform: { try parseList($0, option: "--validator-threads", positiveInteger) })
    var validatorThreads: [Int] = [1, 2]

    @Option(help: "Group-mutex hold times sampled per configuration (0: no hold-time run).")
    var holdSamples = 100_000

    @Option(help: "The built C + liburcu peer (scripts/bench-remove-path.sh builds it); its rows are left out when it is missing.")
    var cPeer = ".build-bench-results/remove-peer"

    @Option(help: "Where results.json, results.csv and ratios.csv go.")
    var outputDir = ".build-bench-results"

    func validate() throws {
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1, got \(repetitions)") }
        if let cycles, cycles < 1 { throw ValidationError("--cycles must be at least 1, got \(cycles)") }
        guard seconds > 0, seconds.isFinite else { throw ValidationError("--seconds must be more than 0, got \(seconds)") }
        guard mixedWriters >= 1, mixedReaders >= 1, mixedGroups >= 1 else {
            throw ValidationError("--mixed-writers, --mixed-readers and --mixed-groups must be at least 1")
        }
        guard holdSamples >= 0 else { throw ValidationError("--hold-samples must not be negative, got \(holdSamples)") }
    }

    func run() throws {
        let peerBuilt = FileManager.default.isExecutableFile(atPath: cPeer)
        if !peerBuilt {
            FileHandle.standardError.write(Data("note: no C + liburcu peer at \(cPeer) (scripts/bench-remove-path.sh builds it): its rows are left out\n".utf8))
        }
        let plan = BenchPlan(
            sections: sections, variants: variants, threads: threads, groups: groups, mixedWriters: mixedWriters,
            mixedReaders: mixedReaders, mixedGroups: mixedGroups, validatorThreads: validatorThreads,
            withLiburcu: peerBuilt)
        let jobs = plan.jobs
        let runner = Runner(
            settings: .init(repetitions: repetitions, cycles: cycles, seconds: seconds, holdSamples: holdSamples,
                            cPeer: peerBuilt ? CPeer(executable: cPeer) : nil),
            jobs: jobs)
        var rows: [ResultRow] = []
        var ratios: [Ratio] = []
        for job in jobs {
            let result = try runner.run(job)
            rows += result.rows
            ratios += result.ratios
        }
        let report = Report(
            command: CommandLine.arguments.joined(separator: " "), date: ISO8601DateFormatter().string(from: Date()),
            repetitions: repetitions, rows: rows, ratios: ratios)
        print(ReportFormat.text(report), terminator: "")

        let directory = URL(fileURLWithPath: outputDir)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try ReportFormat.json(report).write(to: directory.appendingPathComponent("results.json"))
        try Data(ReportFormat.csv(rows).utf8).write(to: directory.appendingPathComponent("results.csv"))
        try Data(ReportFormat.ratiosCSV(ratios).utf8).write(to: directory.appendingPathComponent("ratios.csv"))
        print("\nwrote \(outputDir)/results.json, results.csv, ratios.csv")
    }
}
