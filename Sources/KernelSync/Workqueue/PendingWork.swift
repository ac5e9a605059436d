/// The instances a work queue holds: a ready list in queueing order, and delayed instances by deadline.
///
/// Kernel analogue: `pool->worklist` plus the `timer_list` of each `delayed_work`. A value type with no
/// locking; the queue keeps it under its lock.
///
/// Entries are withdrawn lazily from the ready list: a cancelled instance stays there until a worker
/// takes it and the item's state says it is stale. Delayed entries are removed eagerly, since a long
/// timer would otherwise keep a cancelled item alive until it fires.
struct PendingWork<Element> {
    /// Ready entries; `ready[head...]` are live, in queueing order. Taken entries are moved out (left
    /// nil), so compacting the list copies and destroys no live element.
    private var ready: [Element?] = []
    private var head = 0
    /// Delayed entries, sorted by deadline (monotonic nanoseconds); equal deadlines keep queueing order.
    private var timers: [(deadline: UInt64, element: Element)] = []

    var isReadyEmpty: Bool { head == ready.count }
    /// The earliest deadline, or nil without delayed entries.
    var nextDeadline: UInt64? { timers.first?.deadline }

    mutating func append(_ element: Element) {
        ready.append(element)
    }

    /// Takes the oldest ready entry.
    mutating func popReady() -> Element? {
        guard head < ready.count else { return nil }
        let element = ready[head].take()
        head += 1
        if head == ready.count {
            ready.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= ready.count {
            ready.removeFirst(head)
            head = 0
        }
        return element
    }

    /// Adds a delayed entry. Returns whether it is now the earliest, so the timer must be rearmed.
    @discardableResult
    mutating func schedule(_ element: Element, deadline: UInt64) -> Bool {
        var low = 0
        var high = timers.count
        while low < high {
            let middle = (low + high) / 2
            if timers[middle].deadline <= deadline { low = middle + 1 } else { high = middle }
        }
        timers.insert((deadline, element), at: low)
        return low == 0
    }

    /// Removes the first delayed entry that matches; returns it.
    mutating func removeDelayed(where matches: (Element) -> Bool) -> Element? {
        guard let index = timers.firstIndex(where: { matches($0.element) }) else { return nil }
        return timers.remove(at: index).element
    }

    /// Moves every delayed entry whose deadline is at or before `now` to the ready list, earliest
    /// first, passing each through `prepare` on the way. Returns how many moved.
    mutating func expire(now: UInt64, _ prepare: (inout Element) -> Void) -> Int {
        let expired = removeExpired(now: now)
        for var element in expired {
            prepare(&element)
            ready.append(element)
        }
        return expired.count
    }

    /// Removes every delayed entry whose deadline is at or before `now`; returns them, earliest first.
    mutating func removeExpired(now: UInt64) -> [Element] {
        let count = timers.prefix { $0.deadline <= now }.count
        defer { timers.removeFirst(count) }
        return timers.prefix(count).map(\.element)
    }

    /// Empties both lists; returns the ready entries in order and the delayed ones by deadline.
    mutating func removeAll() -> (ready: [Element], delayed: [Element]) {
        let all = (ready[head...].map { $0! }, timers.map(\.element))
        ready.removeAll()
        head = 0
        timers.removeAll()
        return all
    }
}
