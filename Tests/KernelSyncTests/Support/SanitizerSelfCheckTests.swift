import Glibc
import Testing
import KernelSync

/// A deliberate data race, run only by scripts/test-tsan.sh with KSYNC_TSAN_SELF_CHECK=1, to show that
/// the script really fails when ThreadSanitizer finds a race (a check that never caught a bug proves
/// nothing).
@Suite struct SanitizerSelfCheckTests {
    final class Unguarded: @unchecked Sendable {
        /// Guarded by: nothing, on purpose.
        var value = 0
    }

    @Test(.enabled(if: getenv("KSYNC_TSAN_SELF_CHECK") != nil))
    func deliberateDataRaceForSanitizerSelfCheck() {
        let shared = Unguarded()
        KernelThread.runAll(count: 2, name: "racer") { _ in
            for _ in 0..<1_000 { shared.value += 1 }
        }
        #expect(shared.value > 0)
    }
}
