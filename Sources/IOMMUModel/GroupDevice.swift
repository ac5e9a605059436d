import KernelSync
import Synchronization

/// A device's membership in a group, the element of the group's RCU device list.
///
/// Kernel analogue: `struct group_device` with the series' `blocked` and `broken_work`.
///
/// Readers (``IOMMUSystem/reportDeviceBroken(_:)``) find it under RCU; the broken work reaches it
/// through ``brokenWork``. Both call ``KernelSync/RCUProtected/assertLive(file:line:)`` on access, so with
/// ``KernelSync/RCU/debugReclamation`` on, an access after ``IOMMUSystem/freeGroupDevice(_:in:)`` has
/// been reclaimed is reported.
///
/// The fields guarded by the group mutex opt out of Swift's dynamic exclusivity checks: the mutex is
/// what makes their access exclusive (ThreadSanitizer checks that in the sanitizer runs), and the check
/// would cost a thread-local lookup on every access of the hot remove path.
public final class GroupDevice: RCUListElement, @unchecked Sendable, CustomStringConvertible {
    /// The device (`gdev->dev`).
    public let device: Device
    /// The name of its link in the group's devices directory (`gdev->name`).
    public let name: String
    /// The group it belongs to, for the worker: stable for the group_device's whole life, unlike
    /// `dev->iommu_group`, which the remove path clears.
    public let group: IOMMUGroup
    /// The domain the device is attached to.
    ///
    /// Guarded by: group.mutex.
    @exclusivity(unchecked) public internal(set) var attachedDomain: IOMMUDomain?
    /// `gdev->broken_work` until it is made: `unmade` plus twice the disables made meanwhile, or a
    /// retained ``KernelSync/WorkItem`` (an object address, so the low bit is clear). See
    /// ``brokenWork``.
    ///
    /// Ordering: the item is published by an acquiring-and-releasing exchange and read by acquiring
    /// loads, so whoever finds it sees it whole; a disable is an exchange too, so that a disable and a
    /// making that race are never both lost.
    private let brokenWorkState = Atomic<UInt>(GroupDevice.unmade)
    private static let unmade: UInt = 1
    // The one-byte fields come last, so that they share a word: the object is 83 bytes, which glibc
    // serves from a 96-byte chunk (it was 105 bytes, a 128-byte chunk).
    /// Whether the device is quarantined in the blocking domain.
    ///
    /// Guarded by: group.mutex.
    @exclusivity(unchecked) public internal(set) var blocked = false
    /// Whether a reset is in progress (between reset prepare and reset done).
    ///
    /// Guarded by: group.mutex.
    @exclusivity(unchecked) public internal(set) var resetting = false
    /// Set by the first free; a second free is a model warning.
    ///
    /// Ordering: acquiring-and-releasing exchange, so that one free wins.
    let freed = Atomic<Bool>(false)

    /// `iommu_group_alloc_device()`'s allocation. Context: any.
    init(device: __shared Device, name: String, group: __shared IOMMUGroup) {
        self.device = device
        self.name = name
        self.group = group
        super.init()
    }

    deinit {
        let state = brokenWorkState.load(ordering: .acquiring)
        if state & GroupDevice.unmade == 0 { Unmanaged<WorkItem>.fromOpaque(UnsafeRawPointer(bitPattern: state)!).release() }
    }

    public var description: String { "GroupDevice(\(name) in group \(group.id))" }

    // MARK: The broken work

