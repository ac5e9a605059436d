import CKernelSync
import Glibc
import Synchronization

/// Runs grace periods: liburcu's urcu-memb algorithm with kernel-style sequence numbers.
///
/// A grace period snapshots the registered readers, waits for those still in a section of the previous
/// phase, flips the phase bit of ``counter``, then waits for the snapshotted readers that are still in
/// the old phase (liburcu 0.13 `synchronize_rcu`, two passes around one flip). Callers share grace
/// periods: each computes the sequence number it needs (``snapshot()``), and whoever finds no grace
/// period running leads the next one for everybody waiting (liburcu's batched waiters).
///
/// Locking: leadership is an atomic flag (``gpRunning``), so that a caller who finds no grace period
/// running takes no lock to lead one; ``gpLock`` only serves the callers who sleep until the running one
/// ends. ``registryLock`` guards the reader list and is never held while waiting for readers. Neither
/// lock is taken on the read side, and they never nest.
@usableFromInline
final class GracePeriodEngine: @unchecked Sendable {
    static let shared = GracePeriodEngine()

    /// The global grace-period counter (liburcu `rcu_gp.ctr`): ``RCUCounter/count`` plus the phase bit.
    /// It lives in CKernelSync (`ks_rcu_gp_ctr`) so that the inlined read side loads it without a
    /// lazy-initialisation check.
    ///
    /// Ordering: relaxed on both sides. Only a grace-period leader stores it, between two full fences
    /// (``runGracePeriod()``); readers load it relaxed and order it with their ``RCUReaderRecord/ctr``
    /// store through the same barriers that order the ctr store.
    var counter: UInt {
        get { UInt(ks_rcu_gp_ctr_load()) }
        set { ks_rcu_gp_ctr_store(CUnsignedLong(newValue)) }
    }

    /// Kernel-style grace-period sequence: twice the number of completed grace periods, plus one while a
    /// grace period runs. It lives in CKernelSync (`ks_rcu_gp_seq`) so that ``snapshot()`` and
    /// ``hasElapsed(_:)``, which every removal calls under its update lock, load it without the
    /// lazy-initialisation check of ``shared``.
    ///
    /// Ordering: the leader stores the odd value relaxed before its first full barrier, and the even value
    /// with release after its last, pairing with the acquire load in ``hasElapsed(_:)``: a poller that
    /// sees the grace period done also sees every reader check that made it so.
    static var sequence: UInt64 { ks_rcu_gp_seq_load_acquire() }

    /// The sequence number of the last grace period that has flipped its phase (test observability:
    /// a reader that starts after this flip is not waited for by that grace period).
    ///
    /// Ordering: release store after the flip, pairing with acquire loads in tests.
    let flippedSequence = Atomic<UInt64>(0)

    /// Readers use full fences because membarrier(2) is unavailable or `KSYNC_RCU_FORCE_FENCES=1`.
    /// Decided once, when the engine is created, which happens before any reader registers.
    let usesFences: Bool

    /// A deliberately broken grace period, for the torture test. Ordering: relaxed (a test switch).
    let brokenMode = Atomic<Int>(RCU.BrokenMode.none.rawValue)

    let registryLock = PthreadMutex()
    /// Guarded by: registryLock (which is what makes its accesses exclusive, so the dynamic check is off).
    @exclusivity(unchecked) private var readers: [RCUReaderRecord] = []

    /// A leader is running a grace period: set by the compare-and-exchange that makes a caller the
    /// leader, cleared when its grace period ends.
    ///
    /// Ordering: acquiring exchange, so a new leader sees what the previous one left in the scan lists;
    /// sequentially consistent clear, which pairs with the sequentially consistent increment and load of
    /// a sleeper in ``synchronize(until:)`` (Dekker's pattern): either the leader sees the sleeper and
    /// wakes it, or the sleeper sees the flag clear and does not sleep.
    private let gpRunning = Atomic<Bool>(false)
    /// Callers asleep on ``gpDone`` (or about to be, holding ``gpLock``).
    ///
    /// Ordering: see ``gpRunning``.
    private let sleepers = Atomic<Int>(0)
    /// Taken only by callers who sleep until a grace period ends, and by a leader that wakes them.
    let gpLock = PthreadMutex()
    /// Broadcast when a grace period ends and someone sleeps on it.
    let gpDone = PthreadCondition()

