/// Why a probe failed. Every failure leaves nothing behind: no group_device, no link, no trace event,
/// no group reference.
///
/// Kernel analogue: the negative errno that `__iommu_probe_device()` returns.
public enum IOMMUError: Error, Equatable, Sendable {
    /// `iommu_init_device()` failed (the driver's `probe_device` or `device_group`): nothing was set up.
    case initDeviceFailed
    /// `iommu_group_alloc_device()` failed (a sysfs link): the exit through `err_put_group`.
    case allocGroupDeviceFailed
    /// Attaching the device to the group's domain (or setting up the default domain) failed: the exit
    /// through `err_remove_gdev`.
    case attachDomainFailed
}
