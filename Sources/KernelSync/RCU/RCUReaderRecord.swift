import CKernelSync
import Glibc
import Synchronization

/// The layout of a reader's counter word, as in liburcu's urcu-memb: the low half is the read-side
/// nesting count, the bit above it is the grace-period phase the outermost section started in.
@usableFromInline
enum RCUCounter {
    /// One level of nesting (liburcu `URCU_GP_COUNT`).
    @usableFromInline static let count: UInt = 1
    /// The phase bit that a grace period flips (liburcu `URCU_GP_CTR_PHASE`).
    @usableFromInline static let phase: UInt = 1 << 32
    /// The nesting count (liburcu `URCU_GP_CTR_NEST_MASK`).
    @usableFromInline static let nestMask: UInt = phase - 1
}

/// One registered reader thread (liburcu `struct urcu_reader`).
///
/// Reached through one initial-exec TLS load (`ks_rcu_reader`), which holds a +1 reference. A thread
/// registers by itself on its first ``RCU/readLock(file:line:)`` and is unregistered by a pthread-key
/// destructor at thread exit; ``RCU/threadOffline()`` unregisters earlier.
@usableFromInline
final class RCUReaderRecord: @unchecked Sendable {
    /// Zero when the thread is outside any read section; otherwise the grace-period counter snapshot
    /// taken at the outermost ``lock(file:line:)`` plus the nesting depth − 1.
    ///
    /// Ordering: written only by the owning thread. The outermost lock stores it relaxed and then issues
    /// a compiler barrier (a full fence in fence mode: ctr store before the section's loads), which pairs
    /// with the writer's ``GracePeriodEngine/fullBarrierOnAllThreads()`` before it scans. The outermost
    /// unlock issues the same barrier and then stores it with release (section's loads before ctr store), which pairs
    /// with the acquire load in ``GracePeriodEngine/state(of:phase:)``, so the freeing that follows a grace
    /// period happens after the section (what ThreadSanitizer needs to see).
    @usableFromInline let ctr = Atomic<UInt>(0)

    /// The grace-period engine; a process-lifetime object.
    unowned(unsafe) let engine: GracePeriodEngine

    /// The thread's id, for reports.
    let threadID: Int32

    /// `KS_FLAG_LOCKDEP` while the outermost section is recorded on the validator's held stack, else 0,
    /// so the unlock releases exactly what was acquired, even after the validator was switched off
    /// meanwhile. An `Int32` flag rather than a `Bool`, so the fast unlock folds it into its one test of
    /// the fast-path flags. Guarded by: the owning thread (only it reads or writes it), which is also
    /// why dynamic exclusivity checking is off: on the read side's fast path it cost ten times the
    /// whole read section.
    @usableFromInline @exclusivity(unchecked) var lockdepHeld: Int32 = 0

    /// Whether the record is in the engine's registry. Guarded by: ``GracePeriodEngine/registryLock``.
    var registered = false

    init(engine: GracePeriodEngine) {
        self.engine = engine
        threadID = ks_gettid()
    }

    /// The calling thread's record, or nil while it is not registered.
    @inlinable
    static var current: Unmanaged<RCUReaderRecord>? {
        @inline(__always) get { ks_rcu_reader_get().map { Unmanaged<RCUReaderRecord>.fromOpaque($0) } }
    }

    /// Nesting depth of the calling thread's read sections (0 outside any).
    static var currentNesting: UInt {
        guard let record = current else { return 0 }
        return record._withUnsafeGuaranteedRef { $0.ctr.load(ordering: .relaxed) & RCUCounter.nestMask }
    }

    /// Enters a read section.
    ///
    /// Kernel analogue: `rcu_read_lock()`; liburcu `_urcu_memb_read_lock()`.
    @inlinable @inline(__always)
    func lock(file: StaticString, line: UInt) {
        let value = ctr.load(ordering: .relaxed)
        if _fastPath(value & RCUCounter.nestMask == 0) {
            ctr.store(UInt(ks_rcu_gp_ctr_load()), ordering: .relaxed)
            let flags = ks_fast_path_flags_get()
            if _fastPath(flags == 0) {
                ks_compiler_barrier()
            } else {
                lockSlow(flags: flags, file: file, line: line)
            }
        } else {
            ctr.store(value &+ RCUCounter.count, ordering: .relaxed)
        }
    }