    /// The scan's working lists, indices into the grace period's snapshot of ``readers``: the readers
    /// found in a section of the current phase in pass 1 (waited for in pass 2), and the readers the
    /// pass is still waiting for. Kept between grace periods so that a scan allocates nothing.
    ///
    /// Guarded by: leadership (``gpRunning``): only the leader touches them.
    @exclusivity(unchecked) private var currentPhaseReaders: [Int] = []
    @exclusivity(unchecked) private var stragglers: [Int] = []

    private init() {
        let forced = environmentFlag("KSYNC_RCU_FORCE_FENCES")
        usesFences = forced || ks_membarrier_register_private_expedited() != 0
        ks_fast_path_flags_set(KS_FLAG_RCU_FENCES, usesFences ? 1 : 0)
    }

    // MARK: Registry

    func register(_ reader: RCUReaderRecord) {
        registryLock.withLock {
            guard !reader.registered else { return }
            reader.registered = true
            readers.append(reader)
        }
    }

    func unregister(_ reader: RCUReaderRecord) {
        registryLock.withLock {
            guard reader.registered else { return }
            reader.registered = false
            readers.removeAll { $0 === reader }
        }
    }

    // MARK: Sequence numbers

    /// The sequence number at which a grace period that starts after this call will have completed
    /// (kernel `rcu_seq_snap()`): the next one when idle, the one after the current one otherwise.
    ///
    /// Ordering: a full fence before the load of ``sequence``, as the kernel's `smp_mb()` in
    /// `get_state_synchronize_rcu()`: the caller's updates (removals) must be visible to every reader
    /// that a grace period it may name will not wait for. Such a reader is one whose section began after
    /// the grace period's first ``fullBarrierOnAllThreads()`` reached its thread, and it sees every
    /// store that was visible then. The light side of that barrier (a compiler barrier, as on the read
    /// side) does not suffice here, unlike on the read side: the barrier is the leader's, and it can
    /// reach the reader's thread before it reaches this one, whose updates may still be in its store
    /// buffer while the stale load names the grace period already running (found in review; the
    /// session-6 version had the compiler barrier). Only a caller that leads the grace period itself is
    /// covered by the leader's own fence. With a fence, if this load saw the even value, the leader's
    /// odd store and fence came after it, and so after the updates, before its barrier reached any
    /// reader; if it saw the odd value, the snapshot names the next grace period. A caller whose update
    /// was an atomic exchange it has just made uses ``snapshotAfterAtomicUpdate()``, which on x86 needs
    /// no fence of its own.
    @inline(__always)
    static func snapshot() -> UInt64 {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return completion(ofNextAfter: ks_rcu_gp_seq_load_relaxed())
    }

    /// ``snapshot()`` for a caller whose update was an atomic read-modify-write that it has just made:
    /// the exchange that unlinks a list element or replaces a pointer. The kernel's
    /// `smp_mb__after_atomic()` before `rcu_seq_snap()`: on x86 a locked instruction (`xchg`) is itself
    /// a full barrier, which drains the store buffer before any later load, so only the compiler must
    /// be kept from moving the load above it; elsewhere a full fence, as in ``snapshot()``. Saves a
    /// fence in every removal's critical section, twice in the IOMMU model's (its two tokens).
    ///
    /// Context: the caller's last update (and every earlier one) was followed by an atomic
    /// read-modify-write, with no store that readers can see between it and this call.
    @inlinable @inline(__always)
    static func snapshotAfterAtomicUpdate() -> UInt64 {
        #if arch(x86_64) || arch(i386)
        ks_compiler_barrier()
        #else
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        #endif
        return completion(ofNextAfter: ks_rcu_gp_seq_load_relaxed())
    }

