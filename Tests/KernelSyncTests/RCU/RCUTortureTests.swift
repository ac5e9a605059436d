import Glibc
@testable import KernelSync
import Testing

@Suite struct RCUTortureTests {
    @Test func tortureFindsNoTooShortGracePeriod() {
        let result = RCUTorture.run(.init(durationSeconds: 3))
        #expect(result.passed, "\(result)")
        #expect(result.writes > 0)
    }

    @Test func tortureCatchesGracePeriodsThatSkipTheWait() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let result = RCUTorture.run(.init(durationSeconds: 1, breakGracePeriods: true))
            writeToStandardError(result.description)
            exit(result.passed ? 0 : 1)
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("End of test: FAILURE"))
    }
}
