import Testing
import KernelSync

/// One class held twice is a possible deadlock unless the nesting is annotated with subclasses.
@Suite struct RecursiveLockingTests {
    @Test func twoInstancesOfOneClassWithoutNestingAreReported() {
        let parent = KernelMutex(class: LockClass(name: "same_class_plain"))
        let child = KernelMutex(class: parent.lockClass)
        KernelThread(name: "nest") { parent.withLock { child.withLock {} } }.join()
        let found = Lockdep.reports(involving: parent.lockClass)
        #expect(found.map(\.kind) == [.recursiveLocking])
        #expect(found.first?.text.contains("WARNING: possible recursive locking detected") == true)
        #expect(found.first?.text.contains("missing lock nesting notation") == true)
    }

    @Test func nestedSubclassesAreNotReported() {
        let lockClass = LockClass(name: "same_class_nested")
        let parent = KernelMutex(class: lockClass)
        let child = KernelMutex(class: lockClass)
        KernelThread.runAll(count: 2, name: "nest") { _ in
            parent.lock(nested: 0)
            child.lock(nested: 1)
            child.unlock()
            parent.unlock()
        }
        #expect(Lockdep.reports(involving: lockClass).isEmpty)
    }

    @Test func twoInstancesOfOneClassInFixedOrderUseTheirInitSiteClass() {
        let locks = (0..<2).map { _ in KernelMutex(name: "site_keyed") }
        #expect(locks[0].lockClass === locks[1].lockClass)
        KernelThread(name: "fixed-order") {
            locks[0].lock(nested: 0)
            locks[1].lock(nested: 1)
            locks[1].unlock()
            locks[0].unlock()
        }.join()
        #expect(Lockdep.reports(involving: locks[0].lockClass).isEmpty)
    }

    @Test func nestedSubclassInversionIsReported() {
        let lockClass = LockClass(name: "subclass_inversion")
        let outer = KernelMutex(class: lockClass)
        let inner = KernelMutex(class: lockClass)
        KernelThread(name: "0-then-1") {
            outer.lock(nested: 0)
            inner.lock(nested: 1)
            inner.unlock()
            outer.unlock()
        }.join()
        KernelThread(name: "1-then-0") {
            inner.lock(nested: 1)
            outer.lock(nested: 0)
            outer.unlock()
            inner.unlock()
        }.join()
        let found = Lockdep.reports(involving: lockClass)
        #expect(found.map(\.kind) == [.circularDependency])
        #expect(found.first?.classes == ["subclass_inversion", "subclass_inversion/1"])
    }

    @Test func lockingAHeldMutexAgainReportsAndStops() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let lock = KernelMutex(name: "aa_lock")
            lock.lock()
            lock.lock()
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("WARNING: possible recursive locking detected"))
        #expect(stderr.contains("(aa_lock), at: KernelSyncTests/RecursiveLockingTests.swift:"))
        #expect(stderr.contains("recursive locking of a non-recursive mutex"))
    }

    @Test func lockingAHeldMutexAgainStopsEvenWithTheValidatorOff() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            Lockdep.mode = .off
            let lock = KernelMutex(name: "aa_off_lock")
            lock.lock()
            lock.lock()
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("recursive locking of a non-recursive mutex"))
        #expect(stderr.contains("(aa_off_lock)"))
    }
}
