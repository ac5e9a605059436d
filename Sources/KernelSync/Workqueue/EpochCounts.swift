/// How many instances of each flush epoch a work queue still has ready or running, oldest epoch first.
///
/// Kernel analogue: the per-colour `nr_in_flight` counts of a `pool_workqueue` that `flush_workqueue()`
/// waits on. A value type with no locking; the queue keeps it under its lock.
///
/// Instances are counted in the queue's current epoch, which only grows, so new counts go to the end
/// and the list stays sorted. It holds one entry per epoch with work left: in practice one or two, so a
/// linear search costs less than hashing.
struct EpochCounts {
    /// `(epoch, count)` with count > 0, by ascending epoch.
    private var counts: [(epoch: UInt64, count: Int)] = []

    /// No epoch has work left.
    var isEmpty: Bool { counts.isEmpty }

    /// Counts one more instance in `epoch`, which must be the newest epoch counted so far or a newer one.
    mutating func add(_ epoch: UInt64) {
        if let last = counts.indices.last, counts[last].epoch == epoch {
            counts[last].count += 1
        } else {
            precondition(
                counts.last.map { $0.epoch < epoch } ?? true, "epoch \(epoch) counted after a newer one: \(counts)")
            counts.append((epoch, 1))
        }
    }

    /// Counts one instance of `epoch` as ended. Returns the instances `epoch` still has, or nil when it
    /// had none to end.
    mutating func remove(_ epoch: UInt64) -> Int? {
        guard let index = counts.firstIndex(where: { $0.epoch == epoch }) else { return nil }
        counts[index].count -= 1
        let left = counts[index].count
        if left == 0 { counts.remove(at: index) }
        return left
    }

    /// Whether an epoch up to `epoch` still has work.
    func hasWork(through epoch: UInt64) -> Bool {
        counts.first.map { $0.epoch <= epoch } ?? false
    }
}
