import IOMMUModel
import KernelSync
import Testing

/// Probe, remove, broken-device reports from an "interrupt" thread, resets and RCU readers, all at once,
/// with RCU debug reclamation on: the fixed designs must end with no report, no warning and no leak.
@Suite struct IOMMUStressTests {
    @Test(.timeLimit(.minutes(2)), arguments: [RemoveVariant.deferredDisable, .deferredDisableRCU])
    func probeRemoveReportResetAndReadersEndClean(variant: RemoveVariant) {
        let seed: UInt64 = 0x5EED_10_33
        let result = IOMMUTorture.run(.init(variant: variant, seed: seed, durationSeconds: 3))
        print(result.description, terminator: "")
        #expect(result.counters.probes > 0 && result.counters.removals > 0 && result.counters.reportsQueued > 0, "\(result)")
        #expect(result.reports.isEmpty, "\(result)")
        #expect(result.violations.isEmpty, "\(result)")
        #expect(result.passed)
    }
}
