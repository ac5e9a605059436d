import Glibc
@testable import KernelSync
import Testing

@Suite struct RCUDebugReclamationTests {
    final class GroupDevice: RCUProtected, @unchecked Sendable {}

    @Test func anAccessAfterTheGracePeriodIsReportedWithWhoFreedItAndWhen() {
        RCU.debugReclamation = true
        let device = GroupDevice()
        let retireLine: UInt = #line; RCU.retire(device, line: retireLine)
        RCU.barrier()
        let line: UInt = #line; device.assertLive(line: line)
        let found = rcuReports(.useAfterFree, line: line)
        #expect(found.count == 1)
        let text = found.first?.text ?? ""
        #expect(text.contains("GroupDevice"))
        #expect(text.contains("retired at \(#fileID):\(retireLine)"))
        #expect(text.contains("freed by rcu-reclaimer"))
        #expect(text.contains("after grace period #"))
    }

    @Test func retiringAnObjectTwiceIsReported() {
        RCU.debugReclamation = true
        let device = GroupDevice()
        RCU.retire(device)
        let line: UInt = #line; RCU.retire(device, line: line)
        RCU.barrier()
        #expect(rcuReports(.doubleRetire, line: line).count == 1)
    }

    @Test func aUseAfterFreeKillsTheProcessInAbortMode() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            Lockdep.mode = .abort
            RCU.debugReclamation = true
            let device = GroupDevice()
            RCU.retire(device)
            RCU.barrier()
            device.assertLive()
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("BUG: RCU use-after-free of GroupDevice"))
    }
}
