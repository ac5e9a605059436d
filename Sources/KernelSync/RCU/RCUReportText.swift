extension LockdepReport.Kind {
    /// `synchronize` or `barrier` inside a read section of the calling thread: it would wait for itself.
    /// Kernel: "Illegal synchronize_rcu() in RCU read-side critical section".
    public static let illegalSynchronizeInReadSection = Self(rawValue: "rcu-illegal-synchronize-in-read-section")
    /// `barrier` called from an RCU callback: it would wait for the callback that is running it.
    public static let barrierFromCallback = Self(rawValue: "rcu-barrier-from-callback")
    /// `readUnlock` with no read section to leave.
    public static let unbalancedReadUnlock = Self(rawValue: "rcu-unbalanced-read-unlock")
    /// `threadOffline` inside a read section.
    public static let offlineInReadSection = Self(rawValue: "rcu-offline-in-read-section")
    /// An RCU-protected access without the protection it needs: a dereference outside a read section, a
    /// writer's list traversal or update without the update lock. Kernel: "suspicious RCU usage".
    public static let suspiciousRCUUsage = Self(rawValue: "rcu-suspicious-usage")
    /// An access to an object that RCU reclamation has already freed (poisoned).
    public static let useAfterFree = Self(rawValue: "rcu-use-after-free")
    /// An object retired a second time.
    public static let doubleRetire = Self(rawValue: "rcu-double-retire")
    /// An RCU callback or a work function returned inside a read section it entered: ended there, since
    /// every later grace period would wait for it. Kernel: the `rcu_preempt_depth()` check of
    /// `process_one_work()`, "BUG: workqueue leaked atomic, lock or RCU".
    public static let leakedReadSection = Self(rawValue: "rcu-leaked-read-section")
}

/// Builds the RCU reports, in the shape of the kernel's RCU-lockdep splats.
@usableFromInline
enum RCUReportText {
    private static var thread: String { ThreadState.current.pointee.threadDescription }

    static func illegalSynchronize(call: String, site: String) -> LockdepReport {
        var text = ReportText.banner("WARNING: Illegal \(call) in RCU read-side critical section")
        text += "at \(site) in \(thread), RCU nest depth \(RCUReaderRecord.currentNesting)\n"
        text += "the call would wait for this thread's own read section; it returns without waiting.\n"
        text += ReportText.heldLockList(ThreadState.current) + "\n"
        return report(.illegalSynchronizeInReadSection, site: site, text: text)
    }

    static func barrierFromCallback(site: String) -> LockdepReport {
        var text = ReportText.banner("WARNING: rcu_barrier() called from an RCU callback")
        text += "at \(site) in \(thread): the barrier would wait for the callback that is running it;\n"
        text += "it returns without waiting.\n\n"
        return report(.barrierFromCallback, site: site, text: text)
    }

    static func unbalancedUnlock(site: String) -> LockdepReport {
        var text = ReportText.banner("WARNING: rcu_read_unlock() without rcu_read_lock()")
        text += "at \(site) in \(thread): there is no read section to leave; ignored.\n\n"
        return report(.unbalancedReadUnlock, site: site, text: text)
    }

    static func offlineInReadSection(site: String) -> LockdepReport {
        var text = ReportText.banner("WARNING: RCU threadOffline() in RCU read-side critical section")
        text += "at \(site) in \(thread), RCU nest depth \(RCUReaderRecord.currentNesting): ignored;\n"
        text += "a thread goes offline only between read sections.\n\n"
        return report(.offlineInReadSection, site: site, text: text)
    }

    /// An update-side access (`what`, such as "rcu_assign_pointer()") without the update lock the
    /// caller named: reported as suspicious RCU usage. The lists' and pointers' checks call this once the
    /// validator is on; the test of the mode itself is inlined into them.
    @usableFromInline @inline(never)
    static func reportUnlessHeld(_ lock: KernelMutex, what: StaticString, file: StaticString, line: UInt) {
        guard !lock.isHeldByCurrentThread else { return }
        Lockdep.emit(suspicious(
            "\(what) without holding \(lock.lockClass.name)", site: "\(file):\(line)", classes: [lock.lockClass]))
    }

    static func suspicious(_ usage: String, site: String, classes: [LockClass] = []) -> LockdepReport {
        var text = ReportText.banner("WARNING: suspicious RCU usage")
        text += "\(site) \(usage)\n\nother info that might help us debug this:\n\n"
        text += "RCU nest depth: \(RCUReaderRecord.currentNesting), thread: \(thread)\n"
        text += ReportText.heldLockList(ThreadState.current) + "\n"
        return LockdepReport(
            kind: .suspiciousRCUUsage, classes: classes.map(\.name), lockClasses: classes, thread: thread,
            site: site, text: text, occurrences: 1)
    }

    static func useAfterFree(object: String, history: String, site: String) -> LockdepReport {
        var text = ReportText.banner("BUG: RCU use-after-free of \(object)")
        text += "access at \(site) by \(thread)\n\(history)\n"
        text += "A reader or work item still reached the object after its grace period ended.\n\n"
        return LockdepReport(
            kind: .useAfterFree, classes: [object], lockClasses: [], thread: thread, site: site, text: text,
            occurrences: 1)
    }

    static func leakedReadSection(by what: String, depth: UInt) -> LockdepReport {
        var text = ReportText.banner("BUG: \(what) leaked an RCU read-side critical section: \(thread)")
        text += "RCU nest depth \(depth)->0 on return from \(what).\n"
        text += "Every later grace period would have waited for this thread: the section is ended here.\n\n"
        return report(.leakedReadSection, site: what, text: text)
    }

    static func doubleRetire(object: String, history: String, site: String) -> LockdepReport {
        var text = ReportText.banner("BUG: \(object) retired twice")
        text += "second retire at \(site) by \(thread)\n\(history)\n\n"
        return LockdepReport(
            kind: .doubleRetire, classes: [object], lockClasses: [], thread: thread, site: site, text: text,
            occurrences: 1)
    }

    private static func report(_ kind: LockdepReport.Kind, site: String, text: String) -> LockdepReport {
        LockdepReport(
            kind: kind, classes: [RCU.readSectionMap.lockClass.name], lockClasses: [RCU.readSectionMap.lockClass],
            thread: thread, site: site, text: text, occurrences: 1)
    }
}
