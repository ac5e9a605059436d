import Glibc
@testable import KernelSync
import Synchronization

/// The reports of `kind` made at `line` of the calling test file.
func rcuReports(_ kind: LockdepReport.Kind, line: UInt, file: StaticString = #fileID) -> [LockdepReport] {
    Lockdep.reports.filter { $0.kind == kind && $0.site == "\(file):\(line)" }
}
