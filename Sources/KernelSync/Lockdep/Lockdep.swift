import CKernelSync
import Glibc

/// The lock validator: the userspace counterpart of the kernel's lockdep.
///
/// It proves locking bugs from runs that did not fail. Each acquisition is recorded as a dependency
/// between lock classes ("B taken while A held"); a new dependency that closes a cycle in that graph is
/// a possible deadlock, reported although this run never deadlocked, because some other interleaving
/// will. What it catches:
///
/// - lock-order inversions of any length (ABBA, ABC…CA), between mutexes and pseudo-locks (work items);
/// - recursive locking of one lock, or of two locks of one class without a nesting annotation;
/// - sleeping in atomic context or in an RCU read section (``mightSleep(_:file:line:)``);
/// - unlocking a mutex that is not held, or held by another thread;
/// - a thread that exits holding locks.
///
/// A held sequence that was validated once is remembered in a chain cache, so repeating it costs a
/// hash lookup. Reports are printed in the kernel's shape and kept as ``LockdepReport`` values.
///
/// The mode comes from the environment variable `KSYNC_LOCKDEP` (`off`, `report`, `abort`; `report`
/// when unset) and can be changed with ``mode``.
///
/// - Note: Mutex misuse that would otherwise be undefined behaviour or a hang (recursive lock, unlock by
///   a non-owner, unlock when not held) is detected from the owner glibc records and reported in every
///   mode, `off` included.
public enum Lockdep {
    /// What the validator does.
    public enum Mode: Int, Sendable, CaseIterable {
        /// No dependency tracking or context checks: a lock costs what a pthread mutex costs.
        case off = 0
        /// Validate, print and record reports, and continue.
        case report = 1
        /// Validate; on the first report print it and abort the process.
        case abort = 2

        /// Parses `off`, `report` or `abort`.
        public init?(name: String) {
            switch name.lowercased() {
            case "off", "0": self = .off
            case "report", "on", "1": self = .report
            case "abort": self = .abort
            default: return nil
            }
        }
    }

    /// Whether an assertion about a lock holds, when the validator can tell.
    public enum HeldState: Sendable, Equatable {
        case held
        case notHeld
        /// The validator is off and nothing else records who holds this lock.
        case unknown
    }

    /// The current mode. Set it at start, before locks are held: locks taken while the validator was
    /// off are unknown to it afterwards.
    public static var mode: Mode {
        get { Mode(rawValue: currentFlags & modeMask)! }
        set { setFlags(mode: newValue, statistics: lockStatisticsEnabled) }
    }

    /// Whether per-class lock statistics are collected (kernel `CONFIG_LOCK_STAT`); also set by
    /// `KSYNC_LOCK_STAT=1` at start.
    public static var lockStatisticsEnabled: Bool {
        get { currentFlags & statisticsFlag != 0 }
        set { setFlags(mode: mode, statistics: newValue) }
    }

    /// Every distinct report so far (up to 1,024), oldest first.
    public static var reports: [LockdepReport] { ReportLog.shared.all }

    /// The reports that involve `lockClass`, so concurrent tests can each look at their own classes.
    public static func reports(involving lockClass: LockClass) -> [LockdepReport] {
        reports.filter { $0.involves(lockClass) }
    }

    /// Forgets the reports kept so far (the dependency graph is kept: it describes the program).
    public static func clearReports() { ReportLog.shared.clear() }

    /// The locks the calling thread holds, outermost first, as "class at File.swift:line".
    /// Empty when the validator is off (nothing is tracked then).
    public static func heldLocks() -> [String] {
        ThreadState.current.pointee.heldLocks.map { "\(LockClass.nodeName($0.node)) at \($0.file):\($0.line)" }
    }

    /// The locks every live thread holds, as the kernel's `debug_show_all_locks()` prints them. Threads
    /// are not stopped: exact for blocked threads (the case that matters, a hang), a snapshot for others.
    /// Empty lists when the validator is off (nothing is tracked then).
    public static func describeAllHeldLocks() -> String { ThreadRegistry.shared.describeAllHeldLocks() }

    /// Every lock class created so far, in creation order (for lock statistics reports).
    public static var lockClasses: [LockClass] { LockClassRegistry.shared.all }

    /// Number of dependencies recorded so far.
    public static var dependencyCount: Int { validator.graphLock.withLock { validator.graph.edgeCount } }

    // MARK: Atomic context

    /// Enters atomic context, where sleeping is illegal: the stand-in for an interrupt handler or a
    /// preempt-disabled section. Nests.
    ///
    /// Kernel analogue: `preempt_disable()` / entering hard-irq context.
    public static func enterAtomicContext(_ reason: StaticString = "irq") {
        let state = ThreadState.current
        if state.pointee.atomicDepth == 0 { state.pointee.atomicReason = reason }
        state.pointee.atomicDepth += 1
    }

