import Synchronization

/// A base class for objects that readers reach under RCU and that are freed through
/// ``RCU/retire(_:file:line:)``: with ``RCU/debugReclamation`` on, a retired object is poisoned when
/// its grace period has passed, and ``assertLive(file:line:)`` — which the code calls on each access —
/// reports a use after free with the object's history: where and by whom it was retired, in which grace
/// period, and when it was freed.
///
/// ```swift
/// final class GroupDevice: RCUProtected { let name: String; … }
/// device.assertLive()          // on every access by a reader or a work item
/// ```
///
/// Kernel analogue: KASAN's quarantine and use-after-free report for `kfree_rcu()`'d memory.
///
/// - Note: ARC keeps the memory of a Swift object alive while anybody holds a reference, so "freed"
///   here means logically freed: the point where the kernel would have handed the memory back.
open class RCUProtected: @unchecked Sendable {
    @usableFromInline static let live = 0
    static let retired = 1
    @usableFromInline static let poisoned = 2

    /// live → retired (``RCU/retire(_:file:line:)``) → poisoned (after the grace period).
    ///
    /// Ordering: each transition is a release after writing the history it publishes; readers of the
    /// history load it with acquire first (``assertLive(file:line:)``, a second retire).
    @usableFromInline let lifecycle = Atomic<Int>(RCUProtected.live)

    /// Guarded by: written once before the release transition to retired; read after an acquire load
    /// that saw retired or poisoned.
    private var retiredBy = ""
    /// Guarded by: as `retiredBy`, for the transition to poisoned.
    private var freedBy = ""

    public init() {}

    /// Reports an access to the object after its grace period (with ``RCU/debugReclamation`` on).
    ///
    /// Kernel analogue: the KASAN check on a load or store.
    @inlinable
    public final func assertLive(file: StaticString = #fileID, line: UInt = #line) {
        if _slowPath(lifecycle.load(ordering: .acquiring) == RCUProtected.poisoned) {
            reportUseAfterFree(site: "\(file):\(line)")
        }
    }

    /// Whether the object was poisoned by debug reclamation.
    public final var isPoisoned: Bool { lifecycle.load(ordering: .acquiring) == RCUProtected.poisoned }

    /// Records the retire, or reports a second one. Does nothing with debug reclamation off.
    final func markRetired(file: StaticString, line: UInt) {
        guard RCU.debugReclamation else { return }
        let history = "retired at \(file):\(line) by \(ThreadState.current.pointee.threadDescription) "
            + "after grace period #\(RCU.completedGracePeriods)"
        let previous = lifecycle.load(ordering: .acquiring)
        guard previous == RCUProtected.live else {
            Lockdep.emit(RCUReportText.doubleRetire(
                object: objectName, history: self.history, site: "\(file):\(line)"))
            return
        }
        retiredBy = history
        lifecycle.store(RCUProtected.retired, ordering: .releasing)
    }

    /// Marks the object freed. Context: the reclaimer, after the object's grace period.
    final func poison() {
        guard lifecycle.load(ordering: .acquiring) != RCUProtected.poisoned else { return }
        freedBy = "freed by \(ThreadState.current.pointee.threadDescription) after grace period "
            + "#\(RCU.completedGracePeriods), \(monotonicNanoseconds() / 1_000_000) ms after boot"
        lifecycle.store(RCUProtected.poisoned, ordering: .releasing)
    }

    var objectName: String { "\(type(of: self))@\(ObjectIdentifier(self).debugDescription.suffix(14).dropLast())" }

    /// The history so far. Context: after an acquire load of ``lifecycle``.
    private var history: String {
        [retiredBy, freedBy].filter { !$0.isEmpty }.joined(separator: "\n")
    }

    @usableFromInline @inline(never)
    final func reportUseAfterFree(site: String) {
        Lockdep.emit(RCUReportText.useAfterFree(object: objectName, history: history, site: site))
    }
}
