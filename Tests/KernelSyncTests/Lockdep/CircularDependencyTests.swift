import Testing
@testable import KernelSync

/// Lock-order inversions are reported from runs that never deadlock: every pair of threads below runs
/// one after the other.
@Suite struct CircularDependencyTests {
    @Test func abbaOnTwoThreadsOneAfterTheOtherIsReported() {
        let a = KernelMutex(name: "abba_A")
        let b = KernelMutex(name: "abba_B")
        KernelThread(name: "ab") { a.withLock { b.withLock {} } }.join()
        KernelThread(name: "ba") { b.withLock { a.withLock {} } }.join()

        let found = Lockdep.reports(involving: a.lockClass)
        #expect(found.count == 1)
        #expect(found.first?.kind == .circularDependency)
        #expect(found.first?.classes == ["abba_A", "abba_B"])
        #expect(found.first?.thread.hasPrefix("ba/") == true)
        let text = found.first?.text ?? ""
        #expect(text.contains("WARNING: possible circular locking dependency detected"))
        #expect(text.contains("Possible unsafe locking scenario"))
        #expect(text.contains("first recorded by ab/"))
    }

    @Test func consistentOrderIsNotReported() {
        let a = KernelMutex(name: "ordered_A")
        let b = KernelMutex(name: "ordered_B")
        KernelThread.runAll(count: 2, name: "ordered") { _ in a.withLock { b.withLock {} } }
        #expect(Lockdep.reports(involving: a.lockClass).isEmpty)
    }

    @Test func threeLockCycleIsReportedWithItsChain() {
        let a = KernelMutex(name: "cycle3_A")
        let b = KernelMutex(name: "cycle3_B")
        let c = KernelMutex(name: "cycle3_C")
        KernelThread(name: "ab") { a.withLock { b.withLock {} } }.join()
        KernelThread(name: "bc") { b.withLock { c.withLock {} } }.join()
        #expect(Lockdep.reports(involving: a.lockClass).isEmpty)
        KernelThread(name: "ca") { c.withLock { a.withLock {} } }.join()

        let found = Lockdep.reports(involving: c.lockClass)
        #expect(found.map(\.kind) == [.circularDependency])
        #expect(found.first?.classes == ["cycle3_A", "cycle3_B", "cycle3_C"])
        #expect(found.first?.text.contains("Chain exists of:\n  cycle3_A --> cycle3_B --> cycle3_C") == true)
    }

    @Test func cycleThroughEightClassesIsReported() {
        let locks = (0..<8).map { KernelMutex(class: LockClass(name: "cycle8_\($0)")) }
        for index in 0..<7 {
            KernelThread(name: "link\(index)") { locks[index].withLock { locks[index + 1].withLock {} } }.join()
        }
        #expect(Lockdep.reports(involving: locks[0].lockClass).isEmpty)
        KernelThread(name: "close") { locks[7].withLock { locks[0].withLock {} } }.join()

        let found = Lockdep.reports(involving: locks[7].lockClass)
        #expect(found.map(\.kind) == [.circularDependency])
        #expect(found.first?.classes == (0..<8).map { "cycle8_\($0)" })
    }

    @Test func repeatedInversionIsCountedNotReprinted() {
        let a = KernelMutex(name: "repeat_A")
        let b = KernelMutex(name: "repeat_B")
        KernelThread(name: "ab") { a.withLock { b.withLock {} } }.join()
        for _ in 0..<3 {
            KernelThread(name: "ba") { b.withLock { a.withLock {} } }.join()
        }
        let found = Lockdep.reports(involving: a.lockClass)
        #expect(found.count == 1)
        #expect(found.first?.occurrences == 3)
    }

    @Test func trylockInversionIsNotReported() {
        let a = KernelMutex(name: "try_A")
        let b = KernelMutex(name: "try_B")
        KernelThread(name: "ab") { a.withLock { b.withLock {} } }.join()
        KernelThread(name: "b-try-a") {
            b.withLock {
                #expect(a.tryLock())
                a.unlock()
            }
        }.join()
        #expect(Lockdep.reports(involving: a.lockClass).isEmpty)
    }

    @Test func lockTakenAfterATrylockStillRecordsItsDependency() {
        let a = KernelMutex(name: "after_try_A")
        let b = KernelMutex(name: "after_try_B")
        KernelThread(name: "try-a-then-b") {
            #expect(a.tryLock())
            b.withLock {}
            a.unlock()
        }.join()
        KernelThread(name: "ba") { b.withLock { a.withLock {} } }.join()
        #expect(Lockdep.reports(involving: a.lockClass).map(\.kind) == [.circularDependency])
    }

    @Test func pseudoLockTakesPartInCycles() {
        let lock = KernelMutex(name: "pseudo_lock")
        let work = LockdepMap(name: "pseudo_work")
        KernelThread(name: "worker") {
            work.acquire()
            lock.withLock {}
            work.release()
        }.join()
        KernelThread(name: "canceller") {
            lock.withLock {
                work.acquire()
                work.release()
            }
        }.join()
        let found = Lockdep.reports(involving: work.lockClass)
        #expect(found.map(\.kind) == [.circularDependency])
        #expect(Set(found.first?.classes ?? []) == ["pseudo_lock", "pseudo_work"])
    }
}