    /// Leaves atomic context. Leaving more often than entering is reported.
    ///
    /// Kernel analogue: `preempt_enable()` / leaving hard-irq context.
    public static func leaveAtomicContext(file: StaticString = #fileID, line: UInt = #line) {
        let state = ThreadState.current
        guard state.pointee.atomicDepth > 0 else {
            emit(ReportText.unbalancedAtomicContext(state: state, site: "\(file):\(line)"))
            return
        }
        state.pointee.atomicDepth -= 1
    }

    /// Runs `body` in atomic context.
    public static func withAtomicContext<R, E: Error>(
        _ reason: StaticString = "irq", _ body: () throws(E) -> R
    ) throws(E) -> R {
        enterAtomicContext(reason)
        defer { leaveAtomicContext() }
        return try body()
    }

    /// Whether the calling thread is in atomic context (`in_atomic()`).
    public static var inAtomicContext: Bool { ThreadState.current.pointee.atomicDepth > 0 }

    /// Declares that the caller is about to block: reports "sleeping function called from invalid
    /// context" in atomic context or inside an RCU read section. Every blocking call of KernelSync makes
    /// it (mutex lock, cancelSync, flush, synchronize).
    ///
    /// Kernel analogue: `might_sleep()`.
    ///
    /// - Parameters:
    ///   - what: the blocking call, for the report, such as "mutex_lock(group->mutex)".
    ///   - lockClass: the class of the lock or pseudo-lock being waited for, if any; the report lists it
    ///     among the classes involved.
    public static func mightSleep(
        _ what: @autoclosure () -> String, acquiring lockClass: LockClass? = nil,
        file: StaticString = #fileID, line: UInt = #line
    ) {
        guard isValidating else { return }
        let state = ThreadState.current
        if state.pointee.atomicDepth > 0 || state.pointee.readSections > 0 {
            reportSleep(state: state, what: what(), acquiring: lockClass, site: "\(file):\(line)")
        }
    }

    @inline(never)
    static func reportSleep(
        state: UnsafeMutablePointer<ThreadState>, what: String, acquiring lockClass: LockClass?, site: String
    ) {
        emit(ReportText.sleepInInvalidContext(state: state, what: what, acquiring: lockClass, site: site))
    }

    /// Whether `instance` (a pseudo-lock or lock identity) is on the calling thread's held stack.
    static func heldState(of instance: UnsafeRawPointer) -> HeldState {
        guard isValidating else { return .unknown }
        return ThreadState.current.pointee.index(of: instance) == nil ? .notHeld : .held
    }

    // MARK: Flags

    @usableFromInline static let modeMask = 0b11
    static let statisticsFlag = 0b100

    /// Whether the validator is on (``mode`` is not ``Mode/off``): one load of a C global. For code that
    /// takes a cheaper path when nothing is recorded, as the kernel tests `debug_locks`. The first call
    /// reads the environment.
    @inlinable
    public static var isValidating: Bool {
        let flags = ks_lockdep_flags_load()
        return flags > 0 ? flags & 0b11 != 0 : flags < 0 && currentFlags & modeMask != 0
    }

    /// Validator off and statistics off: locks take their plain pthread path. Reads the flags with one
    /// load (a C global: no lazy-initialisation check); "not read yet" (-1) is not idle.
    @inlinable
    static var isIdle: Bool { ks_lockdep_flags_load() == 0 }

    /// Mode in bits 0–1, statistics in bit 2, in the C global `ks_lockdep_flags`; -1 until first use,
    /// when `KSYNC_LOCKDEP` and `KSYNC_LOCK_STAT` are read.
    ///
    /// Ordering: relaxed; a mode change is not ordered with lock operations on other threads (set the
    /// mode before starting them).
    @usableFromInline
    static var currentFlags: Int {
        let flags = ks_lockdep_flags_load()
        if flags >= 0 { return Int(flags) }
        let initial = initialFlags()
        storeFlags(initial)
        return initial
    }

    private static func setFlags(mode: Mode, statistics: Bool) {
        storeFlags(mode.rawValue | (statistics ? statisticsFlag : 0))
    }

    /// Stores the flags, and mirrors "validating" into `ks_fast_path_flags`, which the RCU read side
    /// tests together with its own fence flag in one load.
    private static func storeFlags(_ flags: Int) {
        ks_lockdep_flags_store(Int32(flags))
        ks_fast_path_flags_set(KS_FLAG_LOCKDEP, flags & modeMask != 0 ? 1 : 0)
    }

    private static func initialFlags() -> Int {
        var mode = Mode.report
        if let raw = getenv("KSYNC_LOCKDEP") {
            let name = String(cString: raw)
            if let parsed = Mode(name: name) {
                mode = parsed
            } else {
                writeToStandardError("lockdep: KSYNC_LOCKDEP=\(name) is not one of off, report, abort; using report\n")
            }
        }
        let statistics = environmentFlag("KSYNC_LOCK_STAT")
        ks_fast_path_flags_set(KS_FLAG_LOCKDEP, mode == .off ? 0 : 1)
        return mode.rawValue | (statistics ? statisticsFlag : 0)
    }

