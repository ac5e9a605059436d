import KernelSync
import Synchronization

/// A set of devices the IOMMU cannot isolate from each other, which share one translation.
///
/// Kernel analogue: `struct iommu_group`, with the series' `blocking_domain` use and `recovery_cnt`.
///
/// Lifetime: a reference count, like the group's kobject. The device binding
/// (`dev->iommu_group`) holds one reference; the last ``put()`` releases the group
/// (`iommu_group_release`), whose memory is freed a grace period later, because readers may still be
/// looking at it.
///
/// The fields guarded by the group mutex opt out of Swift's dynamic exclusivity checks: the mutex is
/// what makes their access exclusive (ThreadSanitizer checks that in the sanitizer runs), and the check
/// would cost a thread-local lookup on every access of the hot remove path.
public final class IOMMUGroup: @unchecked Sendable, CustomStringConvertible {
    /// Keeps the fields below (the mutex and list pointers every removal loads) off the line of the
    /// object's reference count, which the group_devices' and `dev->iommu_group`'s retains and releases
    /// write, on whichever writer's core (see ``IOMMUSystem``'s gap).
    private let headerLineGap = CacheLinePadding()
    /// The group's number, as in /sys/kernel/iommu_groups/<id>.
    public let id: Int
    /// The hardware topology the group stands for (its key in the system's group table).
    public let topology: Int
    /// The system the group belongs to.
    public let system: IOMMUSystem
    /// `group->mutex`: serialises the device list's updates and every field below. Every group of a
    /// system shares its class (``IOMMULockClasses/groupMutex``). Taken after
    /// `iommu_probe_device_lock`, never before it.
    public let mutex: KernelMutex
    /// `group->owner_cnt`: how many users claimed DMA ownership of the group.
    ///
    /// Guarded by: mutex.
    @exclusivity(unchecked) public internal(set) var ownerCount = 0
    /// `group->domain`: the domain the group is attached to.
    ///
    /// Guarded by: mutex.
    @exclusivity(unchecked) public internal(set) var domain: IOMMUDomain?
    /// `group->default_domain`, set up when the first device is probed and dropped when the last one
    /// leaves.
    ///
    /// Guarded by: mutex.
    @exclusivity(unchecked) public internal(set) var defaultDomain: IOMMUDomain?
    /// `group->blocking_domain`, allocated on first use (DMA ownership, quarantine, reset).
    ///
    /// Guarded by: mutex.
    @exclusivity(unchecked) public internal(set) var blockingDomain: IOMMUDomain?
    /// `group->recovery_cnt`: devices of the group quarantined by the broken work and not yet reset.
    ///
    /// Guarded by: mutex.
    @exclusivity(unchecked) public internal(set) var recoveryCount = 0

    /// Keeps ``references`` and ``freedFlag`` off the line of the fields above, which the critical
    /// sections read (the mutex's reference on every lock and unlock, the owner count and domains in the
    /// empty-group check): every probe and removal writes the kref, outside the mutex, on whichever
    /// writer's core, and so took that line from the writer inside. Profile driver, two writers on one
    /// group, deferredDisableRCU: 1.15–1.37× (medians of four sets of 12–16 alternated runs).
    private let krefLineGap = CacheLinePadding()
    /// The kref. Ordering: increments relaxed (the caller already holds a reference or the table lock);
    /// decrements acquiring-and-releasing, so the releasing thread sees every access made under the
    /// references that were dropped before (kref_put's barriers).
    private let references = Atomic<Int>(1)
    /// Set by the deferred free, a grace period after the release. Ordering: release/acquire; a reader
    /// that finds it set reached the group after its free.
    private let freedFlag = Atomic<Bool>(false)
    /// Keeps ``devices``, which every reader loads on every traversal, off the lines of the object's
    /// header (its reference count, which the group_devices' and `dev->iommu_group`'s retains and
    /// releases write) and of ``references`` (the kref, written twice a removal).
    private let readerLineGap = CacheLinePadding()
    /// `group->devices`: readers traverse it under RCU; updates hold ``mutex``.
    public let devices = RCUList<GroupDevice>()

    /// `iommu_group_alloc()`. Context: the system's group-table lock held, or the group not yet visible.
    init(system: IOMMUSystem, id: Int, topology: Int) {
        self.system = system
        self.id = id
        self.topology = topology
        // Every group's mutex is made here, with the system's one class for it.
        mutex = KernelMutex(class: system.lockClasses.groupMutex)
    }

    public var description: String { "IOMMUGroup(\(id))" }

    /// The group_device of `device` on this group's list, found without a retain per element.
    ///
    /// Context: ``mutex`` held (checked by the list with the validator on).
    func groupDevice(of device: Device) -> GroupDevice? {
        devices.first(holding: mutex) { $0.device === device }
    }

    /// Unlinks the group_device of `device` from this group's list, found and unlinked in one walk, and
    /// returns it with the list's reference (see ``KernelSync/RCUDetached``).
    ///
    /// Context: ``mutex`` held (checked by the list with the validator on).
    func detachGroupDevice(of device: Device) -> RCUDetached<GroupDevice>? {
        devices.detachFirst(holding: mutex) { $0.device === device }
    }

    /// The reference count (a racy snapshot).
    public var referenceCount: Int { references.load(ordering: .relaxed) }

    /// Whether the group's deferred free has run.
    public var isFreed: Bool { freedFlag.load(ordering: .acquiring) }

    /// Takes a reference. Context: the caller holds one already.
    ///
    /// Kernel analogue: `iommu_group_ref_get()`.
    public func get() {
        // Wrapping (one locked add): the trapping add is a compare-and-exchange loop.
        references.wrappingAdd(1, ordering: .relaxed)
    }

    /// Takes a reference unless the count already reached zero (the group is being released).
    ///
    /// Kernel analogue: `kref_get_unless_zero()`.
    func tryGet() -> Bool {
        var count = references.load(ordering: .relaxed)
        while count > 0 {
            let (exchanged, original) = references.weakCompareExchange(
                expected: count, desired: count + 1, ordering: .relaxed)
            if exchanged { return true }
            count = original
        }
        return false
    }

    /// Drops a reference; the last one releases the group.
    ///
    /// Kernel analogue: `iommu_group_put()` → `kobject_put()` → `iommu_group_release()`.
    ///
    /// Context: may sleep (the release takes the group-table lock). Not with ``mutex`` held.
    public func put() {
        let count = references.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue
        precondition(count >= 0, "iommu_group_put of group \(id): reference count went below zero")
        if count == 0 { system.releaseGroup(self) }
    }

    /// The deferred free: a grace period after the release, no reader can reach the group any more.
    func markFreed() {
        freedFlag.store(true, ordering: .releasing)
    }
}
