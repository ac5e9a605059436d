import CKernelSync

/// The validator's chain cache (the kernel's `lock_chains` hash): the set of held-lock sequences that
/// have already been validated, keyed by a 64-bit hash of the sequence.
///
/// A sequence seen before costs one hash computation and one or two loads here instead of a graph
/// search. The table is insert-only and lock-free: open addressing with linear probing over a fixed
/// array of 64-bit slots, so lookups never take the graph lock. The validator's own table lives in
/// static C storage (`ks_chain_cache_slots`), so reaching it costs no lazy-initialisation check.
///
/// A hash collision would make the validator skip a sequence it has not checked (a missed report, never
/// a false one); with 64-bit keys and at most 65,536 entries the chance is below one in 2^32.
@usableFromInline
struct ChainCache {
    /// The key of the empty sequence. Never 0, which marks a free slot.
    @usableFromInline static let initialKey: UInt64 = 0x6C6F_636B_6465_7031

    @usableFromInline static let slotCount = Int(KS_CHAIN_CACHE_SLOTS)
    @usableFromInline static let probeLimit = 32

    /// `slotCount` zero-initialised slots, never freed.
    @usableFromInline let slots: UnsafeMutablePointer<UInt64>

    /// The validator's table.
    @usableFromInline static var shared: ChainCache { ChainCache(slots: ks_chain_cache_slots) }

    init(slots: UnsafeMutablePointer<UInt64>) {
        self.slots = slots
    }

    /// A private table, for tests.
    static func makePrivate() -> ChainCache {
        let slots = UnsafeMutablePointer<UInt64>.allocate(capacity: slotCount)
        slots.initialize(repeating: 0, count: slotCount)
        return ChainCache(slots: slots)
    }

    /// The key of a held sequence extended by one acquisition. The trylock bit is part of the key: a
    /// trylock adds no dependency into itself, so its sequence is validated separately.
    @inlinable @inline(__always)
    static func extend(_ key: UInt64, node: Int, trylock: Bool) -> UInt64 {
        var hash = (key ^ (UInt64(truncatingIfNeeded: node) &<< 1 | (trylock ? 1 : 0))) &* 0x9E37_79B9_7F4A_7C15
        hash ^= hash &>> 29
        return hash | 1 << 63
    }

    /// Whether `key` has been validated.
    ///
    /// Ordering: acquiring loads; pair with the releasing compare-exchange in ``insert(_:)``. Nothing is
    /// read on the strength of a hit, so this is documentation more than necessity.
    @inlinable @inline(__always)
    func contains(_ key: UInt64) -> Bool {
        var index = Int(truncatingIfNeeded: key) & (ChainCache.slotCount - 1)
        for _ in 0..<ChainCache.probeLimit {
            let found = ks_load_acquire_u64(slots + index)
            if found == key { return true }
            if found == 0 { return false }
            index = (index + 1) & (ChainCache.slotCount - 1)
        }
        return false
    }

    /// Records `key` as validated. Returns false when the probe window is full; the sequence is then
    /// validated again on its next acquisition, which is slower but still correct.
    @discardableResult
    func insert(_ key: UInt64) -> Bool {
        var index = Int(truncatingIfNeeded: key) & (ChainCache.slotCount - 1)
        for _ in 0..<ChainCache.probeLimit {
            let found = ks_cas_release_u64(slots + index, 0, key)
            if found == 0 || found == key { return true }
            index = (index + 1) & (ChainCache.slotCount - 1)
        }
        return false
    }
}
