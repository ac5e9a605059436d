@testable import KernelSync
import Synchronization
import Testing

@Suite struct RCUPointerTests {
    final class Version: @unchecked Sendable {
        let number: Int
        let payload: [Int]
        init(_ number: Int) {
            self.number = number
            payload = Array(repeating: number, count: 16)
        }
    }

    @Test func readersSeeOnlyFullyInitialisedPublishedVersionsInOrder() {
        let pointer = RCUPointer<Version>(Version(0))
        let lock = KernelMutex(name: "rcu-test-pointer-update")
        let done = Flag()
        let problems = Recorder<String>()
        let reader = KernelThread(name: "rcu-test-pointer-reader") {
            var last = 0
            while !done.isRaised {
                RCU.withReadLock {
                    let version = pointer.dereference()!
                    if version.number < last { problems.append("went back from \(last) to \(version.number)") }
                    if version.payload != Array(repeating: version.number, count: 16) {
                        problems.append("version \(version.number) seen before its initialisation")
                    }
                    last = version.number
                }
            }
        }
        for number in 1...2_000 { lock.withLock { pointer.assign(Version(number), holding: lock) } }
        done.raise()
        reader.join()
        #expect(problems.values.isEmpty)
        #expect(lock.withLock { pointer.dereferenceProtected(holding: lock)?.number } == 2_000)
    }

    @Test func assignRetiresTheOldValueThroughAGracePeriod() {
        RCU.debugReclamation = true
        let first = Node()
        let pointer = RCUPointer<Node>(first)
        let lock = KernelMutex(name: "rcu-test-pointer-retire")
        lock.withLock { pointer.assign(Node(), holding: lock) }
        RCU.barrier()
        #expect(first.isPoisoned)
    }

    /// A pointer to a fresh object that nothing else references, and a weak reference to watch it.
    private func pointerToFreshVersion(_ number: Int) -> (RCUPointer<Version>, () -> Version?) {
        let version = Version(number)
        weak let watched = version
        return (RCUPointer<Version>(version), { watched })
    }

    /// Runs `body` while a reader that loaded `pointer` is still inside its read section (it keeps no
    /// reference of its own), then lets the reader leave.
    private func whileAReaderStandsOn(_ pointer: RCUPointer<Version>, _ body: () -> Void) {
        let loaded = Flag()
        let leave = Flag()
        let reader = KernelThread(name: "rcu-test-pointer-replace-reader") {
            RCU.withReadLock {
                if pointer.dereference() != nil { loaded.raise() }
                leave.wait()
            }
        }
        loaded.wait()
        body()
        leave.raise()
        reader.join()
    }

    @Test func replaceHandsBackThePreviousObjectAndItsFreeWaitsForTheReaders() {
        let (pointer, watched) = pointerToFreshVersion(1)
        let lock = KernelMutex(name: "rcu-test-pointer-replace-free")
        whileAReaderStandsOn(pointer) {
            let replaced = lock.withLock { pointer.replace(with: Version(2), holding: lock) }
            #expect(replaced.object?.number == 1)
            replaced.free()
            #expect(watched() != nil, "no grace period since the replacement: the free is deferred")
        }
        RCU.barrier()
        #expect(watched() == nil, "dropped after the grace period")
        #expect(lock.withLock { pointer.dereferenceProtected(holding: lock)?.number } == 2)
    }

    /// The ways an updater unpublishes an object and hands over the pointer's reference to it.
    enum Unpublish: CaseIterable, Sendable {
        /// `assign` (`rcu_replace_pointer()` + `kfree_rcu()`).
        case assign
        /// `replace`, then `retire()` of the token.
        case replaceThenRetire
        /// `replace`, and the token dropped unconsumed: retired, not dropped.
        case replaceThenDrop
    }

    @Test(.serialized, arguments: Unpublish.allCases)
    func anUnpublishedObjectOutlivesTheReadersThatLoadedIt(_ unpublish: Unpublish) {
        // Nothing queued before the reader enters: a callback left by the previous case (its pointer's
        // deinit retires what the pointer held) would start a grace period that waits for this reader,
        // and this case's callback would queue behind it whatever its cookie (found in review).
        RCU.barrier()
        let (pointer, watched) = pointerToFreshVersion(1)
        let lock = KernelMutex(name: "rcu-test-pointer-unpublish-\(unpublish)")
        whileAReaderStandsOn(pointer) {
            lock.withLock {
                switch unpublish {
                case .assign: pointer.assign(Version(2), holding: lock)
                case .replaceThenRetire: pointer.replace(with: Version(2), holding: lock).retire()
                case .replaceThenDrop: _ = pointer.replace(with: nil, holding: lock)
                }
            }
            letTheReclaimerCatchUp()
            #expect(watched() != nil, "alive while a reader that loaded it is inside its section")
        }
        RCU.barrier()
        #expect(watched() == nil)
    }

