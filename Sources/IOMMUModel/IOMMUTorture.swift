import KernelSync
import Synchronization

/// The IOMMU scenario on real threads: devices probed and removed, broken devices reported from an
/// "interrupt" thread in atomic context, quarantined devices reset, RCU readers walking the groups'
/// device lists, and probe faults injected, all at once, for one remove-path variant.
///
/// RCU debug reclamation is on, so a group_device touched after its free is reported with its history.
/// A correct design ends with no validator report, no model warning and nothing leaked; the broken
/// designs fail by themselves: freeUnderMutex with the validator's circular dependency between
/// `group->mutex` and `broken_work` (hazard 2), deferredCancel with a use after free (hazard 3), once a
/// report slips between the remover's cancelSync and its free.
///
/// Every thread draws its choices from its own generator seeded from ``Configuration/seed``, so a seed
/// replays the same operation sequences (the interleaving is the scheduler's).
public enum IOMMUTorture {
    public struct Configuration: Sendable {
        public var variant: RemoveVariant
        public var seed: UInt64
        public var durationSeconds: Double
        /// Threads that probe and remove devices (each owns a share of the devices).
        public var threads: Int
        public var groups: Int
        public var devicesPerGroup: Int
        /// Chance that a probe is made to fail at one of its steps (0...1).
        public var probeFaultRate: Double
        /// Threads walking device lists under RCU.
        public var readers: Int
        /// Longest random pause, in microseconds, that a reader (the report path included) takes inside
        /// its read section after finding a device: a slow interrupt handler.
        public var readerDelayMicroseconds: Int
        /// Longest random pause, in microseconds, before the broken work touches its group_device: a busy
        /// worker pool.
        public var workDelayMicroseconds: Int

        public init(
            variant: RemoveVariant, seed: UInt64, durationSeconds: Double, threads: Int = 2, groups: Int = 4,
            devicesPerGroup: Int = 3, probeFaultRate: Double = 0.05, readers: Int = 1,
            readerDelayMicroseconds: Int = 50, workDelayMicroseconds: Int = 2_000
        ) {
            self.variant = variant
            self.seed = seed
            self.durationSeconds = durationSeconds
            self.threads = threads
            self.groups = groups
            self.devicesPerGroup = devicesPerGroup
            self.probeFaultRate = probeFaultRate
            self.readers = readers
            self.readerDelayMicroseconds = readerDelayMicroseconds
            self.workDelayMicroseconds = workDelayMicroseconds
        }
    }

    public struct Result: Sendable, CustomStringConvertible {
        public let configuration: Configuration
        public let counters: IOMMUCounters.Snapshot
        public let readerPasses: Int
        /// Validator reports about the run's system.
        public let reports: [LockdepReport]
        /// Broken invariants at the end (leaks, warnings, unbalanced sysfs or trace).
        public let violations: [String]

        public var passed: Bool { reports.isEmpty && violations.isEmpty && counters.removals > 0 }

        public var description: String {
            var text = "iommu-torture: \(configuration.variant) seed \(configuration.seed): \(counters), reader passes \(readerPasses)\n"
            for report in reports { text += "iommu-torture: report: \(report)\n" }
            for violation in violations { text += "iommu-torture: violation: \(violation)\n" }
            return text + "iommu-torture: --- End of test: \(passed ? "SUCCESS" : "FAILURE")\n"
        }
    }

