import Glibc
@testable import KernelSync
import Synchronization

/// A one-way flag shared between test threads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// Values appended from several threads.
final class Recorder<Value: Sendable>: @unchecked Sendable {
    private let lock = PthreadMutex(errorChecking: false)
    /// Guarded by: lock.
    private var stored: [Value] = []
    func append(_ value: Value) { lock.withLock { stored.append(value) } }
    var values: [Value] { lock.withLock { stored } }
}

/// Polls `condition` every millisecond; false if it did not hold within `seconds` (a guard against a
/// hang, not a timing assertion).
func eventually(within seconds: Double = 30, _ condition: () -> Bool) -> Bool {
    let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
    while !condition() {
        if monotonicNanoseconds() > deadline { return false }
        usleep(1000)
    }
    return true
}

/// The reports of `kind` made at `line` of the calling test file.
func rcuReports(_ kind: LockdepReport.Kind, line: UInt, file: StaticString = #fileID) -> [LockdepReport] {
    Lockdep.reports.filter { $0.kind == kind && $0.site == "\(file):\(line)" }
}
