import CKernelSync
import Glibc
@testable import KernelSync
import Testing

@Suite struct RCUReadSideTests {
    @Test func readSectionsNestAndOnlyTheOutermostUnlockEndsTheSection() {
        RCU.readLock()
        RCU.readLock()
        RCU.withReadLock { #expect(RCUReaderRecord.currentNesting == 3) }
        RCU.readUnlock()
        #expect(RCU.isInReadSection)
        RCU.readUnlock()
        #expect(!RCU.isInReadSection)
    }

    /// The read side's lock and unlock test every bit of `ks_fast_path_flags` at once and take an
    /// outlined slow path on any: with the validator off and grace periods on membarrier(2), no bit may
    /// be set, or every reader pays a call per section. (A bit added there for the update side once
    /// halved the mixed run's reader passes.)
    @Test func theReadSideFastPathIsOpenWithTheValidatorOffAndMembarrier() async {
        await #expect(processExitsWith: .success) {
            Lockdep.mode = .off
            RCU.synchronize()
            guard RCU.usesMembarrier else { exit(0) }
            precondition(ks_fast_path_flags_get() == 0, "flags \(ks_fast_path_flags_get()) send every read section down its slow path")
            exit(0)
        }
    }

    @Test func aThreadRegistersOnFirstUseAndIsUnregisteredAtExit() {
        let recorder = Recorder<RCUReaderRecord>()
        let registeredWhileAlive = Flag()
        KernelThread(name: "rcu-test-register") {
            #expect(RCUReaderRecord.current == nil)
            RCU.withReadLock {}
            let record = RCUReaderRecord.current!.takeUnretainedValue()
            if GracePeriodEngine.shared.registryLock.withLock({ record.registered }) { registeredWhileAlive.raise() }
            recorder.append(record)
        }.join()
        #expect(registeredWhileAlive.isRaised)
        let record = recorder.values[0]
        #expect(!GracePeriodEngine.shared.registryLock.withLock { record.registered })
    }

    @Test func anOfflineThreadIsNotTrackedAndComesBackOnlineOnItsNextReadSection() {
        KernelThread(name: "rcu-test-offline") {
            RCU.withReadLock {}
            let record = RCUReaderRecord.current!.takeUnretainedValue()
            RCU.threadOffline()
            #expect(RCUReaderRecord.current == nil)
            #expect(!GracePeriodEngine.shared.registryLock.withLock { record.registered })
            RCU.synchronize()
            RCU.withReadLock {
                #expect(RCUReaderRecord.current!.takeUnretainedValue() === record)
                #expect(GracePeriodEngine.shared.registryLock.withLock { record.registered })
            }
        }.join()
    }

    @Test func goingOfflineInsideAReadSectionIsReportedAndIgnored() {
        RCU.readLock()
        let line: UInt = #line; RCU.threadOffline(line: line)
        #expect(RCU.isInReadSection)
        RCU.readUnlock()
        #expect(rcuReports(.offlineInReadSection, line: line).count == 1)
    }

    @Test func anUnbalancedReadUnlockIsReportedAndIgnored() {
        let line: UInt = #line; RCU.readUnlock(line: line)
        #expect(!RCU.isInReadSection)
        #expect(rcuReports(.unbalancedReadUnlock, line: line).count == 1)
    }

    @Test func lockingASleepingMutexInsideAReadSectionIsReported() {
        let mutex = KernelMutex(name: "rcu-test-sleeping-mutex")
        RCU.readLock()
        let line: UInt = #line; mutex.lock(line: line)
        mutex.unlock()
        RCU.readUnlock()
        let found = rcuReports(.sleepInReadSection, line: line)
        #expect(found.count == 1)
        #expect(found.first?.text.contains("rcu_read_lock") == true)
    }

    @Test func aReadSectionEndedAfterTheValidatorWasSwitchedOffLeavesNothingHeld() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            Lockdep.mode = .report
            RCU.readLock()
            Lockdep.mode = .off
            RCU.readUnlock()
            Lockdep.mode = .report
            let held = Lockdep.heldLocks()
            precondition(held.isEmpty, "still held after the read section ended: \(held)")
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(!text.contains("still held"))
    }
}