    // MARK: Acquire and release

    /// Records that the calling thread acquires (or is about to block acquiring) `instance` of graph
    /// node `node`, validating the new held sequence unless the chain cache has seen it.
    ///
    /// Context: the validator is on (callers check ``isValidating`` first).
    @inlinable @inline(__always)
    static func acquire(
        node: Int, instance: UnsafeRawPointer, kind: HeldLockKind, trylock: Bool,
        file: StaticString, line: UInt
    ) {
        let state = ThreadState.current
        let depth = state.pointee.depth
        let previousKey = depth == 0 ? ChainCache.initialKey : state.pointee.held[depth - 1].chainKey
        guard kind != .readSection else {
            state.pointee.readSections += 1
            state.pointee.push(HeldLock(
                node: node, instance: instance, chainKey: previousKey, kind: kind, trylock: trylock,
                file: file, line: line))
            return
        }
        let key = ChainCache.extend(previousKey, node: node, trylock: trylock)
        if !ChainCache.shared.contains(key) {
            validateChain(state: state, node: node, instance: instance, trylock: trylock, key: key,
                          file: file, line: line)
        }
        state.pointee.push(HeldLock(
            node: node, instance: instance, chainKey: key, kind: kind, trylock: trylock, file: file, line: line))
    }

    /// Removes `instance` from the calling thread's held stack. Returns false when it was not there.
    /// The common case, releasing the innermost lock, is inline.
    @inlinable @inline(__always)
    @discardableResult
    static func release(instance: UnsafeRawPointer) -> Bool {
        let state = ThreadState.current
        let depth = state.pointee.depth
        if depth > 0 && state.pointee.held[depth - 1].instance == instance
            && state.pointee.held[depth - 1].kind != .readSection {
            state.pointee.depth = depth - 1
            return true
        }
        return releaseOutOfOrder(state: state, instance: instance)
    }

    @usableFromInline @inline(never)
    static func releaseOutOfOrder(state: UnsafeMutablePointer<ThreadState>, instance: UnsafeRawPointer) -> Bool {
        guard let index = state.pointee.index(of: instance) else { return false }
        if state.pointee.held[index].kind == .readSection { state.pointee.readSections -= 1 }
        state.pointee.remove(at: index)
        return true
    }

    /// The slow path of ``acquire``: checks recursion and every new dependency under the graph lock.
    @usableFromInline @inline(never)
    static func validateChain(
        state: UnsafeMutablePointer<ThreadState>, node: Int, instance: UnsafeRawPointer, trylock: Bool,
        key: UInt64, file: StaticString, line: UInt
    ) {
        let site = "\(file):\(line)"
        let held = state.pointee.heldLocks.filter { $0.kind != .readSection }
        let finding: LockdepReport? = validator.graphLock.withLock {
            // A trylock cannot deadlock: no recursion check and no dependency into it.
            if !trylock {
                if let same = held.last(where: { $0.node == node }) {
                    return ReportText.recursiveLocking(state: state, node: node, site: site, held: same)
                }
                var seen = Set<Int>()
                for previous in held.reversed() where seen.insert(previous.node).inserted {
                    let edge = DependencyGraph.Edge(from: previous.node, to: node)
                    if validator.graph.contains(edge) { continue }
                    if let path = validator.graph.path(from: node, to: previous.node) {
                        return ReportText.circularDependency(
                            state: state, acquiring: node, site: site, held: previous, path: path,
                            graph: validator.graph)
                    }
                    validator.graph.add(edge, .init(
                        heldSite: "\(previous.file):\(previous.line)", acquiredSite: site,
                        thread: state.pointee.threadDescription))
                }
            }
            if !ChainCache.shared.insert(key) && !validator.chainCacheFull {
                validator.chainCacheFull = true
                writeToStandardError("lockdep: the chain cache is full (\(ChainCache.slotCount) slots); new lock "
                    + "sequences are now validated on every acquisition (the kernel's MAX_LOCKDEP_CHAINS too low)\n")
            }
            return nil
        }
        if let finding { emit(finding) }
    }

    /// Records and prints a report according to the mode; aborts in abort mode.
    static func emit(_ report: LockdepReport) {
        ReportLog.shared.emit(report, mode: mode)
    }

    static func reportLocksHeldAtExit(_ state: UnsafeMutablePointer<ThreadState>) {
        emit(ReportText.locksHeldAtExit(state: state))
    }
}

/// The validator's shared state.
final class Validator: @unchecked Sendable {
    /// Serialises graph updates and slow-path validation (the kernel's `lockdep_lock`). Never taken on a
    /// chain-cache hit.
    let graphLock = PthreadMutex()
    /// Guarded by: graphLock.
    var graph = DependencyGraph()
    /// Guarded by: graphLock. Set when a chain could not be cached; it is then revalidated each time.
    var chainCacheFull = false
}

let validator = Validator()
