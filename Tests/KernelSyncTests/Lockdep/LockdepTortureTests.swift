import Testing
import KernelSync

/// Many threads, one lock order: exclusion holds, the validator stays silent, and one injected
/// inversion among all those acquisitions is still found.
@Suite struct LockdepTortureTests {
    @Test func orderedLockingUnderTortureIsExclusiveAndSilent() {
        let result = LockdepTorture.run(.init(seed: 0x10CD_E9, threads: 4, locks: 16, durationSeconds: 1))
        #expect(result.exclusionViolations == 0, "\(result)")
        #expect(result.reports.isEmpty, "\(result)")
        #expect(result.passed)
    }

    @Test func oneInversionAmongOrderedAcquisitionsIsReported() {
        let result = LockdepTorture.run(.init(seed: 0x10CD_EA, threads: 2, locks: 8, durationSeconds: 0.5, injectInversion: true))
        #expect(result.reports.map(\.kind) == [.circularDependency], "\(result)")
        #expect(result.passed)
    }
}
