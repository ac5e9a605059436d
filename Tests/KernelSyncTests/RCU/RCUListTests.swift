@testable import KernelSync
import Testing

@Suite struct RCUListTests {
    final class Device: RCUListElement, @unchecked Sendable {
        let name: String
        init(_ name: String) { self.name = name }
    }

    private func names(_ list: RCUList<Device>) -> [String] {
        var names: [String] = []
        RCU.withReadLock { list.forEach { names.append($0.name) } }
        return names
    }

    @Test func addTailDeleteAndReplaceAreSeenByReadersAndRetireWhatTheyUnlink() {
        RCU.debugReclamation = true
        let lock = KernelMutex(name: "rcu-test-list-ops")
        let list = RCUList<Device>()
        let a = Device("a"), b = Device("b"), c = Device("c"), d = Device("d")
        lock.withLock {
            for device in [a, b, c] { list.addTail(device, holding: lock) }
        }
        #expect(names(list) == ["a", "b", "c"])
        #expect(lock.withLock { list.delete(b, holding: lock) })
        #expect(!lock.withLock { list.delete(b, holding: lock) })
        #expect(names(list) == ["a", "c"])
        #expect(lock.withLock { list.replace(a, with: d, holding: lock) })
        #expect(names(list) == ["d", "c"])
        RCU.barrier()
        #expect(a.isPoisoned && b.isPoisoned)
        #expect(!c.isPoisoned && !d.isPoisoned)
    }

    @Test func aReaderKeepsUsingAnElementDeletedDuringItsSection() {
        RCU.debugReclamation = true
        let lock = KernelMutex(name: "rcu-test-list-reader")
        let list = RCUList<Device>()
        let device = Device("gdev")
        lock.withLock { list.addTail(device, holding: lock) }
        RCU.withReadLock {
            var found: Device?
            list.forEach { found = $0 }
            let remover = KernelThread(name: "rcu-test-list-remover") {
                lock.withLock { _ = list.delete(device, holding: lock) }
            }
            remover.join()
            letTheReclaimerCatchUp()
            let line: UInt = #line; found?.assertLive(line: line)
            #expect(!device.isPoisoned)
            #expect(rcuReports(.useAfterFree, line: line).isEmpty)
        }
        RCU.barrier()
        #expect(device.isPoisoned)
    }