    /// Runs the scenario. `observe` receives the system once it exists, for live progress counters.
    ///
    /// Context: may sleep for the duration; turns ``KernelSync/RCU/debugReclamation`` on.
    public static func run(_ configuration: Configuration, observe: (IOMMUSystem) -> Void = { _ in }) -> Result {
        RCU.debugReclamation = true
        let runNumber = runCounter.add(1, ordering: .relaxed).newValue
        let tag = "\(configuration.variant)-\(runNumber)"
        let delays = DelayDraws(seed: configuration.seed &+ 0xDE1A7)
        let readerDelay = configuration.readerDelayMicroseconds
        let workDelay = configuration.workDelayMicroseconds
        var hooks = IOMMUTestHooks()
        if readerDelay > 0 {
            hooks.reportFoundDevice = { @Sendable _ in delays.pause(upTo: readerDelay) }
        }
        if workDelay > 0 {
            hooks.brokenWorkStarts = { @Sendable in delays.pause(upTo: workDelay) }
        }
        let system = IOMMUSystem(.init(
            variant: configuration.variant, lockClasses: IOMMULockClasses(tag: tag), hooks: hooks))
        observe(system)

        let devices = (0..<configuration.groups * configuration.devicesPerGroup).map { index in
            Device(name: "dev\(index % configuration.groups).\(index / configuration.groups)",
                   topology: index % configuration.groups)
        }
        let deadline = ContinuousClock.now + .nanoseconds(Int64(configuration.durationSeconds * 1e9))
        let running: @Sendable () -> Bool = { ContinuousClock.now < deadline }
        let readerPasses = Atomic<Int>(0)
        var threads: [KernelThread] = []

        for index in 0..<configuration.threads {
            threads.append(KernelThread(name: "prober\(index)-#\(tag)") {
                var random = SplitMix64(seed: configuration.seed &+ UInt64(index))
                let owned = devices.indices.filter { $0 % configuration.threads == index }.map { devices[$0] }
                guard !owned.isEmpty else { return }
                while running() {
                    let device = owned.randomElement(using: &random)!
                    if device.iommuGroup == nil {
                        if Double(random.next() % 1_000_000) / 1_000_000 < configuration.probeFaultRate {
                            system.faults.failNext(ProbeFault.allCases.randomElement(using: &random)!)
                        }
                        try? system.probeDevice(device)
                    } else {
                        system.removeDevice(device)
                    }
                }
            })
        }
        threads.append(KernelThread(name: "irq-#\(tag)") {
            var random = SplitMix64(seed: configuration.seed &+ 1_000)
            while running() { system.reportDeviceBroken(devices.randomElement(using: &random)!) }
        })
        threads.append(KernelThread(name: "reset-#\(tag)") {
            var random = SplitMix64(seed: configuration.seed &+ 2_000)
            while running() {
                let device = devices.randomElement(using: &random)!
                if system.resetPrepare(device) { system.resetDone(device) }
            }
        })
        for index in 0..<configuration.readers {
            threads.append(KernelThread(name: "reader\(index)-#\(tag)") {
                var random = SplitMix64(seed: configuration.seed &+ 3_000 &+ UInt64(index))
                var passes = 0
                while running() {
                    let device = devices.randomElement(using: &random)!
                    let pause = readerDelay > 0 ? Int(random.next() % UInt64(readerDelay + 1)) : 0
                    RCU.withReadLock {
                        guard let group = device.groupPointer.dereference() else { return }
                        group.devices.forEach { gdev in system.checkLive(gdev) }
                        if pause > 0 { spin(microseconds: pause) }
                    }
                    passes += 1
                }
                readerPasses.add(passes, ordering: .relaxed)
            })
        }
        for thread in threads { thread.join() }
        for device in devices { system.removeDevice(device) }
        system.shutdown()
        let violations = system.invariantViolations()
        return Result(
            configuration: configuration, counters: system.counters.snapshot,
            readerPasses: readerPasses.load(ordering: .relaxed), reports: system.reports, violations: violations)
    }

    /// Numbers the runs, so that each gets lock classes and thread names of its own.
    private static let runCounter = Atomic<Int>(0)
}

/// Random pause lengths shared by the hooks, which run on whatever thread reaches them.
private final class DelayDraws: Sendable {
    /// SplitMix64 state, advanced atomically. Ordering: relaxed; only uniqueness of draws matters.
    private let state: Atomic<UInt64>

    init(seed: UInt64) { state = Atomic(seed) }

    /// Busy-waits up to `maximum` microseconds: the hooks run in atomic context and read sections,
    /// where a KernelSync sleep would be reported, as udelay() stands in for msleep() there.
    func pause(upTo maximum: Int) {
        var draw = SplitMix64(seed: state.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue)
        spin(microseconds: Int(draw.next() % UInt64(maximum + 1)))
    }
}

/// Busy-waits for `microseconds` (the kernel's udelay()).
private func spin(microseconds: Int) {
    let end = ContinuousClock.now + .microseconds(microseconds)
    while ContinuousClock.now < end {}
}
