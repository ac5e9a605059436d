import Glibc
import IOMMUModel
import KernelSync
import Synchronization
import Testing

/// Probe, remove, broken-device reports from an "interrupt" thread, and resets, on four threads at
/// once, with RCU debug reclamation on: the fixed designs must end with no report, no warning and no
/// leak.
@Suite struct IOMMUStressTests {
    @Test(.timeLimit(.minutes(2)), arguments: [RemoveVariant.deferredDisable, .deferredDisableRCU])
    func fourThreadsOfProbeRemoveReportAndResetEndClean(variant: RemoveVariant) throws {
        RCU.debugReclamation = true
        let seed = UInt64(monotonicSeed())
        print("IOMMUStressTests \(variant): seed \(seed)")
        let system = makeSystem(variant, tag: "stress")
        defer { system.shutdown() }
        let devices = (0..<12).map { Device(name: "stress\($0)", topology: $0 % 4) }
        let deadline = ContinuousClock.now + .seconds(3)
        let tag = system.lockClasses.tag!

        let probers = (0..<2).map { index in
            KernelThread(name: "prober\(index)-\(tag)") {
                var rng = SplitMix64(seed: seed &+ UInt64(index))
                let owned = devices.enumerated().filter { $0.offset % 2 == index }.map(\.element)
                while ContinuousClock.now < deadline {
                    let device = owned.randomElement(using: &rng)!
                    if device.iommuGroup == nil {
                        if rng.next() % 8 == 0 { system.faults.failNext(ProbeFault.allCases.randomElement(using: &rng)!) }
                        try? system.probeDevice(device)
                    } else {
                        system.removeDevice(device)
                    }
                }
            }
        }
        let interrupt = KernelThread(name: "irq-\(tag)") {
            var rng = SplitMix64(seed: seed &+ 2)
            while ContinuousClock.now < deadline {
                system.reportDeviceBroken(devices.randomElement(using: &rng)!)
            }
        }
        let resetter = KernelThread(name: "reset-\(tag)") {
            var rng = SplitMix64(seed: seed &+ 3)
            while ContinuousClock.now < deadline {
                let device = devices.randomElement(using: &rng)!
                if system.resetPrepare(device) { system.resetDone(device) }
            }
        }
        for thread in probers + [interrupt, resetter] { thread.join() }
        for device in devices { system.removeDevice(device) }

        let counters = system.counters.snapshot
        print("IOMMUStressTests \(variant): seed \(seed): \(counters)")
        #expect(counters.probes > 0 && counters.removals > 0 && counters.reportsQueued > 0)
        expectEverythingReleased(system)
        #expect(Lockdep.reports.filter { $0.thread.contains(tag) }.isEmpty)
    }

    private func monotonicSeed() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_007 &+ UInt64(now.tv_nsec)
    }
}
