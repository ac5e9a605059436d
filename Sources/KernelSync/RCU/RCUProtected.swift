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
    @usableFromInline static let live: UInt8 = 0
    static let retired: UInt8 = 1
    @usableFromInline static let poisoned: UInt8 = 2

    /// live → retired (``RCU/retire(_:file:line:)``) → poisoned (after the grace period).
    ///
    /// Ordering: transitions happen under ``historyLock`` with the history they publish, and are stores
    /// with release; ``assertLive(file:line:)`` loads it with acquire, without the lock, and takes the
    /// lock only to read the history for its report.
    ///
    /// One byte, so that a subclass's first one-byte field (``RCUListElement``'s) shares its word.
    @usableFromInline let lifecycle = Atomic<UInt8>(RCUProtected.live)

    /// Serialises lifecycle transitions and the history of every protected object: the debug path only
    /// (retire and poison with ``RCU/debugReclamation`` on, and reports).
    /// `nonisolated(unsafe)`: a handle to a pthread mutex at a fixed address, thread-safe by design.
    nonisolated(unsafe) private static let historyLock = PthreadMutex()
    /// Guarded by: historyLock. Each retired object's history ("retired at …", "freed by …"), kept out
    /// of the objects themselves: only debug reclamation writes it, and two strings in every object
    /// would cost every allocation of a protected type 32 bytes. An entry goes with its object (deinit).
    nonisolated(unsafe) private static var histories: [ObjectIdentifier: [String]] = [:]

    public init() {}

    deinit {
        // Only a retired object can have a history; a live one never takes the lock here.
        if lifecycle.load(ordering: .relaxed) != RCUProtected.live {
            let key = ObjectIdentifier(self)
            RCUProtected.historyLock.withLock { _ = RCUProtected.histories.removeValue(forKey: key) }
        }
    }

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
        let earlier: String? = RCUProtected.historyLock.withLock {
            guard lifecycle.load(ordering: .relaxed) == RCUProtected.live else { return self.history }
            RCUProtected.histories[ObjectIdentifier(self)] = [history]
            lifecycle.store(RCUProtected.retired, ordering: .releasing)
            return nil
        }
        if let earlier {
            Lockdep.emit(RCUReportText.doubleRetire(object: objectName, history: earlier, site: "\(file):\(line)"))
        }
    }

    /// Marks the object freed. Context: the reclaimer, after the object's grace period.
    final func poison() {
        let freed = "freed by \(ThreadState.current.pointee.threadDescription) after grace period "
            + "#\(RCU.completedGracePeriods), \(monotonicNanoseconds() / 1_000_000) ms after boot"
        RCUProtected.historyLock.withLock {
            guard lifecycle.load(ordering: .relaxed) != RCUProtected.poisoned else { return }
            RCUProtected.histories[ObjectIdentifier(self), default: []].append(freed)
            lifecycle.store(RCUProtected.poisoned, ordering: .releasing)
        }
    }

    var objectName: String { "\(type(of: self))@\(ObjectIdentifier(self).debugDescription.suffix(14).dropLast())" }

    /// The history so far. Context: historyLock held.
    private var history: String {
        RCUProtected.histories[ObjectIdentifier(self)]?.joined(separator: "\n") ?? ""
    }

    @usableFromInline @inline(never)
    final func reportUseAfterFree(site: String) {
        let history = RCUProtected.historyLock.withLock { self.history }
        Lockdep.emit(RCUReportText.useAfterFree(object: objectName, history: history, site: site))
    }
}
