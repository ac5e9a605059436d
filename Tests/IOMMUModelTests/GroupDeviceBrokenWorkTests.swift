import Glibc
@testable import IOMMUModel
import KernelSync
import Synchronization
import Testing

/// `gdev->broken_work` is made at its first use (``GroupDevice/brokenWork``); until then a cancel has
/// nothing to do and a disable is counted in the group_device. These run with the validator off, where
/// that short path is taken, so each runs in a process of its own: the mode is process-wide.
@Suite struct GroupDeviceBrokenWorkTests {
    @Test func aDisableBeforeTheWorkIsMadeCarriesOverToIt() async {
        await #expect(processExitsWith: .success) {
            Lockdep.mode = .off
            let system = IOMMUSystem(.init(variant: .deferredDisableRCU, lockClasses: IOMMULockClasses(tag: "lazy-carry")))
            let device = Device(name: "lazy-carry", topology: 1)
            try! system.probeDevice(device)
            let gdev = system.groupDevice(of: device)!
            precondition(!gdev.cancelBrokenWorkSync(), "an unmade item has nothing pending")
            precondition(!gdev.disableBrokenWorkSync(), "an unmade item has nothing pending")
            precondition(!gdev.disableBrokenWorkSync())
            // Made now, with both disables: queueing fails until two enables.
            let item = gdev.brokenWork
            precondition(item === gdev.brokenWork, "made once")
            precondition(!system.brokenWorkQueue.queue(item), "the disables carried over")
            precondition(!item.enable(), "one disable left")
            precondition(!system.brokenWorkQueue.queue(item))
            precondition(item.enable(), "enabled again")
            item.flush()
            system.removeDevice(device)
            RCU.barrier()
            system.shutdown()
            exit(0)
        }
    }

    /// A report (which makes the item and queues it) racing the removal's disable: whichever wins, the
    /// disable is never lost, so the item ends disabled; and the item is made exactly once.
    @Test func aDisableRacingTheMakingOfTheWorkIsNeverLost() async {
        await #expect(processExitsWith: .success) {
            Lockdep.mode = .off
            let system = IOMMUSystem(.init(variant: .deferredDisableRCU, lockClasses: IOMMULockClasses(tag: "lazy-race")))
            for round in 0..<2_000 {
                let device = Device(name: "lazy-race\(round)", topology: round % 4)
                try! system.probeDevice(device)
                let gdev = system.groupDevice(of: device)!
                let go = Atomic<Int>(0)
                let made = Atomic<Int>(0)
                let reporter = KernelThread(name: "reporter") {
                    go.add(1, ordering: .relaxed)
                    while go.load(ordering: .relaxed) < 2 {}
                    made.store(address(of: gdev.brokenWork), ordering: .relaxed)
                    system.reportDeviceBroken(device)
                }
                go.add(1, ordering: .relaxed)
                while go.load(ordering: .relaxed) < 2 {}
                gdev.disableBrokenWorkSync()
                reporter.join()
                let item = gdev.brokenWork
                precondition(address(of: item) == made.load(ordering: .relaxed),
                             "round \(round): the item was made twice")
                precondition(!system.brokenWorkQueue.queue(item), "round \(round): the disable was lost")
                item.flush()
                system.removeDevice(device)
            }
            RCU.barrier()
            system.shutdown()
            exit(0)
        }
    }
}

private func address(of item: WorkItem) -> Int { Int(bitPattern: Unmanaged.passUnretained(item).toOpaque()) }
