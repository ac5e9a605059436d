import CKernelSync
import Glibc

/// What kind of lock a held-lock entry stands for; decides which checks apply to it.
@usableFromInline
enum HeldLockKind: UInt8 {
    /// A sleeping lock (``KernelMutex``).
    case mutex
    /// A pseudo-lock (``LockdepMap``) that takes part in dependency checking, such as a work item.
    case pseudo
    /// A pseudo-lock that is only tracked as held (an RCU read section): it adds no dependencies, and
    /// sleeping while it is held is reported.
    case readSection
}

/// One entry of a thread's held-lock stack (the kernel's `struct held_lock`). Trivial, so the stack is a
/// plain buffer with no reference counting on the hot path.
@usableFromInline
struct HeldLock {
    /// The class slot: class index × ``LockClass/maximumSubclasses`` + subclass.
    @usableFromInline var node: Int
    /// The lock instance (the pthread mutex address, or the pseudo-lock object).
    @usableFromInline var instance: UnsafeRawPointer
    /// Chain key of the held sequence up to and including this entry.
    @usableFromInline var chainKey: UInt64
    @usableFromInline var kind: HeldLockKind
    @usableFromInline var trylock: Bool
    @usableFromInline var file: StaticString
    @usableFromInline var line: UInt

    @inlinable
    init(node: Int, instance: UnsafeRawPointer, chainKey: UInt64, kind: HeldLockKind, trylock: Bool,
         file: StaticString, line: UInt) {
        self.node = node
        self.instance = instance
        self.chainKey = chainKey
        self.kind = kind
        self.trylock = trylock
        self.file = file
        self.line = line
    }
}

/// Per-thread validator state, reached through one TLS load (`ks_thread_state`).
///
/// Owned by its thread: only that thread reads or writes it, except the name, which reports of other
/// threads read through ``ThreadRegistry``. Allocated on first use, freed at thread exit by a
/// pthread-key destructor, which also reports a thread that exits holding locks.
@usableFromInline
struct ThreadState {
    @usableFromInline var held: UnsafeMutablePointer<HeldLock>
    @usableFromInline var depth: Int
    @usableFromInline var capacity: Int
    /// Nesting of atomic-context sections (``Lockdep/enterAtomicContext(_:)``).
    @usableFromInline var atomicDepth: Int
    /// Why the outermost atomic section was entered, for the report.
    var atomicReason: StaticString
    /// Number of held read-section pseudo-locks (RCU read side).
    @usableFromInline var readSections: Int
    let threadID: Int32
    var name: String

    /// The calling thread's state, created on first use.
    @inlinable
    static var current: UnsafeMutablePointer<ThreadState> {
        @inline(__always) get {
            if let raw = ks_thread_state_get() {
                return raw.assumingMemoryBound(to: ThreadState.self)
            }
            return makeCurrent()
        }
    }

    @usableFromInline @inline(never)
    static func makeCurrent() -> UnsafeMutablePointer<ThreadState> {
        let state = UnsafeMutablePointer<ThreadState>.allocate(capacity: 1)
        let capacity = 16
        state.initialize(to: ThreadState(
            held: .allocate(capacity: capacity), depth: 0, capacity: capacity,
            atomicDepth: 0, atomicReason: "", readSections: 0,
            threadID: ks_gettid(), name: currentThreadName()))
        ks_thread_state_set(state)
        threadExitKey.set(state)
        ThreadRegistry.shared.register(state)
        return state
    }

    /// Pushes an entry, growing the stack when needed (the kernel's stack is fixed at 48; ours grows).
    @inlinable @inline(__always)
    mutating func push(_ entry: HeldLock) {
        if _slowPath(depth == capacity) { grow() }
        (held + depth).initialize(to: entry)
        depth += 1
    }

    @usableFromInline @inline(never)
    mutating func grow() {
        let larger = UnsafeMutablePointer<HeldLock>.allocate(capacity: capacity * 2)
        larger.moveInitialize(from: held, count: depth)
        held.deallocate()
        held = larger
        capacity *= 2
    }

    /// Index of the topmost entry for `instance`, or nil.
    func index(of instance: UnsafeRawPointer) -> Int? {
        var index = depth - 1
        while index >= 0 {
            if held[index].instance == instance { return index }
            index -= 1
        }
        return nil
    }

