import Glibc

/// Where reports go: kept as values, printed without flooding, and fatal in abort mode.
///
/// The first report of each kind is printed in full. A later, different report of the same kind prints
/// one line; the same report again (same kind, classes and site) only increments its count. The kernel
/// turns lockdep off after its first report; we keep validating and keep every distinct finding.
final class ReportLog: @unchecked Sendable {
    static let shared = ReportLog()

    /// Distinct reports kept; past this, new ones are counted in ``dropped`` only.
    static let capacity = 1024

    private let lock = PthreadMutex()
    /// Guarded by: lock.
    private var reports: [LockdepReport] = []
    /// Guarded by: lock. Index in `reports` by identity (kind, classes, site).
    private var indexByIdentity: [String: Int] = [:]
    /// Guarded by: lock.
    private var printedKinds: Set<LockdepReport.Kind> = []
    /// Guarded by: lock.
    private(set) var dropped = 0

    var all: [LockdepReport] { lock.withLock { reports } }

    func clear() {
        lock.withLock {
            reports.removeAll()
            indexByIdentity.removeAll()
            printedKinds.removeAll()
            dropped = 0
        }
    }

    /// Records `report`, prints what the flood policy allows, and aborts the process in abort mode
    /// (after printing the report in full, whatever the policy).
    ///
    /// Context: must not be called with the validator's graph lock held (printing may be slow).
    func emit(_ report: LockdepReport, mode: Lockdep.Mode) {
        let identity = "\(report.kind.rawValue)|\(report.classes.joined(separator: ","))|\(report.site)"
        let output: String? = lock.withLock {
            if let index = indexByIdentity[identity] {
                reports[index].occurrences += 1
                return mode == .abort ? report.text : nil
            }
            if reports.count < ReportLog.capacity {
                indexByIdentity[identity] = reports.count
                reports.append(report)
            } else {
                dropped += 1
            }
            if mode == .abort || printedKinds.insert(report.kind).inserted {
                return report.text
            }
            return "lockdep: another \(report.kind) report: \(report.classes.joined(separator: " -> ")) at \(report.site) (full text in Lockdep.reports)\n"
        }
        if let output { writeToStandardError(output) }
        if mode == .abort {
            writeToStandardError("lockdep: aborting (KSYNC_LOCKDEP=abort)\n")
            abort()
        }
    }
}
