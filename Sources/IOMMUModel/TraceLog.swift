import KernelSync

/// The model's trace events, kept so that a test can check that every `add_device_to_group` has its
/// `remove_device_from_group`.
///
/// Kernel analogue: `trace_add_device_to_group()` / `trace_remove_device_from_group()`
/// (include/trace/events/iommu.h).
///
/// With bookkeeping off (``IOMMUSystem/Configuration/bookkeeping``) nothing is recorded.
public final class TraceLog: @unchecked Sendable {
    /// One event.
    public enum Event: Sendable, Equatable, CustomStringConvertible {
        case addDeviceToGroup(groupID: Int, device: String)
        case removeDeviceFromGroup(groupID: Int, device: String)

        public var description: String {
            switch self {
            case .addDeviceToGroup(let group, let device): "add_device_to_group: IOMMU: groupID=\(group) device=\(device)"
            case .removeDeviceFromGroup(let group, let device): "remove_device_from_group: IOMMU: groupID=\(group) device=\(device)"
            }
        }
    }

    /// How many of the latest events ``recentEvents`` keeps.
    public static let capacity = 4096

    private let enabled: Bool
    /// Serialises the log (the trace ring buffer's own serialisation).
    private let lock: KernelMutex
    /// Guarded by: lock. The latest events, oldest first, at most ``capacity``.
    private var ring: [Event] = []
    /// Guarded by: lock. Adds minus removes for each "groupID/device"; zero entries are dropped.
    private var open: [String: Int] = [:]
    /// Guarded by: lock.
    private var total = 0

    init(enabled: Bool, lockClass: LockClass) {
        self.enabled = enabled
        lock = KernelMutex(class: lockClass)
    }

    /// Records `event`, which is built only with bookkeeping on. Context: may sleep (briefly).
    @inline(__always)
    func record(_ event: @autoclosure () -> Event) {
        guard enabled else { return }
        recordEnabled(event())
    }

    private func recordEnabled(_ event: Event) {
        let (key, delta) = switch event {
        case .addDeviceToGroup(let group, let device): ("\(group)/\(device)", 1)
        case .removeDeviceFromGroup(let group, let device): ("\(group)/\(device)", -1)
        }
        lock.withLock {
            if ring.count == TraceLog.capacity { ring.removeFirst() }
            ring.append(event)
            total += 1
            let count = open[key, default: 0] + delta
            open[key] = count == 0 ? nil : count
        }
    }

    /// The latest events (at most ``capacity``), oldest first.
    public var recentEvents: [Event] { lock.withLock { ring } }

    /// Every event recorded so far.
    public var eventCount: Int { lock.withLock { total } }

    /// "groupID/device" pairs whose adds and removes do not match, with adds minus removes.
    public var unbalanced: [String: Int] { lock.withLock { open } }

    /// Whether every add has its remove (and no remove came without its add).
    public var isBalanced: Bool { lock.withLock { open.isEmpty } }
}
