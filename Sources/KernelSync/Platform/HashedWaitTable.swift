/// A fixed table of mutex + condition pairs that many small objects share, chosen by the object's
/// address, so that an object that is rarely waited on needs no lock or condition of its own: no
/// allocation, no `pthread_*_init` or `_destroy` per object.
///
/// Kernel analogue: the hashed wait-queue tables behind `wait_on_bit()` and `wait_var_event()`
/// (`bit_wait_table`), which spare every `struct page` and `work_struct` a wait queue of its own.
///
/// Rules for users (the work item is one): hold at most one entry at a time, and never release the
/// last reference to another user while holding one (its deinit may take the same entry: a
/// non-recursive mutex deadlocks on itself). Waiters recheck their own condition after every wake-up,
/// since a broadcast on a shared condition also wakes the waiters of unrelated objects.
struct HashedWaitTable: @unchecked Sendable {
    struct Entry {
        let lock: PthreadMutex
        let condition: PthreadCondition
    }

    /// Enough entries that two objects in use at once rarely share one.
    static let size = 256

    /// The process's table. Never destroyed: objects may use their entry until the process exits.
    static let shared = HashedWaitTable()

    private let entries: UnsafeMutablePointer<Entry>

    private init() {
        entries = .allocate(capacity: HashedWaitTable.size)
        for index in 0..<HashedWaitTable.size {
            (entries + index).initialize(to: Entry(lock: PthreadMutex(), condition: PthreadCondition()))
        }
    }

    /// The entry of the object at `address`.
    @inline(__always)
    func entry(for address: UnsafeRawPointer) -> Entry {
        // Heap objects are 16-byte aligned; mix the bits above that so neighbours spread out.
        let bits = UInt(bitPattern: address) >> 4
        let mixed = (bits ^ (bits >> 8) ^ (bits >> 16)) & UInt(HashedWaitTable.size - 1)
        return entries[Int(mixed)]
    }
}
