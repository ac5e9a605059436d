import Testing
@testable import KernelSync
import CKernelSync
import Glibc

/// The contract of `struct mutex`: exclusion, trylock, scoped locking, ownership.
@Suite struct KernelMutexTests {
    struct Failure: Error {}

    @Test func withLockReturnsTheClosureValue() {
        let lock = KernelMutex(name: "with_lock_value")
        #expect(lock.withLock { 42 } == 42)
        #expect(!lock.isLocked)
    }

    @Test func withLockRethrowsAndReleases() {
        let lock = KernelMutex(name: "with_lock_throws")
        #expect(throws: Failure.self) { try lock.withLock { throw Failure() } }
        #expect(!lock.isLocked)
    }

    @Test func tryLockFailsWhileAnotherThreadHoldsTheMutex() {
        let lock = KernelMutex(name: "try_lock_busy")
        lock.lock()
        KernelThread(name: "trier") { #expect(!lock.tryLock()) }.join()
        lock.unlock()
        KernelThread(name: "trier") {
            #expect(lock.tryLock())
            lock.unlock()
        }.join()
    }

    /// The per-thread count of held mutexes (RCU runs handed-back callbacks only at zero) follows every
    /// way of acquiring and releasing, and nothing that fails to.
    @Test func theThreadsHeldCountFollowsEveryAcquisitionAndRelease() {
        let first = KernelMutex(name: "held-count first")
        let second = KernelMutex(name: "held-count second")
        let base = ks_mutexes_held_get()
        first.lock()
        #expect(ks_mutexes_held_get() == base + 1)
        #expect(second.tryLock())
        #expect(!second.tryLock(), "held already: fails")
        #expect(ks_mutexes_held_get() == base + 2)
        second.unlock()
        first.unlock()
        #expect(ks_mutexes_held_get() == base)
        first.lock(nested: 1)
        #expect(ks_mutexes_held_get() == base + 1)
        first.unlock()
        second.unlock()
        #expect(ks_mutexes_held_get() == base, "an unlock of a mutex not held is reported and changes nothing")
        // The contended path: another thread holds it when this one asks.
        let holding = Flag(), release = Flag()
        let holder = KernelThread(name: "held-count holder") {
            first.withLock {
                holding.raise()
                release.wait()
            }
        }
        holding.wait()
        let waiter = KernelThread(name: "held-count waiter") {
            let before = ks_mutexes_held_get()
            first.lock()
            precondition(ks_mutexes_held_get() == before + 1)
            first.unlock()
            precondition(ks_mutexes_held_get() == before)
        }
        usleep(2_000)
        release.raise()
        holder.join()
        waiter.join()
        #expect(ks_mutexes_held_get() == base)
    }

    @Test func mutexesCreatedAtOneLineShareAClassAndElsewhereDoNot() {
        let pair = (0..<2).map { _ in KernelMutex() }
        let other = KernelMutex()
        #expect(pair[0].lockClass === pair[1].lockClass)
        #expect(pair[0].lockClass !== other.lockClass)
        #expect(pair[0].lockClass.name.hasPrefix("KernelSyncTests/KernelMutexTests.swift:"))
    }

    @Test func mutualExclusionHoldsUnderContention() {
        final class Counter: @unchecked Sendable {
            let lock = KernelMutex(name: "exclusion_counter")
            /// Guarded by: lock.
            var value = 0
        }
        let counter = Counter()
        KernelThread.runAll(count: 4, name: "adder") { _ in
            for _ in 0..<20_000 { counter.lock.withLock { counter.value += 1 } }
        }
        #expect(counter.lock.withLock { counter.value } == 80_000)
    }

    @Test func ownershipIsKnownToTheOwnerAndToOtherThreads() {
        let lock = KernelMutex(name: "ownership")
        lock.lock()
        #expect(lock.isHeldByCurrentThread)
        #expect(lock.heldState == .held)
        KernelThread(name: "other") {
            #expect(!lock.isHeldByCurrentThread)
            #expect(lock.isLocked)
            #expect(lock.heldState == .notHeld)
        }.join()
        lock.unlock()
        #expect(!lock.isHeldByCurrentThread)
    }

    @Test func assertionsPassForTheOwnerAndFailForOthers() {
        let lock = KernelMutex(name: "assertions")
        KernelThread(name: "owner") {
            lock.withLock { lock.assertHeld() }
            lock.assertNotHeld()
        }.join()
        #expect(Lockdep.reports(involving: lock.lockClass).isEmpty)

        lock.lock()
        KernelThread(name: "bystander") {
            lock.assertHeld()
            lock.assertNotHeld()
        }.join()
        lock.unlock()
        let found = Lockdep.reports(involving: lock.lockClass)
        #expect(found.map(\.kind) == [.assertionFailed])
        #expect(found.first?.text.contains("lockdep_assert_held(assertions) failed") == true)
        #expect(found.first?.text.contains("the lock is held by ") == true)
    }

    @Test func assertNotHeldByTheOwnerIsReported() {
        let lock = KernelMutex(name: "assert_not_held")
        KernelThread(name: "owner") { lock.withLock { lock.assertNotHeld() } }.join()
        let found = Lockdep.reports(involving: lock.lockClass)
        #expect(found.map(\.kind) == [.assertionFailed])
        #expect(found.first?.text.contains("lockdep_assert_not_held(assert_not_held) failed") == true)
    }

    @Test func unlockWhenNotHeldIsReportedAndIgnored() {
        let lock = KernelMutex(name: "unlock_unheld")
        KernelThread(name: "unlocker") { lock.unlock() }.join()
        let found = Lockdep.reports(involving: lock.lockClass)
        #expect(found.map(\.kind) == [.badUnlockBalance])
        #expect(found.first?.text.contains("unlocker/") == true)
        #expect(found.first?.text.contains("but the lock is not held") == true)
        #expect(found.first?.site.hasPrefix("KernelSyncTests/KernelMutexTests.swift:") == true)
        #expect(!lock.isLocked)
    }

    @Test func unlockByAThreadThatIsNotTheOwnerIsReportedAndIgnored() {
        let lock = KernelMutex(name: "unlock_foreign")
        KernelThread(name: "owner") {
            lock.lock()
            KernelThread(name: "intruder") { lock.unlock() }.join()
            #expect(lock.isHeldByCurrentThread)
            lock.unlock()
        }.join()
        let found = Lockdep.reports(involving: lock.lockClass)
        #expect(found.map(\.kind) == [.unlockByNonOwner])
        #expect(found.first?.text.contains("intruder/") == true)
        #expect(found.first?.text.contains("but the lock is held by owner/") == true)
    }
}

/// glibc records no owner for a mutex it elides, and every ownership check reads that owner, so each
/// mutex KernelSync creates must keep elision off whatever `GLIBC_TUNABLES` says. (This machine's CPU
/// has no TSX, so elision itself cannot be shown here; the flag that forbids it can.)
@Suite struct PthreadMutexElisionTests {
    @Test func everyKindOfMutexIsCreatedWithElisionOff() {
        for adaptive in [false, true] {
            let mutex = PthreadMutex(adaptive: adaptive)
            defer { mutex.destroy() }
            // glibc elides only the normal type; the adaptive one never.
            if !adaptive { #expect(ks_mutex_kind(mutex.handle) & KS_MUTEX_NO_ELISION != 0, "kind \(ks_mutex_kind(mutex.handle))") }
            // The type glibc dispatches on stays the one asked for: the fast path is unchanged.
            #expect(ks_mutex_kind(mutex.handle) & 127 == (adaptive ? Int32(PTHREAD_MUTEX_ADAPTIVE_NP) : Int32(PTHREAD_MUTEX_NORMAL)))
            #expect(mutex.lock() == 0)
            #expect(mutex.ownerThreadID == KernelThread.currentID, "the owner is recorded")
            #expect(mutex.unlock() == 0)
        }
    }
}
