import Glibc
import Testing
@testable import KernelSync

/// lock_stat: acquisitions, contentions, wait and hold time per class.
@Suite struct LockStatisticsTests {
    @Test func acquisitionsAndHoldTimeAreCountedPerClass() async {
        await #expect(processExitsWith: .success) {
            Lockdep.lockStatisticsEnabled = true
            let lock = KernelMutex(name: "stat_lock")
            lock.lock()
            let waiter = KernelThread(name: "waiter") { lock.withLock {} }
            usleep(20_000)
            lock.unlock()
            waiter.join()
            let stats = lock.lockClass.statistics.snapshot
            precondition(stats.acquisitions == 2, "expected 2 acquisitions, got \(stats)")
            precondition(stats.contentions <= 1, "one waiter can contend once: \(stats)")
            precondition(stats.contentions == 0 || stats.waitNanosecondsTotal > 0, "contention without wait: \(stats)")
            precondition(stats.holdNanosecondsMaximum >= 20_000_000, "the first hold lasted 20 ms: \(stats)")
            precondition(stats.holdNanosecondsMaximum <= stats.holdNanosecondsTotal, "max above total: \(stats)")
            exit(0)
        }
    }

    @Test func contendedAcquisitionsAccumulateWaitTime() {
        let statistics = LockStatistics()
        statistics.recordAcquisition(contended: false, waitNanoseconds: 0)
        statistics.recordAcquisition(contended: true, waitNanoseconds: 300)
        statistics.recordAcquisition(contended: true, waitNanoseconds: 100)
        statistics.recordHold(nanoseconds: 50)
        let snapshot = statistics.snapshot
        #expect(snapshot.acquisitions == 3)
        #expect(snapshot.contentions == 2)
        #expect(snapshot.waitNanosecondsTotal == 400)
        #expect(snapshot.waitNanosecondsMaximum == 300)
        #expect(snapshot.holdNanosecondsTotal == 50)
    }

    @Test func statisticsAreNotCollectedWhenDisabled() {
        let lock = KernelMutex(name: "stat_disabled")
        lock.withLock {}
        #expect(!Lockdep.lockStatisticsEnabled)
        #expect(lock.lockClass.statistics.snapshot.acquisitions == 0)
    }
}
