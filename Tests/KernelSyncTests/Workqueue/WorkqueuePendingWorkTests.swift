import Testing
@testable import KernelSync

/// The queue's pending lists, without threads.
@Suite struct WorkqueuePendingWorkTests {
    @Test func readyEntriesComeOutInQueueingOrder() {
        var pending = PendingWork<Int>()
        for value in 0..<200 { pending.append(value) }
        var out: [Int] = []
        while let value = pending.popReady() { out.append(value) }
        #expect(out == Array(0..<200))
        #expect(pending.isReadyEmpty)
    }

    @Test func delayedEntriesBecomeReadyByDeadlineAndEqualDeadlinesKeepOrder() {
        var pending = PendingWork<String>()
        let rearms = [
            pending.schedule("late", deadline: 30),
            pending.schedule("early", deadline: 10),
            pending.schedule("early-second", deadline: 10),
        ]
        #expect(rearms == [true, true, false], "only a new earliest deadline rearms the timer")
        #expect(pending.nextDeadline == 10)
        let moved = pending.expire(now: 20) { $0 += "!" }
        #expect(moved == 2)
        let ready = [pending.popReady(), pending.popReady()]
        #expect(ready == ["early!", "early-second!"])
        let removed = pending.removeDelayed { $0 == "late" }
        #expect(removed == "late")
        #expect(pending.nextDeadline == nil)
    }
}
