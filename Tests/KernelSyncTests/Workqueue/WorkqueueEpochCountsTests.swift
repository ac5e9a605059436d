import Testing
@testable import KernelSync

/// The queue's per-epoch counts of ready and running instances, without threads.
@Suite struct WorkqueueEpochCountsTests {
    @Test func anEpochHasWorkUntilItsLastInstanceEndsInAnyOrder() {
        var counts = EpochCounts()
        counts.add(0)
        counts.add(0)
        counts.add(2)
        #expect(counts.hasWork(through: 0))
        #expect(counts.remove(2) == 0, "a newer epoch may finish first")
        #expect(counts.hasWork(through: 2))
        #expect(counts.remove(0) == 1)
        #expect(counts.remove(0) == 0)
        #expect(!counts.hasWork(through: 2))
        #expect(counts.isEmpty)
    }

    @Test func endingAnInstanceOfAnEpochWithNoneLeftIsRefused() {
        var counts = EpochCounts()
        counts.add(1)
        #expect(counts.remove(0) == nil)
        #expect(counts.remove(1) == 0)
        #expect(counts.remove(1) == nil)
    }
}
