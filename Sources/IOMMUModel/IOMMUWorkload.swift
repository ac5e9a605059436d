import KernelSync
import Synchronization

/// The benchmark workload of DESIGN.md: probe+remove cycles on several threads over a few groups, for
/// one remove-path variant, optionally with RCU readers walking the groups' device lists.
///
/// One cycle on thread t: add a device to group `(t + i) % groups` (``IOMMUSystem/addDevice(_:to:)``:
/// a group_device with a fresh name, appended under the group mutex), then remove it from that group
/// (``IOMMUSystem/removeDevice(_:from:)``: unlink under the mutex, the empty-group check, the variant's
/// free).
///
/// ```swift
/// let result = IOMMUWorkload.run(variant: .deferredDisableRCU, threads: 2, groups: 4, cycles: 1_000_000)
/// print(result.cyclesPerSecond)
/// ```
public enum IOMMUWorkload {
    /// Runs `cycles` cycles in all, split over `threads` threads, over `groups` groups, with the
    /// validator on or off for the run, and `readers` reader threads traversing the device lists under
    /// RCU until the cycles are done. With `lockStatistics`, the group mutex's hold and wait times are
    /// collected (``WorkloadResult/groupMutex``). With `holdTimeSamples` above zero (which implies
    /// `lockStatistics`), up to that many individual hold times of the group mutex are kept, spread
    /// evenly over the run's acquisitions (``WorkloadResult/groupMutexHoldTimes``).
    ///
    /// Context: sets ``KernelSync/Lockdep/mode`` and ``KernelSync/Lockdep/lockStatisticsEnabled`` for the
    /// run and restores them after: do not run it beside other users of the validator. May sleep.
    public static func run(
        variant: RemoveVariant, threads: Int, groups: Int, cycles: Int, validator: Bool = false,
        readers: Int = 0, lockStatistics: Bool = false, holdTimeSamples: Int = 0
    ) -> WorkloadResult {
        precondition(threads >= 1 && groups >= 1 && cycles >= 0 && readers >= 0 && holdTimeSamples >= 0,
                     "IOMMUWorkload.run: threads \(threads) and groups \(groups) must be at least 1, cycles \(cycles), readers \(readers) and holdTimeSamples \(holdTimeSamples) not negative")
        let lockStatistics = lockStatistics || holdTimeSamples > 0
        let savedMode = Lockdep.mode
        let savedStatistics = Lockdep.lockStatisticsEnabled
        Lockdep.mode = validator ? .report : .off
        Lockdep.lockStatisticsEnabled = lockStatistics
        defer {
            Lockdep.mode = savedMode
            Lockdep.lockStatisticsEnabled = savedStatistics
        }

        let runNumber = runCounter.add(1, ordering: .relaxed).newValue
        let classes = IOMMULockClasses(tag: "workload\(runNumber)")
        let system = IOMMUSystem(.init(variant: variant, lockClasses: classes, bookkeeping: false))
        // Two acquisitions per cycle: the probe's and the removal's.
        let holdSamples = holdTimeSamples > 0
            ? classes.groupMutex.statistics.sampleHoldTimes(
                capacity: holdTimeSamples, stride: max(1, 2 * cycles / holdTimeSamples))
            : nil
        let groupList = (0..<groups).map { _ in system.allocGroup() }
        let reportsBefore = Lockdep.reports.count
        let stop = Atomic<Bool>(false)
        let readerPasses = Atomic<Int>(0)
        let readerVisits = Atomic<Int>(0)

        // The readers and writers hold the groups unretained (the run keeps them alive): taking a
        // reference on each pass would write the group's reference count, which every thread shares,
        // and an RCU reader writes no shared memory.
        let unretainedGroups = groupList.map { Unmanaged.passUnretained($0) }
        let readerThreads = (0..<readers).map { index in
            KernelThread(name: "iommu-reader/\(index)") {
                var passes = 0
                var visited = 0
                while !stop.load(ordering: .relaxed) {
                    unretainedGroups[passes % unretainedGroups.count]._withUnsafeGuaranteedRef { group in
                        RCU.withReadLock { group.devices.forEach { gdev in if !gdev.name.isEmpty { visited += 1 } } }
                    }
                    passes += 1
                }
                readerPasses.add(passes, ordering: .relaxed)
                readerVisits.add(visited, ordering: .relaxed)
            }
        }

        let clock = ContinuousClock()
        let start = clock.now
        KernelThread.runAll(count: threads, name: "iommu-cycle") { thread in
            let share = cycles / threads + (thread < cycles % threads ? 1 : 0)
            let device = Device(name: "bench\(thread)", topology: -1)
            for cycle in 0..<share {
                // Unretained, as the C peer indexes its array of groups, and handed to the removal as
                // the C peer's remove_device(dev, group) has it: a retain would write the group's
                // reference count, which every writer shares, twice more a cycle.
                unretainedGroups[(thread + cycle) % unretainedGroups.count]._withUnsafeGuaranteedRef { group in
                    do {
                        try system.addDevice(device, to: group)
                    } catch {
                        preconditionFailure("IOMMUWorkload: addDevice failed with \(error); no fault is armed")
                    }
                    system.removeDevice(device, from: group)
                }
            }
        }
        let elapsed = clock.now - start
        stop.store(true, ordering: .relaxed)
        for reader in readerThreads { reader.join() }

        for group in groupList { group.put() }
        RCU.barrier()
        system.shutdown()
        let statistics = lockStatistics ? classes.groupMutex.statistics.snapshot : nil
        let reports = Lockdep.reports.dropFirst(reportsBefore).filter { report in
            classes.all.contains { report.involves($0) }
        }.count
        return WorkloadResult(
            variant: variant, threads: threads, groups: groups, cycles: cycles, readers: readers,
            validator: validator, elapsed: elapsed, readerPasses: readerPasses.load(ordering: .relaxed),
            readerDevicesSeen: readerVisits.load(ordering: .relaxed),
            groupMutex: statistics, groupMutexHoldTimes: holdSamples?.values ?? [], counters: system.counters.snapshot, validatorReports: reports)
    }

    /// Numbers the runs, so that each gets its own lock classes (and so its own statistics).
    private static let runCounter = Atomic<Int>(0)
}
