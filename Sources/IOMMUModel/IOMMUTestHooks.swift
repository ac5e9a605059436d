/// Points where a test can pause a path to build an interleaving deterministically, with flags instead
/// of sleeps. Each hook runs on the thread of the path, at the point its name says; nil hooks cost a
/// load. Set once, when the system is created.
public struct IOMMUTestHooks: Sendable {
    /// `iommu_report_device_broken()` found `gdev` in its group's list and is about to queue its work;
    /// runs inside the read section, in atomic context (so it must not block on KernelSync calls).
    public var reportFoundDevice: (@Sendable (GroupDevice) -> Void)?
    /// `__iommu_group_free_device()` of `gdev` is about to call `synchronize` (deferredDisable only).
    public var freeWillSynchronize: (@Sendable (GroupDevice) -> Void)?
    /// `__iommu_group_free_device()` of `gdev` has cancelled or disabled its work and is about to free it.
    public var freeQuiescedWork: (@Sendable (GroupDevice) -> Void)?
    /// The broken work starts, before it touches its group_device.
    public var brokenWorkStarts: (@Sendable () -> Void)?

    public init(
        reportFoundDevice: (@Sendable (GroupDevice) -> Void)? = nil,
        freeWillSynchronize: (@Sendable (GroupDevice) -> Void)? = nil,
        freeQuiescedWork: (@Sendable (GroupDevice) -> Void)? = nil,
        brokenWorkStarts: (@Sendable () -> Void)? = nil
    ) {
        self.reportFoundDevice = reportFoundDevice
        self.freeWillSynchronize = freeWillSynchronize
        self.freeQuiescedWork = freeQuiescedWork
        self.brokenWorkStarts = brokenWorkStarts
    }
}