    /// Leaves a read section.
    ///
    /// Kernel analogue: `rcu_read_unlock()`; liburcu `_urcu_memb_read_unlock()`.
    @inlinable @inline(__always)
    func unlock(file: StaticString, line: UInt) {
        let value = ctr.load(ordering: .relaxed)
        let nesting = value & RCUCounter.nestMask
        if _fastPath(nesting == RCUCounter.count) {
            let flags = ks_fast_path_flags_get() | lockdepHeld
            if _fastPath(flags == 0) {
                ks_compiler_barrier()
            } else {
                unlockSlow(flags: flags, file: file, line: line)
            }
            ctr.store(value &- RCUCounter.count, ordering: .releasing)
        } else if nesting == 0 {
            unbalancedUnlock(file: file, line: line)
        } else {
            ctr.store(value &- RCUCounter.count, ordering: .relaxed)
        }
    }

    /// The outermost lock with fences or the validator on. liburcu `smp_mb_slave()` as a full fence when
    /// the writer cannot use membarrier: orders the ctr store before the section's loads, pairing with
    /// the writer's ``GracePeriodEngine/fullBarrierOnAllThreads()``.
    @usableFromInline @inline(never)
    func lockSlow(flags: Int32, file: StaticString, line: UInt) {
        if flags & KS_FLAG_RCU_FENCES != 0 {
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        } else {
            ks_compiler_barrier()
        }
        if flags & KS_FLAG_LOCKDEP != 0 {
            lockdepHeld = KS_FLAG_LOCKDEP
            RCU.readSectionMap.acquire(file: file, line: line)
        }
    }

    /// The outermost unlock with fences or the validator on, or of a section the validator recorded:
    /// orders the section before the ctr store, pairing with the writer's
    /// ``GracePeriodEngine/fullBarrierOnAllThreads()``.
    @usableFromInline @inline(never)
    func unlockSlow(flags: Int32, file: StaticString, line: UInt) {
        if lockdepHeld != 0 {
            lockdepHeld = 0
            // Not LockdepMap.release, which does nothing once the validator is off: the entry the lock
            // pushed must leave the held stack whatever the mode is now.
            if !Lockdep.release(instance: RCU.readSectionMap.identity) {
                RCU.readSectionMap.releaseUnheld(file: file, line: line)
            }
        }
        if flags & KS_FLAG_RCU_FENCES != 0 {
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        } else {
            ks_compiler_barrier()
        }
    }

    @usableFromInline @inline(never)
    func unbalancedUnlock(file: StaticString, line: UInt) {
        Lockdep.emit(RCUReportText.unbalancedUnlock(site: "\(file):\(line)"))
    }

    // MARK: Registration

    /// Registers the calling thread (again, after ``RCU/threadOffline()``) and returns its record.
    ///
    /// Context: not in a read section (the thread has no record in TLS).
    @usableFromInline @inline(never)
    static func registerCurrent() -> Unmanaged<RCUReaderRecord> {
        // Initialises the validator's flags, and with them KS_FLAG_LOCKDEP in ks_fast_path_flags, which
        // the read side tests, before this thread's first read section.
        _ = Lockdep.isValidating
        let engine = GracePeriodEngine.shared
        let record: Unmanaged<RCUReaderRecord>
        if let parked = readerExitKey.value {
            record = Unmanaged<RCUReaderRecord>.fromOpaque(parked)
        } else {
            record = Unmanaged.passRetained(RCUReaderRecord(engine: engine))
            readerExitKey.set(record.toOpaque())
        }
        engine.register(record.takeUnretainedValue())
        ks_rcu_reader_set(record.toOpaque())
        return record
    }

    /// Unregisters the calling thread until its next read section.
    ///
    /// Context: outside any read section. Returns false (and changes nothing) inside one.
    static func unregisterCurrent() -> Bool {
        guard let record = current else { return true }
        let reader = record.takeUnretainedValue()
        guard reader.ctr.load(ordering: .relaxed) & RCUCounter.nestMask == 0 else { return false }
        ks_rcu_reader_set(nil)
        reader.engine.unregister(reader)
        return true
    }
}

/// The pthread key whose destructor unregisters a reader thread at exit; its value is the +1 reference
/// that TLS points to, kept while the thread is offline so that it can come back online.
private let readerExitKey = ThreadExitKey { raw in
    guard let raw else { return }
    let record = Unmanaged<RCUReaderRecord>.fromOpaque(raw)
    ks_rcu_reader_set(nil)
    let reader = record.takeUnretainedValue()
    // A thread that exits inside a read section is reported by the validator (lock held at thread
    // exit); here it stops counting as a reader, so grace periods do not wait for a dead thread.
    reader.ctr.store(0, ordering: .releasing)
    reader.engine.unregister(reader)
    record.release()
}
