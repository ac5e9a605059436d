/// Builds reports in the shape of the kernel's lockdep output, so that a kernel developer reads them as
/// they would read a splat from `dmesg`.
enum ReportText {
    static func circularDependency(
        state: UnsafeMutablePointer<ThreadState>, acquiring node: Int, site: String, held: HeldLock,
        path: [Int], graph: DependencyGraph
    ) -> LockdepReport {
        // `path` runs acquiring ⇝ held; the new edge held → acquiring would close the cycle.
        let target = held.node
        let parent = path.count >= 2 ? path[path.count - 2] : node
        let thread = state.pointee.threadDescription
        var text = banner("WARNING: possible circular locking dependency detected")
        text += "\(thread) is trying to acquire lock:\n (\(name(node))), at: \(site)\n\n"
        text += "but thread is already holding lock:\n (\(name(target))), at: \(held.file):\(held.line)\n\n"
        text += "which lock already depends on the new lock.\n\n"
        text += "the existing dependency chain (in reverse order) is:\n"
        var number = path.count - 1
        for (from, to) in zip(path, path.dropFirst()).reversed() {
            let record = graph.record(of: .init(from: from, to: to))
            text += "\n-> #\(number) (\(name(to))):\n"
            if let record {
                text += "       acquired at \(record.acquiredSite) while holding (\(name(from))) acquired at \(record.heldSite)\n"
                text += "       first recorded by \(record.thread)\n"
            }
            number -= 1
        }
        text += "\n-> #0 (\(name(node))):\n       acquired at \(site) while holding (\(name(target))) acquired at \(held.file):\(held.line)\n"
        text += "       by \(thread) (this acquisition)\n\n"
        text += "other info that might help us debug this:\n\n"
        if parent != node {
            text += "Chain exists of:\n  \(path.map(name).joined(separator: " --> "))\n\n"
        }
        text += " Possible unsafe locking scenario:\n\n"
        text += scenarioRow("CPU0", "CPU1") + scenarioRow("----", "----")
        text += scenarioRow("lock(\(name(target)));", "")
        text += scenarioRow("", "lock(\(name(parent)));")
        text += scenarioRow("", "lock(\(name(target)));")
        text += scenarioRow("lock(\(name(node)));", "")
        text += "\n *** DEADLOCK ***\n\n"
        text += heldLockList(state)
        return LockdepReport(
            kind: .circularDependency, classes: path.map(name), lockClasses: path.map(lockClass),
            thread: thread, site: site, text: text, occurrences: 1)
    }

    static func recursiveLocking(
        state: UnsafeMutablePointer<ThreadState>, node: Int, site: String, held: HeldLock
    ) -> LockdepReport {
        let thread = state.pointee.threadDescription
        var text = banner("WARNING: possible recursive locking detected")
        text += "\(thread) is trying to acquire lock:\n (\(name(node))), at: \(site)\n\n"
        text += "but thread is already holding lock:\n (\(name(held.node))), at: \(held.file):\(held.line)\n\n"
        text += "other info that might help us debug this:\n Possible unsafe locking scenario:\n\n"
        text += "       CPU0\n       ----\n  lock(\(name(node)));\n  lock(\(name(node)));\n\n *** DEADLOCK ***\n\n"
        text += " May be due to missing lock nesting notation (lock(nested:) with a subclass)\n\n"
        text += heldLockList(state)
        return LockdepReport(
            kind: .recursiveLocking, classes: [name(node)], lockClasses: [lockClass(node)],
            thread: thread, site: site, text: text, occurrences: 1)
    }

    static func sleepInInvalidContext(
        state: UnsafeMutablePointer<ThreadState>, what: String, acquiring: LockClass?, site: String
    ) -> LockdepReport {
        let thread = state.pointee.threadDescription
        let inAtomic = state.pointee.atomicDepth > 0
        var text = "BUG: sleeping function called from invalid context at \(site)\n"
        text += "in_atomic(): \(inAtomic ? 1 : 0)\(inAtomic ? " (\(state.pointee.atomicReason))" : ""), "
        text += "RCU nest depth: \(state.pointee.readSections), expected: 0, thread: \(thread)\n"
        text += "blocking call: \(what)\n"
        text += heldLockList(state)
        let involved = [acquiring].compactMap { $0 } + state.pointee.heldLocks.map { lockClass($0.node) }
        return LockdepReport(
            kind: inAtomic ? .sleepInAtomicContext : .sleepInReadSection,
            classes: involved.map(\.name), lockClasses: involved,
            thread: thread, site: site, text: text + "\n", occurrences: 1)
    }

