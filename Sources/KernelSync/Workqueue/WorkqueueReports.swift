extension LockdepReport.Kind {
    /// A work function returned holding a lock, inside a read section, or in atomic context: "BUG:
    /// workqueue leaked lock or atomic".
    public static let workqueueLeakedLock = Self(rawValue: "workqueue-leaked-lock")
    /// `cancelSync`, `flush` or `disableSync` of an item from inside its own function, which would wait
    /// for itself forever.
    public static let workSelfFlush = Self(rawValue: "work-self-flush")
    /// `flush`, `drain` or `destroy` of a queue from one of its own workers.
    public static let workqueueSelfFlush = Self(rawValue: "workqueue-self-flush")
    /// The last reference to a pending item was released (the kernel's "ODEBUG: free active object").
    public static let workReleasedWhilePending = Self(rawValue: "work-released-while-pending")
    /// A queue was destroyed with instances still pending on it.
    public static let workqueueDestroyedWithPendingWork = Self(rawValue: "workqueue-destroyed-with-pending-work")
    /// A queue was destroyed twice.
    public static let workqueueDestroyedTwice = Self(rawValue: "workqueue-destroyed-twice")
    /// Queueing on a queue that is draining (from outside its workers) or destroyed.
    public static let workqueueQueueingRefused = Self(rawValue: "workqueue-queueing-refused")
    /// `enable` of an item that is not disabled.
    public static let workEnableUnbalanced = Self(rawValue: "work-enable-unbalanced")
}

/// Builds the work queue's reports, in the shape of the kernel's workqueue warnings.
enum WorkqueueReports {
    static func leakedLock(
        queue: Workqueue, item: WorkItemCore, state: UnsafeMutablePointer<ThreadState>, expectedDepth: Int,
        expectedAtomicDepth: Int
    ) -> LockdepReport {
        let thread = state.pointee.threadDescription
        var text = ReportText.banner("BUG: workqueue leaked lock or atomic: \(thread)")
        text += "     last function: \(item.name) on workqueue \(queue.name)\n"
        text += "     held locks: \(state.pointee.depth), expected \(expectedDepth) (the queue's and the item's pseudo-locks);"
        text += " atomic depth: \(state.pointee.atomicDepth), expected \(expectedAtomicDepth)\n"
        text += "     a work function must release every lock it takes and leave atomic context before returning\n"
        text += ReportText.heldLockList(state) + "\n"
        let leaked = state.pointee.heldLocks.dropFirst(min(expectedDepth, state.pointee.depth))
        let classes = [item.map.lockClass] + leaked.map { ReportText.lockClass($0.node) }
        return LockdepReport(
            kind: .workqueueLeakedLock, classes: classes.map(\.name), lockClasses: classes, thread: thread,
            site: item.map.lockClass.site, text: text, occurrences: 1)
    }

    static func selfFlush(item: WorkItemCore, call: String, site: String) -> LockdepReport {
        let thread = ThreadState.current.pointee.threadDescription
        var text = ReportText.banner("WARNING: \(call) called from the work's own function")
        text += "\(thread) runs \(item.name) and called \(call) at \(site);\n"
        text += "it would wait for its own return forever. Returning without waiting.\n"
        text += "Expected: cancel or flush the item from another thread (the work may requeue itself, or return).\n\n"
        return itemReport(.workSelfFlush, lockClass: item.lockClass, thread: thread, site: site, text: text)
    }

    static func releasedWhilePending(item: WorkItemCore, name: String, state: String) -> LockdepReport {
        let thread = ThreadState.current.pointee.threadDescription
        var text = ReportText.banner("ODEBUG: free active (pending) object type: work_struct")
        text += "the last reference to work item \(name) was released by \(thread) while it was \(state).\n"
        text += "The pending instance is withdrawn and will not run.\n"
        text += "Expected: cancelSync() or disableSync() the item before releasing it.\n\n"
        return itemReport(.workReleasedWhilePending, lockClass: item.lockClass, thread: thread, site: item.lockClass.site, text: text)
    }

    static func unbalancedEnable(lockClass: LockClass, name: String, site: String) -> LockdepReport {
        let thread = ThreadState.current.pointee.threadDescription
        var text = ReportText.banner("WARNING: enable_work(\(name)) of an item that is not disabled")
        text += "at \(site) in \(thread): every enable() must match an earlier disable() or disableSync(); nothing changed.\n\n"
        return itemReport(.workEnableUnbalanced, lockClass: lockClass, thread: thread, site: site, text: text)
    }