    /// Removes the entry at `index` and recomputes the chain keys of the entries above it, as the kernel
    /// does when locks are released out of order. A read-section entry keeps the key below it, as
    /// ``Lockdep/acquire(node:instance:kind:trylock:file:line:)`` gives it.
    mutating func remove(at index: Int) {
        var key = index == 0 ? ChainCache.initialKey : held[index - 1].chainKey
        var position = index
        while position + 1 < depth {
            var entry = held[position + 1]
            if entry.kind != .readSection { key = ChainCache.extend(key, node: entry.node, trylock: entry.trylock) }
            entry.chainKey = key
            held[position] = entry
            position += 1
        }
        depth -= 1
    }

    /// A snapshot of the held locks, for reports and ``Lockdep/heldLocks()``.
    var heldLocks: [HeldLock] { (0..<depth).map { held[$0] } }

    var threadDescription: String { "\(name)/\(threadID)" }
}

/// The name of the calling thread as pthread knows it.
private func currentThreadName() -> String {
    var buffer = [CChar](repeating: 0, count: 32)
    if ks_get_thread_name(&buffer, Int32(buffer.count)) == 0 {
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    return "thread"
}

/// The pthread key whose destructor runs when a thread that used KernelSync exits.
private let threadExitKey = ThreadExitKey { raw in
    guard let raw else { return }
    let state = raw.assumingMemoryBound(to: ThreadState.self)
    if state.pointee.depth > 0 {
        Lockdep.reportLocksHeldAtExit(state)
    }
    ThreadRegistry.shared.unregister(state.pointee.threadID)
    ks_thread_state_set(nil)
    state.pointee.held.deallocate()
    state.deinitialize(count: 1)
    state.deallocate()
}

/// Thread id → name, so that a report can name the thread that owns a lock.
final class ThreadRegistry: @unchecked Sendable {
    static let shared = ThreadRegistry()

    private let lock = PthreadMutex()
    /// Guarded by: lock.
    private var names: [Int32: String] = [:]
    /// Guarded by: lock. The state of every live thread that used KernelSync; an entry is removed before
    /// its state is freed.
    private var states: [Int32: UnsafeMutablePointer<ThreadState>] = [:]

    func register(_ state: UnsafeMutablePointer<ThreadState>) {
        lock.withLock {
            names[state.pointee.threadID] = state.pointee.name
            states[state.pointee.threadID] = state
        }
    }

    func rename(_ threadID: Int32, to name: String) {
        lock.withLock { names[threadID] = name }
    }

    func unregister(_ threadID: Int32) {
        lock.withLock {
            names.removeValue(forKey: threadID)
            states.removeValue(forKey: threadID)
        }
    }

    /// The held locks of every live thread, read without stopping them (the kernel's
    /// `debug_show_all_locks()`): a snapshot for hang reports, exact only for threads that are blocked.
    func describeAllHeldLocks() -> String {
        lock.withLock {
            var text = "\nShowing all locks held in the system:\n"
            for (threadID, state) in states.sorted(by: { $0.key < $1.key }) {
                let held = state.pointee.held
                let depth = min(state.pointee.depth, state.pointee.capacity)
                guard depth > 0 else { continue }
                let name = names[threadID] ?? "thread"
                text += "\(depth) lock\(depth == 1 ? "" : "s") held by \(name)/\(threadID):\n"
                for index in 0..<depth {
                    let entry = held[index]
                    text += " #\(index): (\(LockClass.nodeName(entry.node))), at: \(entry.file):\(entry.line)\n"
                }
            }
            return text + "=============================================\n"
        }
    }

    /// "name/tid" of a live thread, or "tid" when it never used KernelSync.
    func describe(_ threadID: Int32) -> String {
        lock.withLock { names[threadID].map { "\($0)/\(threadID)" } ?? "thread/\(threadID)" }
    }
}

extension ThreadState {
    /// Names the calling thread in reports.
    static func setCurrentName(_ name: String) {
        let state = current
        state.pointee.name = name
        ThreadRegistry.shared.rename(state.pointee.threadID, to: name)
    }
}
