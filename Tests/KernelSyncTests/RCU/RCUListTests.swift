@testable import KernelSync
import Testing

@Suite struct RCUListTests {
    final class Device: RCUProtected, @unchecked Sendable {
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
            let line: UInt = #line; found?.assertLive(line: line)
            #expect(!device.isPoisoned)
            #expect(rcuReports(.useAfterFree, line: line).isEmpty)
        }
        RCU.barrier()
        #expect(device.isPoisoned)
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
}
