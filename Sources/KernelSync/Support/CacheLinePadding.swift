/// 64 bytes of nothing, to keep two fields of a class off one cache line: the kernel's
/// `____cacheline_aligned_in_smp`, for a language that cannot align a field. Swift lays a class's stored
/// properties out in declaration order from a 16-byte-aligned allocation, so fields 64 bytes or more apart
/// never share a line.
///
/// Use it between a field that readers load on every pass and fields that writers store to (or an
/// object's header, whose reference count every retain and release writes): otherwise each store takes
/// the line from every reader's cache, and each reader's next load takes it back from the writer's
/// (false sharing).
public struct CacheLinePadding: Sendable {
    private let words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)

    public init() {}
}
