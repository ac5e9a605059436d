import Glibc
import IOMMUModel
import KernelSync
import Testing

/// The benchmark entry point. Serialized: each run sets the process-wide validator mode and restores
/// it when done, so two runs at once could restore each other's setting.
@Suite(.serialized) struct IOMMUWorkloadTests {
    @Test(arguments: RemoveVariant.allCases)
    func theWorkloadFreesEverythingItAllocates(variant: RemoveVariant) {
        let result = IOMMUWorkload.run(variant: variant, threads: 2, groups: 3, cycles: 300, validator: true, readers: 1)
        #expect(result.counters.groupDevicesAllocated == 300)
        #expect(result.counters.removals == 300)
        #expect(result.counters.liveGroupDevices == 0)
        #expect(result.counters.groupsAllocated == 3 && result.counters.groupsFreed == 3)
        #expect(result.validatorReports == 0)
        #expect(result.groupMutex == nil)
        #expect(result.cyclesPerSecond > 0)
    }

    /// In a process of its own: lock statistics are a process-wide switch that other tests rely on
    /// being off.
    @Test func theWorkloadReportsGroupMutexStatisticsWhenAskedTo() async {
        await #expect(processExitsWith: .success) {
            for variant in RemoveVariant.allCases {
                let result = IOMMUWorkload.run(
                    variant: variant, threads: 2, groups: 2, cycles: 200, validator: false, lockStatistics: true)
                let statistics = result.groupMutex
                precondition((statistics?.acquisitions ?? 0) >= 400, "\(variant): two acquisitions per cycle expected, got \(String(describing: statistics))")
                precondition((statistics?.holdNanosecondsTotal ?? 0) > 0, "\(variant): no hold time in \(String(describing: statistics))")
                precondition(result.meanGroupMutexHoldNanoseconds != nil, "\(variant): no mean hold time")
                precondition(!Lockdep.lockStatisticsEnabled, "\(variant): statistics left on after the run")
            }
            exit(0)
        }
    }

    /// In a process of its own, for the same reason: hold-time samples turn lock statistics on.
    @Test func holdTimeSamplesSpreadOverTheRunsAcquisitionsUpToTheCapacity() async {
        await #expect(processExitsWith: .success) {
            let result = IOMMUWorkload.run(variant: .freeUnderMutex, threads: 2, groups: 2, cycles: 1_000, holdTimeSamples: 100)
            // 2,000 acquisitions, one sample in every 20.
            precondition(result.groupMutexHoldTimes.count == 100, "expected 100 samples, got \(result.groupMutexHoldTimes.count)")
            precondition(result.groupMutexHoldTimes.allSatisfy { $0 > 0 }, "a hold of zero nanoseconds: \(result.groupMutexHoldTimes)")
            precondition(result.groupMutex != nil, "hold-time samples should bring the totals with them")
            precondition(!Lockdep.lockStatisticsEnabled, "statistics left on after the run")
            exit(0)
        }
    }
}
