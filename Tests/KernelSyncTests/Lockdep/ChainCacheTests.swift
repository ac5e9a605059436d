import Testing
@testable import KernelSync

/// A held sequence validated once is a hash lookup afterwards.
@Suite struct ChainCacheTests {
    @Test func insertedKeysAreFoundAndOthersAreNot() {
        let cache = ChainCache.makePrivate()
        let key = ChainCache.extend(ChainCache.initialKey, node: 12_345, trylock: false)
        let foundBefore = cache.contains(key)
        let inserted = cache.insert(key)
        let foundAfter = cache.contains(key)
        let trylockFound = cache.contains(ChainCache.extend(ChainCache.initialKey, node: 12_345, trylock: true))
        #expect(!foundBefore)
        #expect(inserted)
        #expect(foundAfter)
        #expect(!trylockFound)
    }

    @Test func orderOfTheSequenceChangesTheKey() {
        let ab = ChainCache.extend(ChainCache.extend(ChainCache.initialKey, node: 1, trylock: false), node: 2, trylock: false)
        let ba = ChainCache.extend(ChainCache.extend(ChainCache.initialKey, node: 2, trylock: false), node: 1, trylock: false)
        #expect(ab != ba)
        #expect(ab != 0 && ba != 0)
    }

    @Test func validatedSequenceIsCachedAndAddsNoDependencyTheSecondTime() {
        let a = KernelMutex(name: "cached_A")
        let b = KernelMutex(name: "cached_B")
        KernelThread(name: "first") { a.withLock { b.withLock {} } }.join()
        let nodeA = a.lockClass.index * LockClass.maximumSubclasses
        let nodeB = b.lockClass.index * LockClass.maximumSubclasses
        let key = ChainCache.extend(ChainCache.extend(ChainCache.initialKey, node: nodeA, trylock: false), node: nodeB, trylock: false)
        let cached = ChainCache.shared.contains(key)
        #expect(cached)
        #expect(validator.graphLock.withLock { validator.graph.contains(.init(from: nodeA, to: nodeB)) })
    }

    @Test func releaseOutOfOrderKeepsTheChainOfTheRemainingLocks() {
        let a = KernelMutex(name: "out_of_order_A")
        let b = KernelMutex(name: "out_of_order_B")
        let c = KernelMutex(name: "out_of_order_C")
        KernelThread(name: "juggler") {
            a.lock()
            b.lock()
            a.unlock()
            c.lock()
            c.unlock()
            b.unlock()
        }.join()
        KernelThread(name: "c-then-b") { c.withLock { b.withLock {} } }.join()
        #expect(Lockdep.reports(involving: b.lockClass).map(\.kind) == [.circularDependency])
        #expect(Lockdep.reports(involving: a.lockClass).isEmpty)
    }

    @Test func outOfOrderReleaseGivesTheRemainingLocksTheKeysAFreshAcquisitionWould() {
        let a = KernelMutex(name: "rekey_A")
        let b = KernelMutex(name: "rekey_B")
        let section = LockdepMap(name: "rekey_section", readSection: true)
        KernelThread(name: "rekey") {
            a.lock()
            section.acquire()
            b.lock()
            a.unlock()
            let state = ThreadState.current.pointee
            let nodeB = b.lockClass.index * LockClass.maximumSubclasses
            #expect(state.depth == 2)
            #expect(state.held[0].chainKey == ChainCache.initialKey, "a read section adds nothing to the chain")
            #expect(state.held[1].chainKey == ChainCache.extend(ChainCache.initialKey, node: nodeB, trylock: false))
            b.unlock()
            section.release()
        }.join()
    }
}