    static func badUnlock(
        kind: LockdepReport.Kind, lockClass: LockClass, thread: String, owner: String?, site: String
    ) -> LockdepReport {
        var text = banner("WARNING: bad unlock balance detected!")
        text += "\(thread) is trying to release lock (\(lockClass.name)) at:\n\(site)\n"
        if let owner {
            text += "but the lock is held by \(owner): only the owner may unlock a mutex!\n\n"
        } else {
            text += "but the lock is not held: there are no more locks to release!\n\n"
        }
        return LockdepReport(
            kind: kind, classes: [lockClass.name], lockClasses: [lockClass], thread: thread, site: site,
            text: text, occurrences: 1)
    }

    static func assertionFailed(
        assertion: String, lockClass: LockClass, thread: String, owner: String?, site: String
    ) -> LockdepReport {
        var text = banner("WARNING: \(assertion)(\(lockClass.name)) failed")
        text += "at \(site) in \(thread): "
        text += owner.map { "the lock is held by \($0)\n\n" } ?? "the lock is not held\n\n"
        return LockdepReport(
            kind: .assertionFailed, classes: [lockClass.name], lockClasses: [lockClass], thread: thread,
            site: site, text: text, occurrences: 1)
    }

    static func destroyedWhileLocked(lockClass: LockClass, owner: String, thread: String) -> LockdepReport {
        var text = banner("WARNING: mutex destroyed while locked")
        text += "a mutex of class (\(lockClass.name)) was released by \(thread) while \(owner) holds it;\n"
        text += "its memory is leaked rather than freed under the holder.\n\n"
        return LockdepReport(
            kind: .destroyedWhileLocked, classes: [lockClass.name], lockClasses: [lockClass], thread: thread,
            site: lockClass.site, text: text, occurrences: 1)
    }

    static func locksHeldAtExit(state: UnsafeMutablePointer<ThreadState>) -> LockdepReport {
        let thread = state.pointee.threadDescription
        var text = banner("BUG: \(thread) still has locks held at thread exit!")
        text += heldLockList(state)
        let held = state.pointee.heldLocks
        return LockdepReport(
            kind: .lockHeldAtThreadExit, classes: held.map { name($0.node) },
            lockClasses: held.map { lockClass($0.node) }, thread: thread,
            site: held.first.map { "\($0.file):\($0.line)" } ?? "?", text: text + "\n", occurrences: 1)
    }

    static func unbalancedAtomicContext(state: UnsafeMutablePointer<ThreadState>, site: String) -> LockdepReport {
        let thread = state.pointee.threadDescription
        let text = banner("WARNING: leaving atomic context that was never entered") + "at \(site) in \(thread)\n\n"
        return LockdepReport(
            kind: .unbalancedAtomicContext, classes: [], lockClasses: [], thread: thread, site: site,
            text: text, occurrences: 1)
    }

    // MARK: Pieces

    static func banner(_ title: String) -> String {
        let rule = String(repeating: "-", count: title.count)
        return "\n" + String(repeating: "=", count: title.count) + "\n" + title + "\n" + rule + "\n"
    }

    static func heldLockList(_ state: UnsafeMutablePointer<ThreadState>) -> String {
        let held = state.pointee.heldLocks
        guard !held.isEmpty else { return "no locks held by \(state.pointee.threadDescription).\n" }
        var text = "\(held.count) lock\(held.count == 1 ? "" : "s") held by \(state.pointee.threadDescription):\n"
        for (index, entry) in held.enumerated() {
            text += " #\(index): (\(name(entry.node)))\(entry.trylock ? " (trylock)" : ""), at: \(entry.file):\(entry.line)\n"
        }
        return text
    }

    static func scenarioRow(_ left: String, _ right: String) -> String {
        let padded = left.count >= 29 ? left + " " : left + String(repeating: " ", count: 29 - left.count)
        let row = "  " + padded + right
        return String(row.reversed().drop(while: { $0 == " " }).reversed()) + "\n"
    }

    static func name(_ node: Int) -> String { LockClass.nodeName(node) }

    static func lockClass(_ node: Int) -> LockClass {
        LockClassRegistry.shared.lockClass(at: node / LockClass.maximumSubclasses)
    }
}