    @Test func publishIntoAnEmptyPointerIsSeenWholeByReaders() {
        let pointer = RCUPointer<Version>()
        let seen = Atomic<Int>(0)
        let problems = Recorder<String>()
        let reader = KernelThread(name: "rcu-test-pointer-publish-reader") {
            while seen.load(ordering: .relaxed) == 0 {
                RCU.withReadLock {
                    guard let version = pointer.dereference() else { return }
                    if version.payload != Array(repeating: 7, count: 16) {
                        problems.append("published version seen before its initialisation")
                    }
                    seen.store(version.number, ordering: .relaxed)
                }
            }
        }
        pointer.publish(Version(7))
        reader.join()
        #expect(seen.load(ordering: .relaxed) == 7)
        #expect(problems.values.isEmpty)
        let lock = KernelMutex(name: "rcu-test-pointer-publish")
        // Cleared under the update lock, the pointer takes a publication again.
        lock.withLock { pointer.assign(nil, holding: lock) }
        pointer.publish(Version(8))
        #expect(lock.withLock { pointer.dereferenceProtected(holding: lock)?.number } == 8)
    }

    @Test func publishIntoAPointerThatHoldsAnObjectTraps() async {
        await #expect(processExitsWith: .failure) {
            let pointer = RCUPointer<Version>(Version(1))
            pointer.publish(Version(2))
        }
    }

    @Test func freeAfterSynchronizeDropsThePointersReferenceAtOnce() {
        let (pointer, watched) = pointerToFreshVersion(1)
        let lock = KernelMutex(name: "rcu-test-pointer-replace-sync")
        let replaced = lock.withLock { pointer.replace(with: nil, holding: lock) }
        RCU.synchronize()
        replaced.free()
        #expect(watched() == nil, "a grace period had passed: no deferral")
    }

    final class Member: RCUListElement, @unchecked Sendable {}
    /// An object debug reclamation poisons when it is retired.
    final class Node: RCUProtected, @unchecked Sendable {}

    @Test func aDetachedElementAndAReplacedObjectAreRetiredTogether() {
        let (pointer, watched) = pointerToFreshVersion(1)
        let lock = KernelMutex(name: "rcu-test-pointer-replace-along")
        let list = RCUList<Member>()
        weak var watchedMember: Member?
        do {
            let member = Member()
            watchedMember = member
            lock.withLock { list.addTail(member, holding: lock) }
        }
        whileAReaderStandsOn(pointer) {
            lock.withLock {
                let member = list.first(holding: lock) { _ in true }!
                guard let detached = list.detach(member, holding: lock) else {
                    Issue.record("the member is listed")
                    return
                }
                RCU.retire(detached, along: pointer.replace(with: nil, holding: lock))
            }
            letTheReclaimerCatchUp()
            #expect(watched() != nil && watchedMember != nil, "both wait for the reader's section")
        }
        RCU.barrier()
        // (With debug reclamation on, which another test may have set, the member, an RCUProtected
        // object, is poisoned and quarantined rather than dropped.)
        #expect(watched() == nil && (watchedMember == nil || watchedMember?.isPoisoned == true),
                "both dropped after the grace period")
    }

    @Test func theTokensCookiesAreNeverBelowASnapshotTakenBeforeTheUpdate() {
        // Catches a token whose cookie is missing or computed wrong (0, or the sequence itself).
        // What orders the cookie after the update, the exchange's barrier on x86, no test on one
        // thread can show: that rests on the argument in GracePeriodEngine.snapshotAfterAtomicUpdate().
        let (pointer, _) = pointerToFreshVersion(1)
        let lock = KernelMutex(name: "rcu-test-pointer-token-cookies")
        let list = RCUList<Member>()
        lock.withLock { list.addTail(Member(), holding: lock) }
        RCU.synchronize()
        let before = RCU.snapshot()
        lock.withLock {
            let member = list.first(holding: lock) { _ in true }!
            guard let detached = list.detach(member, holding: lock) else {
                Issue.record("the member is listed")
                return
            }
            let replaced = pointer.replace(with: nil, holding: lock)
            #expect(detached.detachedAt >= before && replaced.replacedAt >= before)
            RCU.retire(detached, along: replaced)
        }
    }

    @Test func aDetachedElementAndAReplacedObjectRetiredTogetherAreBothPoisoned() {
        RCU.debugReclamation = true
        let first = Node()
        let pointer = RCUPointer<Node>(first)
        let lock = KernelMutex(name: "rcu-test-pointer-replace-poison")
        let list = RCUList<Member>()
        let member = Member()
        lock.withLock {
            list.addTail(member, holding: lock)
            if let detached = list.detach(member, holding: lock) {
                RCU.retire(detached, along: pointer.replace(with: Node(), holding: lock))
            }
        }
        RCU.barrier()
        #expect(first.isPoisoned && member.isPoisoned)
    }

    @Test func dereferenceOutsideAReadSectionIsReported() {
        let pointer = RCUPointer<Version>(Version(1))
        let line: UInt = #line; _ = pointer.dereference(line: line)
        #expect(rcuReports(.suspiciousRCUUsage, line: line).count == 1)
    }

    @Test func assignWithoutTheUpdateLockIsReported() {
        let pointer = RCUPointer<Version>(Version(1))
        let lock = KernelMutex(name: "rcu-test-pointer-unlocked")
        let line: UInt = #line; pointer.assign(Version(2), holding: lock, line: line)
        #expect(rcuReports(.suspiciousRCUUsage, line: line).first?.involves(lock.lockClass) == true)
    }
}
