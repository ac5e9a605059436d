/// Names a grace period: once it has elapsed, everything removed before the cookie was taken may be
/// freed. Cookies of later calls compare greater or equal.
///
/// Kernel analogue: the `unsigned long` returned by `get_state_synchronize_rcu()`.
public struct GracePeriodCookie: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The grace-period sequence number that completes it (twice the completed count).
    @usableFromInline let target: UInt64

    @usableFromInline
    init(target: UInt64) { self.target = target }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.target < rhs.target }

    public var description: String { "GracePeriodCookie(gp \(target / 2))" }
}
