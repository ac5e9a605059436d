import KernelSync
import Synchronization

/// One IOMMU subsystem: the global state of drivers/iommu/iommu.c and the paths that run on it.
///
/// It owns `iommu_probe_device_lock`, the lock classes of its groups, the table of groups, the work
/// queue that runs `broken_work`, the model's sysfs and trace log, the counters and the probe fault
/// injector. The remove-path ``RemoveVariant`` is chosen when it is created.
///
/// ```swift
/// let iommu = IOMMUSystem(.init(variant: .deferredDisableRCU))
/// let device = Device(name: "0000:00:01.0", topology: 1)
/// try iommu.probeDevice(device)
/// iommu.reportDeviceBroken(device)       // from "interrupt" context: queues the quarantine
/// iommu.removeDevice(device)
/// iommu.shutdown()
/// ```
///
/// Lock order: `iommu_probe_device_lock` → group table → `group->mutex` → sysfs, trace. The broken
/// work takes `group->mutex` under its own pseudo-lock, so `group->mutex` → `broken_work` (a cancel
/// under the mutex) is the inversion of hazard 2.
///
/// - Note: A program has one system, whose groups share the process-wide lock classes
///   (``IOMMULockClasses/shared``); tests create one each, with their own classes, to tell their
///   findings apart.
public final class IOMMUSystem: @unchecked Sendable {
    /// How a system is set up.
    public struct Configuration: Sendable {
        /// The remove-path design.
        public var variant: RemoveVariant
        /// The lock classes of the system's locks.
        public var lockClasses: IOMMULockClasses
        /// Whether the sysfs registry and the trace log record anything. The benchmark turns this off,
        /// so the hot path is the one DESIGN.md's workload describes.
        public var bookkeeping: Bool
        /// Worker threads of the queue that runs `broken_work`.
        public var brokenWorkConcurrency: Int
        /// Test hooks (see ``IOMMUTestHooks``).
        public var hooks: IOMMUTestHooks

        public init(
            variant: RemoveVariant, lockClasses: IOMMULockClasses = .shared, bookkeeping: Bool = true,
            brokenWorkConcurrency: Int = 2, hooks: IOMMUTestHooks = IOMMUTestHooks()
        ) {
            self.variant = variant
            self.lockClasses = lockClasses
            self.bookkeeping = bookkeeping
            self.brokenWorkConcurrency = brokenWorkConcurrency
            self.hooks = hooks
        }
    }

    /// Keeps the fields below, which every writer reads on every cycle, off the line of the object's
    /// reference count, which every group_device's broken work writes twice (its closure holds the
    /// system): otherwise each writer's retain or release takes the line from the others' caches.
    /// Profile driver, two writers: deferredDisableRCU 1.16× with this and the group's own gap (two runs
    /// of 12 alternated pairs), freeUnderMutex and deferredCancel 1.01–1.02×.
    private let headerLineGap = CacheLinePadding()
    /// The remove-path design this system runs.
    public let variant: RemoveVariant
    public let lockClasses: IOMMULockClasses
    let hooks: IOMMUTestHooks
    /// `iommu_probe_device_lock`: serialises probes; taken before any `group->mutex`.
    public let probeLock: KernelMutex
    /// Serialises ``groupsByTopology`` and group ids.
    let groupTableLock: KernelMutex
    /// The groups that devices of a topology join (the driver's `device_group` callback finds the
    /// group of a sibling). A group leaves the table when it is released.
    ///
    /// Guarded by: groupTableLock.
    var groupsByTopology: [Int: IOMMUGroup] = [:]
    /// Guarded by: groupTableLock. `iommu_group_ida`.
    var nextGroupID = 0
    /// The queue that runs `broken_work` (the kernel queues it on a system work queue).
    public let brokenWorkQueue: Workqueue
    /// The model's sysfs links and group directories.
    public let sysfs: SysfsRegistry
    /// The model's trace events.
    public let trace: TraceLog
    /// What was allocated, freed and done.
    public let counters = IOMMUCounters()
    /// Faults to inject into the probe path.
    public let faults = ProbeFaultInjector()

    /// Creates the subsystem's state and starts the broken-work queue's threads.
    ///
    /// Kernel analogue: `iommu_subsys_init()` with the static `iommu_probe_device_lock` and
    /// `iommu_group_ida`.
    public init(_ configuration: Configuration) {
        variant = configuration.variant
        lockClasses = configuration.lockClasses
        hooks = configuration.hooks
        probeLock = KernelMutex(class: lockClasses.probeLock)
        groupTableLock = KernelMutex(class: lockClasses.groupTable)
        sysfs = SysfsRegistry(enabled: configuration.bookkeeping, lockClass: lockClasses.sysfs)
        trace = TraceLog(enabled: configuration.bookkeeping, lockClass: lockClasses.trace)
        brokenWorkQueue = Workqueue(
            name: "iommu-broken\(lockClasses.tag.map { "#\($0)" } ?? "")", maxActive: configuration.brokenWorkConcurrency)
    }

    /// Destroys the broken-work queue and joins its threads. Call once, when every device is removed.
    ///
    /// Kernel analogue: `destroy_workqueue()` of the queue the broken work runs on.
    ///
    /// Context: may sleep.
    public func shutdown() {
        brokenWorkQueue.destroy()
    }

    /// Counts and prints a model warning.
    func warn(_ kind: IOMMUWarning, _ detail: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
        counters.countWarning(kind)
        kind.print(detail(), site: "\(file):\(line)")
    }
}
