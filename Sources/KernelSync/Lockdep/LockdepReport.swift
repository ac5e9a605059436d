/// One finding of the validator, as data: what kind of bug, which lock classes, where, and the full
/// kernel-shaped text that was printed.
///
/// Tests read these back through ``Lockdep/reports`` instead of parsing standard error.
public struct LockdepReport: Sendable, CustomStringConvertible {
    /// The kind of bug. Subsystems add their own kinds (the work queue, RCU) as static members.
    public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A new dependency closes a cycle in the lock-order graph: "possible circular locking
        /// dependency detected". Reported even when the run did not deadlock.
        public static let circularDependency = Kind(rawValue: "circular-dependency")
        /// A lock is acquired while a lock of the same class (and subclass) is held: "possible recursive
        /// locking detected". Taking the same instance twice is this kind too.
        public static let recursiveLocking = Kind(rawValue: "recursive-locking")
        /// A sleeping lock or a blocking call in atomic context: "sleeping function called from invalid
        /// context".
        public static let sleepInAtomicContext = Kind(rawValue: "sleep-in-atomic-context")
        /// A sleeping lock or a blocking call inside an RCU read-side critical section.
        public static let sleepInReadSection = Kind(rawValue: "sleep-in-rcu-read-section")
        /// Unlocking a lock that is not held: "bad unlock balance detected".
        public static let badUnlockBalance = Kind(rawValue: "bad-unlock-balance")
        /// Unlocking a mutex that another thread holds.
        public static let unlockByNonOwner = Kind(rawValue: "unlock-by-non-owner")
        /// A thread exited while holding locks.
        public static let lockHeldAtThreadExit = Kind(rawValue: "lock-held-at-thread-exit")
        /// `assertHeld` / `assertNotHeld` found the opposite (`lockdep_assert_held` failed).
        public static let assertionFailed = Kind(rawValue: "lock-assertion-failed")
        /// A locked mutex was destroyed (`mutex_destroy` of a held mutex).
        public static let destroyedWhileLocked = Kind(rawValue: "destroyed-while-locked")
        /// Leaving an atomic context that was never entered.
        public static let unbalancedAtomicContext = Kind(rawValue: "unbalanced-atomic-context")
    }

    public let kind: Kind
    /// The lock classes involved, by name (subclass shown as "name/n"); for a cycle, in cycle order.
    public let classes: [String]
    /// The same classes as objects, to match against the ones a test created.
    public let lockClasses: [LockClass]
    /// "name/tid" of the thread that triggered the report.
    public let thread: String
    /// "File.swift:42" where the offending call was made.
    public let site: String
    /// The full text, in the kernel's shape.
    public let text: String
    /// How many times this same finding (kind, classes, site) has occurred.
    public internal(set) var occurrences: Int

    /// Whether `lockClass` (any subclass of it) is among the involved classes.
    public func involves(_ lockClass: LockClass) -> Bool {
        lockClasses.contains { $0 === lockClass }
    }

    public var description: String {
        "\(kind) [\(classes.joined(separator: ", "))] at \(site) by \(thread), \(occurrences)×"
    }
}
