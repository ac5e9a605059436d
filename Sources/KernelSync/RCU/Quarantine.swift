import Glibc
import Synchronization

/// Holds poisoned objects back before their memory can be reused (dropped), so that a late access
/// finds the poison rather than a new object: the newest ``capacity`` objects are kept, oldest dropped
/// first.
///
/// Kernel analogue: KASAN's quarantine.
final class Quarantine: @unchecked Sendable {
    static let shared = Quarantine()
    static let capacity = 4096

    /// ``RCU/debugReclamation``. Ordering: relaxed; a mode switch, set before the objects it concerns
    /// are retired. A static, not a field of ``shared``: every retire reads it, and reaching it through
    /// the instance cost a retain and a release of the instance each time.
    static let enabled = Atomic<Bool>(Quarantine.initiallyEnabled())

    private let lock = PthreadMutex()
    /// Guarded by: lock. A ring of the newest poisoned objects.
    private var ring: [RCUProtected?] = Array(repeating: nil, count: Quarantine.capacity)
    /// Guarded by: lock. Next slot to overwrite.
    private var next = 0

    private init() {}

    func hold(_ object: RCUProtected) {
        let evicted: RCUProtected? = lock.withLock {
            let old = ring[next]
            ring[next] = object
            next = (next + 1) % Quarantine.capacity
            return old
        }
        // The evicted object is released here, outside the lock: its deinit may do anything.
        withExtendedLifetime(evicted) {}
    }

    private static func initiallyEnabled() -> Bool {
        environmentFlag("KSYNC_RCU_DEBUG")
    }
}