    static func queueSelfFlush(queue: Workqueue, call: String, site: String) -> LockdepReport {
        let thread = ThreadState.current.pointee.threadDescription
        var text = ReportText.banner("WARNING: \(call) called from a worker of that queue")
        text += "\(thread) is a worker of \(queue.name) and called \(call) at \(site);\n"
        text += "it would wait for its own work forever. Returning without waiting.\n"
        text += "Expected: flush, drain or destroy a queue from a thread that is not one of its workers.\n\n"
        return queueReport(.workqueueSelfFlush, queue: queue, thread: thread, site: site, text: text)
    }

    static func destroyedWithPendingWork(queue: Workqueue, items: [String], site: String) -> LockdepReport {
        let thread = ThreadState.current.pointee.threadDescription
        var text = ReportText.banner("WARNING: destroy_workqueue(\(queue.name)) with work pending")
        text += "at \(site) in \(thread); withdrawn without running (\(items.count)):\n"
        for item in items { text += "  \(item)\n" }
        text += "Expected: cancelSync(), disableSync() or flush the items (or drain() the queue) before destroy().\n\n"
        return queueReport(.workqueueDestroyedWithPendingWork, queue: queue, thread: thread, site: site, text: text)
    }

    static func destroyedTwice(queue: Workqueue, site: String) -> LockdepReport {
        let thread = ThreadState.current.pointee.threadDescription
        var text = ReportText.banner("WARNING: destroy_workqueue(\(queue.name)) of a queue already destroyed")
        text += "at \(site) in \(thread); nothing done.\n\n"
        return queueReport(.workqueueDestroyedTwice, queue: queue, thread: thread, site: site, text: text)
    }

    static func refusedQueueing(
        queue: Workqueue, refusal: Workqueue.Refusal, item: WorkItemCore, site: String
    ) -> LockdepReport {
        let thread = ThreadState.current.pointee.threadDescription
        let why = switch refusal {
        case .draining: "is draining, and only its own work items may queue on it meanwhile (chained work)"
        case .destroyed: "is destroyed (or being destroyed)"
        }
        var text = ReportText.banner("WARNING: queueing \(item.name) on workqueue \(queue.name) refused")
        text += "at \(site) in \(thread): the queue \(why). The item was not queued.\n\n"
        let classes = [queue.lockClass, item.map.lockClass]
        return LockdepReport(
            kind: .workqueueQueueingRefused, classes: classes.map(\.name), lockClasses: classes, thread: thread,
            site: site, text: text, occurrences: 1)
    }

    /// The timer of a delayed instance of `item` expired while `queue` drained: the instance was
    /// withdrawn instead of made ready.
    static func delayedWorkExpiredWhileDraining(queue: Workqueue, item: WorkItemCore) -> LockdepReport {
        let thread = ThreadState.current.pointee.threadDescription
        var text = ReportText.banner("WARNING: delayed \(item.name) expired on workqueue \(queue.name) while it drains")
        text += "in \(thread): the queue is draining, and only its own work items may queue on it meanwhile "
        text += "(chained work); an expiring timer is not one of them. The instance was withdrawn, not run. "
        text += "Cancel delayed work (cancelSync) before draining the queue.\n\n"
        let classes = [queue.lockClass, item.map.lockClass]
        return LockdepReport(
            kind: .workqueueQueueingRefused, classes: classes.map(\.name), lockClasses: classes, thread: thread,
            site: "timer of \(item.name)", text: text, occurrences: 1)
    }

    private static func itemReport(
        _ kind: LockdepReport.Kind, lockClass: LockClass, thread: String, site: String, text: String
    ) -> LockdepReport {
        LockdepReport(
            kind: kind, classes: [lockClass.name], lockClasses: [lockClass], thread: thread,
            site: site, text: text, occurrences: 1)
    }

    private static func queueReport(
        _ kind: LockdepReport.Kind, queue: Workqueue, thread: String, site: String, text: String
    ) -> LockdepReport {
        LockdepReport(
            kind: kind, classes: [queue.lockClass.name], lockClasses: [queue.lockClass], thread: thread,
            site: site, text: text, occurrences: 1)
    }
}