    @Test func anElementIsListedOnceAndAddingItAgainStopsTheProcess() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let lock = KernelMutex(name: "rcu-test-list-twice", line: 1)
            let list = RCUList<Device>()
            let device = Device("twice")
            lock.withLock { list.addTail(device, holding: lock) }
            lock.withLock { _ = list.delete(device, holding: lock) }
            // A reader may still stand on it and follow its `next`: relisting would send it elsewhere.
            lock.withLock { list.addTail(device, holding: lock) }
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("is or was on a list already"))
    }

    @Test func writerIterationWithoutTheUpdateLockIsReported() {
        let lock = KernelMutex(name: "rcu-test-list-writer")
        let list = RCUList<Device>()
        lock.withLock { list.addTail(Device("x"), holding: lock) }
        var visited = 0
        lock.withLock { list.forEachLocked(holding: lock) { _ in visited += 1 } }
        let line: UInt = #line; list.forEachLocked(holding: lock, line: line) { _ in visited += 1 }
        #expect(visited == 2)
        let found = rcuReports(.suspiciousRCUUsage, line: line)
        #expect(found.count == 1)
        #expect(found.first?.involves(lock.lockClass) == true)
    }
    @Test func aReaderStandingOnAnUnlinkedElementStillReachesTheElementsAfterIt() {
        RCU.debugReclamation = true
        let lock = KernelMutex(name: "rcu-test-list-unlinked-next")
        let list = RCUList<Device>()
        let a = Device("a"), b = Device("b"), c = Device("c")
        lock.withLock { for device in [a, b, c] { list.addTail(device, holding: lock) } }
        var seen: [String] = []
        RCU.withReadLock {
            list.forEach { device in
                seen.append(device.name)
                guard device === a else { return }
                let remover = KernelThread(name: "rcu-test-list-unlinker") {
                    lock.withLock { _ = list.delete(a, holding: lock); _ = list.delete(b, holding: lock) }
                }
                remover.join()
            }
        }
        #expect(seen == ["a", "b", "c"])
        #expect(names(list) == ["c"])
        RCU.barrier()
        #expect(a.isPoisoned && b.isPoisoned && !c.isPoisoned)
    }

    @Test func firstFindsTheUpdatersElementAndIsCheckedForTheLock() {
        let lock = KernelMutex(name: "rcu-test-list-first")
        let list = RCUList<Device>()
        let a = Device("a"), b = Device("b"), c = Device("c")
        lock.withLock { for device in [a, b, c] { list.addTail(device, holding: lock) } }
        #expect(lock.withLock { list.first(holding: lock) { $0.name == "b" } } === b)
        #expect(lock.withLock { list.first(holding: lock) { $0.name.hasPrefix("") } } === a)
        #expect(lock.withLock { list.first(holding: lock) { $0.name == "z" } } == nil)
        lock.withLock { _ = list.unlink(b, holding: lock) }
        #expect(lock.withLock { list.first(holding: lock) { $0 === b } } == nil, "an unlinked element is not found")
        let line: UInt = #line; _ = list.first(holding: lock, line: line) { _ in false }
        #expect(rcuReports(.suspiciousRCUUsage, line: line).count == 1)
        RCU.retire(b)
    }

    /// The element of `detached`, which is freed (dropping the list's reference after a grace period).
    private func element(freeing detached: consuming RCUDetached<Device>?) -> Device? {
        switch consume detached {
        case .none:
            return nil
        case .some(let detached):
            let element = detached.element
            detached.free()
            return element
        }
    }

    @Test func detachFirstUnlinksTheFirstMatchAndKeepsTheTailRight() {
        let lock = KernelMutex(name: "rcu-test-list-detach-first")
        let list = RCUList<Device>()
        let a = Device("a"), b1 = Device("b"), b2 = Device("b"), c = Device("c")
        lock.lock()
        for device in [a, b1, b2, c] { list.addTail(device, holding: lock) }
        #expect(element(freeing: list.detachFirst(holding: lock) { $0.name == "z" }) == nil)
        #expect(element(freeing: list.detachFirst(holding: lock) { $0.name == "b" }) === b1,
                "the first match, not a later one")
        // The tail: detaching the last element moves it back, so the next addition links after the
        // new last element, not after the detached one.
        #expect(element(freeing: list.detachFirst(holding: lock) { $0 === c }) === c)
        list.addTail(Device("d"), holding: lock)
        lock.unlock()
        #expect(names(list) == ["a", "b", "d"])
        let line: UInt = #line; _ = element(freeing: list.detachFirst(holding: lock, line: line) { _ in false })
        #expect(rcuReports(.suspiciousRCUUsage, line: line).count == 1)
        RCU.barrier()
    }

    @Test func aDetachedElementIsRetiredWithTheListsReference() {
        RCU.debugReclamation = true
        let lock = KernelMutex(name: "rcu-test-list-detach-retire")
        let list = RCUList<Device>()
        let a = Device("a"), b = Device("b")
        lock.withLock { for device in [a, b] { list.addTail(device, holding: lock) } }
        lock.withLock {
            guard let detached = list.detach(a, holding: lock) else {
                Issue.record("a is listed")
                return
            }
            #expect(detached.element === a)
            var again = false
            if let second = list.detach(a, holding: lock) {
                again = true
                second.free()
            }
            #expect(!again, "detached once")
            RCU.retire(detached)
        }
        #expect(names(list) == ["b"])
        RCU.barrier()
        #expect(a.isPoisoned && !b.isPoisoned)
    }

    /// The ways an updater unlinks an element and hands over the list's reference to it.
    enum Unlink: CaseIterable, Sendable {
        /// `detach`, and the token dropped unconsumed.
        case detachThenDrop
        /// `detach`, then `RCU.retire` of the token (`kfree_rcu()`).
        case detachThenRetire
        /// `delete` (`list_del_rcu()` + `kfree_rcu()`).
        case delete
        /// `replace` (`list_replace_rcu()` + `kfree_rcu()`).
        case replace
    }

    @Test(.serialized, arguments: Unlink.allCases)
    func anUnlinkedElementOutlivesTheReadersThatFoundIt(_ unlink: Unlink) {
        // Nothing queued before the reader enters (see the pointer's sibling test).
        RCU.barrier()
        let lock = KernelMutex(name: "rcu-test-list-unlink-\(unlink)")
        let list = RCUList<Device>()
        weak var watched: Device?
        do {
            let device = Device("unlinked")
            watched = device
            lock.withLock { list.addTail(device, holding: lock) }
        }
        let found = Flag()
        let release = Flag()
        let reader = KernelThread(name: "rcu-test-list-unlink-reader") {
            RCU.withReadLock {
                list.forEach { _ in found.raise() }
                release.wait()
            }
        }
        found.wait()
        // No other reference is left: a reader still stands on the element, so the list's reference
        // must outlive its section, whichever way it goes (the grace period named at the unlink).
        lock.withLock {
            let device = list.first(holding: lock) { _ in true }!
            switch unlink {
            case .detachThenDrop:
                _ = list.detach(device, holding: lock)
            case .detachThenRetire:
                guard let detached = list.detach(device, holding: lock) else {
                    Issue.record("the element is listed")
                    return
                }
                RCU.retire(detached)
            case .delete:
                #expect(list.delete(device, holding: lock))
            case .replace:
                #expect(list.replace(device, with: Device("replacement"), holding: lock))
            }
        }
        letTheReclaimerCatchUp()
        #expect(watched != nil, "alive while a reader that found it is inside its section")
        release.raise()
        reader.join()
        RCU.barrier()
        // (With debug reclamation on, which another test may have set, a retired element is poisoned
        // and quarantined rather than dropped.)
        #expect(watched == nil || watched?.isPoisoned == true, "dropped after the grace period")
    }

    @Test func freeAfterSynchronizeDropsTheListsReferenceAtOnce() {
        let lock = KernelMutex(name: "rcu-test-list-detach-free")
        let list = RCUList<Device>()
        weak var watched: Device?
        var detached: RCUDetached<Device>?
        do {
            let device = Device("freed")
            watched = device
            lock.withLock {
                list.addTail(device, holding: lock)
                detached = list.detach(device, holding: lock)
            }
        }
        RCU.synchronize()
        detached.take()?.free()
        #expect(watched == nil, "a grace period had passed: no deferral")
    }

    @Test func theUpdaterMayUnlinkTheElementItIsGiven() {
        let lock = KernelMutex(name: "rcu-test-list-unlink-in-walk")
        let list = RCUList<Device>()
        lock.withLock { for name in ["a", "b", "c"] { list.addTail(Device(name), holding: lock) } }
        var visited: [String] = []
        lock.withLock {
            list.forEachLocked(holding: lock) { device in
                visited.append(device.name)
                list.delete(device, holding: lock)
            }
        }
        #expect(visited == ["a", "b", "c"])
        #expect(lock.withLock { list.isEmpty(holding: lock) })
        lock.withLock { list.addTail(Device("d"), holding: lock) }
        #expect(names(list) == ["d"])
    }

    @Test func readersWalkingDuringConcurrentAddsAndUnlinksNeverSeeAPoisonedElement() {
        RCU.debugReclamation = true
        let lock = KernelMutex(name: "rcu-test-list-churn")
        let list = RCUList<Device>()
        let done = Flag()
        let poisonedSeen = Counter()
        let line: UInt = #line
        let readers = (0..<2).map { index in
            KernelThread(name: "rcu-test-list-walker/\(index)") {
                while !done.isRaised {
                    RCU.withReadLock {
                        list.forEach { device in
                            if device.isPoisoned { poisonedSeen.increment() }
                            device.assertLive(line: line)
                        }
                    }
                }
            }
        }
        var listed: [Device] = []
        for round in 0..<20_000 {
            let device = Device("d\(round)")
            lock.withLock {
                list.addTail(device, holding: lock)
                listed.append(device)
                // Unlink from the head, the tail or the middle in turn, keeping a few listed.
                if listed.count > 4 {
                    let victim = listed.remove(at: [0, listed.count - 1, listed.count / 2][round % 3])
                    list.unlink(victim, holding: lock)
                    RCU.retire(victim)
                }
            }
        }
        done.raise()
        for reader in readers { reader.join() }
        RCU.barrier()
        #expect(poisonedSeen.value == 0)
        #expect(rcuReports(.useAfterFree, line: line).isEmpty)
        #expect(names(list) == listed.map(\.name))
    }
}