    /// The sequence number at which the first grace period to start after `current` was loaded will
    /// have completed: the next one when idle (even), the one after the running one otherwise (odd).
    /// The arithmetic of the kernel's `rcu_seq_snap()`; the two snapshots differ only in their barrier.
    @inlinable @inline(__always)
    static func completion(ofNextAfter current: UInt64) -> UInt64 {
        (current &+ 3) & ~1
    }

    /// Whether the grace period that `target` names has completed.
    @inline(__always)
    static func hasElapsed(_ target: UInt64) -> Bool {
        sequence >= target
    }

    /// Completed grace periods so far.
    static var completedCount: UInt64 { sequence / 2 }

    // MARK: Waiting

    /// Waits until the grace period `target` has completed, leading grace periods as needed. Returns the
    /// number of grace periods this caller led.
    ///
    /// Whoever finds no grace period running leads the next one, with one compare-and-exchange and no
    /// lock (a lone updater, such as a removal that waits for its own grace period, takes none); the
    /// others sleep until it ends, and the leader takes ``gpLock`` only when someone sleeps.
    ///
    /// Context: may block; not in a read section of the calling thread (callers check).
    @discardableResult
    func synchronize(until target: UInt64) -> Int {
        var led = 0
        while !Self.hasElapsed(target) {
            if gpRunning.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
                runGracePeriod()
                led += 1
                gpRunning.store(false, ordering: .sequentiallyConsistent)
                if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                    // A sleeper holds gpLock from its count until it waits, so taking the lock here
                    // means it is waiting; the broadcast after the unlock wakes it.
                    gpLock.lockOrTrap()
                    gpLock.unlockOrTrap()
                    gpDone.broadcast()
                }
                continue
            }
            gpLock.lockOrTrap()
            sleepers.wrappingAdd(1, ordering: .sequentiallyConsistent)
            if gpRunning.load(ordering: .sequentiallyConsistent) && !Self.hasElapsed(target) {
                gpDone.wait(gpLock)
            }
            sleepers.wrappingSubtract(1, ordering: .relaxed)
            gpLock.unlockOrTrap()
        }
        return led
    }

    /// liburcu `smp_mb_master()`: a full barrier on every running thread of the process (membarrier), or
    /// a local full fence when readers issue fences themselves. Pairs with the
    /// readers' barriers in ``RCUReaderRecord/lock(file:line:)`` and ``RCUReaderRecord/unlock(file:line:)``.
    func fullBarrierOnAllThreads() {
        if usesFences {
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        } else {
            let rc = ks_membarrier_private_expedited()
            precondition(rc == 0, "membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed after registering: \(rc)")
        }
    }

    /// liburcu `smp_mb_slave()`: the light side of ``fullBarrierOnAllThreads()``, for a thread whose
    /// store must come before a later load unless that barrier falls between them: a compiler barrier
    /// (membarrier makes it a full one when it runs), or a full fence where readers issue fences.
    /// Only for a pairing where the thread that issues the barrier is the one that must see the store
    /// (the reclaimer's idle handshake): a third thread's view is not ordered by it (see
    /// ``snapshot()``).
    @inline(__always)
    func barrierPairedWithFullBarrier() {
        if usesFences {
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        } else {
            ks_compiler_barrier()
        }
    }

    /// One grace period. Context: the caller set ``gpRunning``; no lock held.
    private func runGracePeriod() {
        let start = ks_rcu_gp_seq_load_relaxed()
        ks_rcu_gp_seq_store_relaxed(start &+ 1)
        // Updates before this grace period (and the odd sequence store) before the reader scan; pairs
        // with the readers' barrier after their ctr store.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        fullBarrierOnAllThreads()
        if brokenMode.load(ordering: .relaxed) != RCU.BrokenMode.skipWait.rawValue {
            // The snapshot keeps the records alive while they are scanned, even if their threads exit.
            let snapshot = registryLock.withLock { readers }
            var phase = counter & RCUCounter.phase
            // Pass 1: readers still in the previous phase must finish; current-phase readers are kept
            // for pass 2, inactive ones are done.
            // (``stragglers`` is empty: every wait ends when it is. Only a non-empty array is emptied,
            // since emptying an empty one still calls into the runtime.)
            if !currentPhaseReaders.isEmpty { currentPhaseReaders.removeAll(keepingCapacity: true) }
            for index in snapshot.indices {
                switch state(of: snapshot[index], phase: phase) {
                case .inactive: break
                case .activeCurrent: currentPhaseReaders.append(index)
                case .activeOld: stragglers.append(index)
                }
            }
            waitForStragglers(in: snapshot, phase: phase, keepingCurrentPhase: true)
            // Reader-state loads of pass 1 before the flip (liburcu: cmm_barrier + cmm_smp_mb).
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            counter ^= RCUCounter.phase
            phase ^= RCUCounter.phase
            flippedSequence.store(start &+ 1, ordering: .releasing)
            // The flip before the reader-state loads of pass 2.
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            // Pass 2: the readers that were in the current phase must leave it, now the previous one.
            for index in currentPhaseReaders where state(of: snapshot[index], phase: phase) == .activeOld {
                stragglers.append(index)
            }
            waitForStragglers(in: snapshot, phase: phase, keepingCurrentPhase: false)
        }
        // Reader-state loads before the frees that follow the grace period; pairs with the readers'
        // barrier before their unlocking ctr store.
        fullBarrierOnAllThreads()
        ks_rcu_gp_seq_store_release(start &+ 2)
    }

    enum ReaderState { case inactive, activeCurrent, activeOld }

    /// liburcu `urcu_common_reader_state()`.
    ///
    /// Ordering: acquire load of the reader's ctr, pairing with its release store at unlock.
    func state(of reader: RCUReaderRecord, phase: UInt) -> ReaderState {
        let value = reader.ctr.load(ordering: .acquiring)
        if value & RCUCounter.nestMask == 0 { return .inactive }
        return (value ^ phase) & RCUCounter.phase == 0 ? .activeCurrent : .activeOld
    }

    /// Waits until none of ``stragglers`` (indices into `snapshot`) is active in a phase other than
    /// `phase`. With `keepingCurrentPhase` (pass 1), a straggler that left for a section of `phase` joins
    /// ``currentPhaseReaders``, to be waited for in pass 2.
    ///
    /// Context: the leader.
    private func waitForStragglers(in snapshot: [RCUReaderRecord], phase: UInt, keepingCurrentPhase: Bool) {
        var attempt = 0
        while !stragglers.isEmpty {
            backOff(attempt)
            attempt += 1
            var kept = 0
            for position in stragglers.indices {
                let index = stragglers[position]
                switch state(of: snapshot[index], phase: phase) {
                case .inactive: break
                case .activeCurrent: if keepingCurrentPhase { currentPhaseReaders.append(index) }
                case .activeOld:
                    stragglers[kept] = index
                    kept += 1
                }
            }
            stragglers.removeLast(stragglers.count - kept)
        }
    }

    /// Spin briefly (a short section on another CPU ends in nanoseconds), then yield, then sleep with an
    /// exponential back-off capped at one millisecond (a long section). liburcu waits on a futex that the
    /// reader wakes; our readers stay wake-free and the writer polls.
    private func backOff(_ attempt: Int) {
        if attempt < 100 { return }
        if attempt < 200 {
            sched_yield()
            return
        }
        usleep(UInt32(min(1000, 10 << min(attempt - 200, 7))))
    }
}
