import Testing
import KernelSync

/// Sleeping where sleeping is illegal, and threads that leave with locks held.
@Suite struct ContextTests {
    @Test func sleepingLockInAtomicContextIsReported() {
        let lock = KernelMutex(name: "atomic_ctx_lock")
        KernelThread(name: "irq") {
            Lockdep.withAtomicContext("hardirq") {
                #expect(Lockdep.inAtomicContext)
                lock.withLock {}
            }
            #expect(!Lockdep.inAtomicContext)
        }.join()
        let found = Lockdep.reports(involving: lock.lockClass)
        #expect(found.map(\.kind) == [.sleepInAtomicContext])
        let text = found.first?.text ?? ""
        #expect(text.contains("BUG: sleeping function called from invalid context at KernelSyncTests/ContextTests.swift:"))
        #expect(text.contains("in_atomic(): 1 (hardirq)"))
        #expect(text.contains("blocking call: mutex_lock(atomic_ctx_lock)"))
    }

    @Test func trylockInAtomicContextIsAllowed() {
        let lock = KernelMutex(name: "atomic_try_lock")
        KernelThread(name: "irq") {
            Lockdep.withAtomicContext {
                if lock.tryLock() { lock.unlock() }
            }
        }.join()
        #expect(Lockdep.reports(involving: lock.lockClass).isEmpty)
    }

    @Test func mightSleepInsideAReadSectionIsReported() {
        let section = LockdepMap(name: "read_section_ctx", readSection: true)
        KernelThread(name: "reader") {
            section.acquire()
            Lockdep.mightSleep("synchronize_rcu()")
            section.release()
        }.join()
        let found = Lockdep.reports(involving: section.lockClass)
        #expect(found.map(\.kind) == [.sleepInReadSection])
        #expect(found.first?.text.contains("RCU nest depth: 1, expected: 0") == true)
    }

    @Test func threadThatExitsHoldingALockIsReported() {
        let lock = KernelMutex(name: "exit_held_lock")
        KernelThread(name: "leaver") { lock.lock() }.join()
        let found = Lockdep.reports(involving: lock.lockClass).filter { $0.kind == .lockHeldAtThreadExit }
        #expect(found.count == 1)
        #expect(found.first?.text.contains("BUG: leaver/") == true)
        #expect(found.first?.text.contains("still has locks held at thread exit!") == true)
        #expect(found.first?.text.contains("#0: (exit_held_lock), at: KernelSyncTests/ContextTests.swift:") == true)
    }

    @Test func leavingAtomicContextThatWasNeverEnteredIsReported() {
        KernelThread(name: "unbalanced") { Lockdep.leaveAtomicContext() }.join()
        #expect(Lockdep.reports.contains { $0.kind == .unbalancedAtomicContext && $0.thread.hasPrefix("unbalanced/") })
    }

    @Test func heldLocksListsTheCallersLocksOutermostFirst() {
        let outer = KernelMutex(name: "held_list_outer")
        let inner = KernelMutex(name: "held_list_inner")
        KernelThread(name: "lister") {
            outer.withLock {
                inner.withLock {
                    let held = Lockdep.heldLocks()
                    #expect(held.count == 2)
                    #expect(held.first?.hasPrefix("held_list_outer at KernelSyncTests/ContextTests.swift:") == true)
                    #expect(held.last?.hasPrefix("held_list_inner at ") == true)
                }
            }
            #expect(Lockdep.heldLocks().isEmpty)
        }.join()
    }
}
