@testable import KernelSync
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
        final class Node: RCUProtected, @unchecked Sendable {}
        let first = Node()
        let pointer = RCUPointer<Node>(first)
        let lock = KernelMutex(name: "rcu-test-pointer-retire")
        lock.withLock { pointer.assign(Node(), holding: lock) }
        RCU.barrier()
        #expect(first.isPoisoned)
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