    /// Quarantines the device; queued by ``IOMMUSystem/reportDeviceBroken(_:)``.
    ///
    /// Kernel analogue: `gdev->broken_work`, initialised by `INIT_WORK()` in
    /// `iommu_group_alloc_device()`.
    ///
    /// Made at its first use rather than at allocation. In C, `INIT_WORK()` is a few stores into the
    /// group_device; here a work item is an object of its own (an allocation, its closure's reference
    /// to the group, a weak context), and most group_devices are never reported broken. Until it is
    /// made, nothing was ever queued on it, so nothing can be pending or running: a cancel has nothing
    /// to do, and a disable is counted in the group_device and carried over to the item when it is
    /// made (see ``disableBrokenWorkSync(file:line:)``). With the validator on, a cancel or disable of
    /// the unmade item records its wait all the same
    /// (``KernelSync/WorkItem/recordWaitOnUnmadeItem(of:owner:call:file:line:)``), so that hazard 2 is
    /// reported whether or not the device was ever reported broken.
    ///
    /// Context: any, atomic context included (the report path makes it there, as it allocates
    /// nothing that sleeps).
    public var brokenWork: WorkItem {
        var state = brokenWorkState.load(ordering: .acquiring)
        while true {
            if let item = GroupDevice.madeItem(state) { return item }
            // The closure captures one reference and nothing else, so it needs no context allocation.
            // It captures the group, not the system: the group's header line is this thread's already
            // (the retain for `self.group` wrote it), while the system's is shared by every writer. The
            // work finds its group_device through the item's context, which the report links (a weak
            // reference made at once would give every group_device a side table, and send its retains
            // and releases down the runtime's slow path).
            let item = WorkItem(name: "gdev->broken_work", class: group.system.lockClasses.brokenWork) { [group] item in
                group.system.brokenWorkFunction(item)
            }
            for _ in 0..<(state >> 1) { item.disable() }
            let published = UInt(bitPattern: Unmanaged.passRetained(item).toOpaque())
            let (exchanged, original) = brokenWorkState.compareExchange(
                expected: state, desired: published, ordering: .acquiringAndReleasing)
            if exchanged { return item }
            // Made by another thread, or disabled meanwhile: use that one, or make it again.
            Unmanaged<WorkItem>.fromOpaque(UnsafeRawPointer(bitPattern: published)!).release()
            state = original
        }
    }

    /// `cancel_work_sync(&gdev->broken_work)`: ``KernelSync/WorkItem/cancelSync(file:line:)`` of the
    /// made item; an item not yet made was never queued, so there is nothing to withdraw or wait for.
    /// Returns whether an instance was pending.
    ///
    /// Context: as ``KernelSync/WorkItem/cancelSync(file:line:)``.
    @discardableResult
    func cancelBrokenWorkSync(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        guard let item = GroupDevice.madeItem(brokenWorkState.load(ordering: .acquiring)) else {
            recordWaitOnUnmadeBrokenWork(call: "cancel_work_sync", file: file, line: line)
            return false
        }
        return item.cancelSync(file: file, line: line)
    }

    /// `disable_work_sync(&gdev->broken_work)`: ``KernelSync/WorkItem/disableSync(file:line:)`` of the
    /// made item; for an item not yet made, one more disable to carry over when it is made (it was never
    /// queued, so nothing is pending or running). Returns whether an instance was pending.
    ///
    /// Context: as ``KernelSync/WorkItem/disableSync(file:line:)``.
    @discardableResult
    func disableBrokenWorkSync(file: StaticString = #fileID, line: UInt = #line) -> Bool {
        var state = brokenWorkState.load(ordering: .acquiring)
        // Tested on the bit: madeItem() would retain and release the item just to compare it with nil.
        while state & GroupDevice.unmade != 0 {
            let (exchanged, original) = brokenWorkState.compareExchange(
                expected: state, desired: state + 2, ordering: .acquiringAndReleasing)
            if exchanged {
                recordWaitOnUnmadeBrokenWork(call: "disable_work_sync", file: file, line: line)
                return false
            }
            state = original
        }
        return GroupDevice.madeItem(state)!.disableSync(file: file, line: line)
    }

    /// With the validator on, records a waiting call on the broken work before it is made, as the made
    /// item's call would (its class, this group_device for its identity).
    @inline(__always)
    private func recordWaitOnUnmadeBrokenWork(call: StaticString, file: StaticString, line: UInt) {
        guard Lockdep.isValidating else { return }
        WorkItem.recordWaitOnUnmadeItem(
            of: group.system.lockClasses.brokenWork, owner: self, call: "\(call)(gdev->broken_work)", file: file, line: line)
    }

    /// The item `state` holds, if it is made.
    private static func madeItem(_ state: UInt) -> WorkItem? {
        guard state & unmade == 0 else { return nil }
        return Unmanaged<WorkItem>.fromOpaque(UnsafeRawPointer(bitPattern: state)!).takeUnretainedValue()
    }
}
