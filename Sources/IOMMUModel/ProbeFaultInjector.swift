import Synchronization

/// A point of the probe path that can be made to fail.
public enum ProbeFault: String, CaseIterable, Sendable {
    /// `iommu_init_device()`, before anything is set up.
    case initDevice
    /// `iommu_group_alloc_device()`, after its first sysfs link (which it removes again).
    case allocGroupDevice
    /// The domain attach under `group->mutex`, after the group_device is on the list.
    case attachDomain

    /// The fault's bit in the injector's mask. A switch: every probe checks a fault, and a search of
    /// `allCases` compared raw-value strings.
    var bit: Int {
        switch self {
        case .initDevice: 1
        case .allocGroupDevice: 2
        case .attachDomain: 4
        }
    }

    var error: IOMMUError {
        switch self {
        case .initDevice: .initDeviceFailed
        case .allocGroupDevice: .allocGroupDeviceFailed
        case .attachDomain: .attachDomainFailed
        }
    }
}

/// Arms faults in the probe path: each armed fault fires once, at the next probe that reaches it.
///
/// Kernel analogue: fault injection (`should_fail()`, the `fail_nth` interface of kselftest's
/// iommufd_fail_nth, which found the error-unwind bugs of this code).
public final class ProbeFaultInjector: Sendable {
    /// Bitmask of armed faults. Ordering: relaxed; it orders nothing but itself.
    private let armed = Atomic<Int>(0)
    private let fired = Atomic<Int>(0)

    init() {}

    /// Makes the next probe that reaches `fault` fail there.
    public func failNext(_ fault: ProbeFault) {
        armed.bitwiseOr(fault.bit, ordering: .relaxed)
    }

    /// How many armed faults have fired.
    public var firedCount: Int { fired.load(ordering: .relaxed) }

    /// Consumes `fault` if it is armed; throws its error then.
    func check(_ fault: ProbeFault) throws(IOMMUError) {
        // A load first: every probe checks, from every thread, and an unarmed check must not write the
        // shared word (moving its cache line between the probing threads' cores).
        guard armed.load(ordering: .relaxed) & fault.bit != 0 else { return }
        let before = armed.bitwiseAnd(~fault.bit, ordering: .relaxed).oldValue
        guard before & fault.bit != 0 else { return }
        fired.add(1, ordering: .relaxed)
        throw fault.error
    }
}
