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
/// Locking: ``gpLock`` serialises leadership (``gpRunning``) and guards the waiters' condition;
/// ``registryLock`` guards the reader list and is never held while waiting for readers. Neither is taken
/// on the read side, and they never nest.
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
    /// grace period runs.
    ///
    /// Ordering: the leader stores the odd value relaxed before its first full barrier, and the even value
    /// with release after its last, pairing with the acquire load in ``hasElapsed(_:)``: a poller that
    /// sees the grace period done also sees every reader check that made it so.
    let sequence = Atomic<UInt64>(0)

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
    /// Guarded by: registryLock.
    private var readers: [RCUReaderRecord] = []

    let gpLock = PthreadMutex()
    /// Signalled (broadcast) when a grace period ends.
    let gpDone = PthreadCondition()
    /// Guarded by: gpLock. A leader is running a grace period.
    private var gpRunning = false

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
    /// Ordering: the caller's updates (removals) must come before the load of ``sequence``, or the
    /// snapshot could name a grace period whose reader scan misses a reader that saw them. The light
    /// side of the asymmetric barrier does it (liburcu's `smp_mb_slave()`, as on the read side): every
    /// grace period stores its odd value, fences, and issues ``fullBarrierOnAllThreads()`` before it
    /// scans. If this load saw the even value, that barrier ran on this thread after the load, so after
    /// the updates, which it made visible before the scan; if it saw the odd value, the snapshot names
    /// the next grace period. Where readers use fences, this is a full fence, as the kernel's `smp_mb()`
    /// in `get_state_synchronize_rcu()`. It was a full fence everywhere: three a probe+remove cycle.
    @inline(__always)
    func snapshot() -> UInt64 {
        barrierPairedWithFullBarrier()
        let current = sequence.load(ordering: .relaxed)
        return (current &+ 3) & ~1
    }

    /// Whether the grace period that `target` names has completed.
    func hasElapsed(_ target: UInt64) -> Bool {
        sequence.load(ordering: .acquiring) >= target
    }

    /// Completed grace periods so far.
    var completedCount: UInt64 { sequence.load(ordering: .acquiring) / 2 }

    // MARK: Waiting

    /// Waits until the grace period `target` has completed, leading grace periods as needed. Returns the
    /// number of grace periods this caller led.
    ///
    /// Context: may block; not in a read section of the calling thread (callers check).
    @discardableResult
    func synchronize(until target: UInt64) -> Int {
        var led = 0
        gpLock.withLock {
            while !hasElapsed(target) {
                if gpRunning {
                    gpDone.wait(gpLock)
                    continue
                }
                gpRunning = true
                _ = gpLock.unlock()
                runGracePeriod()
                _ = gpLock.lock()
                gpRunning = false
                led += 1
                gpDone.broadcast()
            }
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
        let start = sequence.load(ordering: .relaxed)
        sequence.store(start &+ 1, ordering: .relaxed)
        // Updates before this grace period (and the odd sequence store) before the reader scan; pairs
        // with the readers' barrier after their ctr store.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        fullBarrierOnAllThreads()
        if brokenMode.load(ordering: .relaxed) != RCU.BrokenMode.skipWait.rawValue {
            let snapshot = registryLock.withLock { readers }
            var phase = counter & RCUCounter.phase
            // Pass 1: readers still in the previous phase must finish; current-phase readers are kept
            // for pass 2, inactive ones are done.
            var current: [RCUReaderRecord] = []
            waitForReaders(snapshot, phase: phase, keepingCurrent: &current)
            // Reader-state loads of pass 1 before the flip (liburcu: cmm_barrier + cmm_smp_mb).
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            counter ^= RCUCounter.phase
            phase ^= RCUCounter.phase
            flippedSequence.store(start &+ 1, ordering: .releasing)
            // The flip before the reader-state loads of pass 2.
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            var unused: [RCUReaderRecord] = []
            waitForReaders(current, phase: phase, keepingCurrent: &unused)
        }
        // Reader-state loads before the frees that follow the grace period; pairs with the readers'
        // barrier before their unlocking ctr store.
        fullBarrierOnAllThreads()
        sequence.store(start &+ 2, ordering: .releasing)
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

    /// Waits until no reader of `readers` is active in a phase other than `phase`. Readers active in
    /// `phase` are appended to `keepingCurrent` (pass 1) instead of being waited for.
    private func waitForReaders(_ readers: [RCUReaderRecord], phase: UInt, keepingCurrent: inout [RCUReaderRecord]) {
        var pending = readers
        var attempt = 0
        while true {
            var stillOld: [RCUReaderRecord] = []
            for reader in pending {
                switch state(of: reader, phase: phase) {
                case .inactive: break
                case .activeCurrent: keepingCurrent.append(reader)
                case .activeOld: stillOld.append(reader)
                }
            }
            if stillOld.isEmpty { return }
            pending = stillOld
            backOff(attempt)
            attempt += 1
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
