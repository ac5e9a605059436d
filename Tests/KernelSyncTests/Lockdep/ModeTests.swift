import Glibc
import Testing
import KernelSync

/// off / report / abort, from the API and from KSYNC_LOCKDEP.
@Suite struct ModeTests {
    @Test func modeNamesParse() {
        #expect(Lockdep.Mode(name: "off") == .off)
        #expect(Lockdep.Mode(name: "REPORT") == .report)
        #expect(Lockdep.Mode(name: "abort") == .abort)
        #expect(Lockdep.Mode(name: "loud") == nil)
    }

    @Test func abortModeStopsAtTheFirstReportWithTheKernelMessage() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            Lockdep.mode = .abort
            // Inside an exit test every line reads as the macro's line: name the classes explicitly.
            let a = KernelMutex(class: LockClass(name: "abort_A"))
            let b = KernelMutex(class: LockClass(name: "abort_B"))
            KernelThread(name: "ab") { a.withLock { b.withLock {} } }.join()
            KernelThread(name: "ba") { b.withLock { a.withLock {} } }.join()
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("WARNING: possible circular locking dependency detected"))
        #expect(stderr.contains("ba/"))
        #expect(stderr.contains("is trying to acquire lock:\n (abort_A)"))
        #expect(stderr.contains("lockdep: aborting"))
    }

    @Test func environmentVariableSelectsAbortMode() async {
        await #expect(processExitsWith: .failure) {
            setenv("KSYNC_LOCKDEP", "abort", 1)
            let lock = KernelMutex(name: "env_abort_lock")
            lock.unlock()
        }
    }

    @Test func offModeRecordsNoDependenciesAndAssertionsAnswerUnknown() async {
        await #expect(processExitsWith: .success) {
            Lockdep.mode = .off
            let a = KernelMutex(class: LockClass(name: "off_A"))
            let b = KernelMutex(class: LockClass(name: "off_B"))
            KernelThread(name: "ab") { a.withLock { b.withLock {} } }.join()
            KernelThread(name: "ba") { b.withLock { a.withLock {} } }.join()
            let map = LockdepMap(name: "off_map")
            map.acquire()
            precondition(map.heldState == .unknown, "a pseudo-lock cannot be known held with the validator off")
            map.release()
            precondition(Lockdep.reports.isEmpty, "off mode reported: \(Lockdep.reports)")
            precondition(Lockdep.dependencyCount == 0, "off mode recorded dependencies")
            a.withLock { precondition(a.heldState == .held, "a mutex always knows its owner") }
            exit(0)
        }
    }

    @Test func pseudoLockHeldStateIsKnownWhenValidating() {
        let map = LockdepMap(name: "held_state_map")
        KernelThread(name: "holder") {
            #expect(map.heldState == .notHeld)
            map.acquire()
            #expect(map.heldState == .held)
            map.release()
            #expect(map.heldState == .notHeld)
        }.join()
    }

    @Test func releasingAPseudoLockThatIsNotHeldIsReported() {
        let map = LockdepMap(name: "unheld_map")
        KernelThread(name: "releaser") { map.release() }.join()
        #expect(Lockdep.reports(involving: map.lockClass).map(\.kind) == [.badUnlockBalance])
    }
}
