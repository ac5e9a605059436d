import KernelSync

extension IOMMUSystem {
    /// The validator's reports about this system: those involving its lock classes, and those made on
    /// its own threads (the broken-work workers and torture threads, whose names carry the tag).
    public var reports: [LockdepReport] {
        let classes = lockClasses.all
        let tag = lockClasses.tag.map { "#\($0)" }
        return Lockdep.reports.filter { report in
            classes.contains { report.involves($0) } || tag.map { report.thread.contains($0) } == true
        }
    }

    /// What is wrong once every device has been removed and the reclaimer has caught up: a group_device
    /// or a group not freed (or freed twice), sysfs links or trace events left unbalanced, model
    /// warnings. Empty when the paths kept their invariants.
    ///
    /// Context: after ``shutdown()`` or with no path running; waits for RCU callbacks (`rcu_barrier`).
    public func invariantViolations() -> [String] {
        RCU.barrier()
        let counters = counters.snapshot
        var violations: [String] = []
        if counters.groupDevicesAllocated != counters.groupDevicesFreed {
            violations.append("group_devices: \(counters.groupDevicesAllocated) allocated, \(counters.groupDevicesFreed) freed")
        }
        if counters.groupsAllocated != counters.groupsFreed {
            violations.append("groups: \(counters.groupsAllocated) allocated, \(counters.groupsFreed) freed")
        }
        for (kind, count) in counters.warnings.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where count > 0 {
            violations.append("\(count) warning\(count == 1 ? "" : "s"): \(kind.rawValue)")
        }
        if !sysfs.isEmpty { violations.append("sysfs links left: \(sysfs.entriesSnapshot)") }
        if !trace.isBalanced { violations.append("unbalanced trace events: \(trace.unbalanced)") }
        return violations
    }
}
