import Glibc

/// A model check that failed: the model's counterpart of a `WARN_ON()` splat or a KASAN report that the
/// model itself detects. Each is counted in ``IOMMUCounters`` and printed to standard error.
///
/// The lock validator and RCU debug reclamation report their own findings (``KernelSync/Lockdep/reports``);
/// these are the checks only the model can make.
public enum IOMMUWarning: String, CaseIterable, Sendable, CustomStringConvertible {
    /// `__iommu_group_empty_assert_owner_cnt()`: a group became empty while DMA ownership was still
    /// claimed or its domain was not the default domain.
    case emptyGroupOwnership = "empty group still owned or not in its default domain"
    /// A group_device was freed twice.
    case doubleFree = "group_device freed twice"
    /// The broken work or a reader reached a group_device after its free had been poisoned by RCU debug
    /// reclamation (the validator reports the same access as `.useAfterFree`).
    case groupDeviceUseAfterFree = "group_device used after free"
    /// A reader reached a group after its deferred free ran.
    case groupUseAfterFree = "iommu_group used after free"

    public var description: String { rawValue }

    /// Prints the warning in the kernel's `WARN` shape.
    func print(_ detail: String, site: String) {
        let text = "------------[ cut here ]------------\nWARNING: \(rawValue) at \(site)\n\(detail)\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
    }
}
