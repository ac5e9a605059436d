import Testing
import KernelSync

/// Four threads queue, cancelSync, flush and disable/enable shared items while two workers run them.
@Suite struct WorkqueueRaceTests {
    @Test func queueCancelFlushAndDisableRaceWithoutBreakingTheContracts() {
        let result = WorkqueueTorture.run(.init(
            seed: 0x5EED_2026, threads: 4, items: 4, workers: 2, operationsPerThread: 25_000))
        #expect(result.violations == 0, "\(result)")
        #expect(result.peakConcurrency <= 1, "\(result)")
        #expect(result.runs > 0, "\(result)")
        #expect(result.operations == 100_000)
        #expect(result.passed)
    }
}
