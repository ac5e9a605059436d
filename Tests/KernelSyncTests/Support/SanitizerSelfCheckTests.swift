import Glibc
import Synchronization
import Testing
import KernelSync

/// A deliberate data race, run only by scripts/test-tsan.sh with KSYNC_TSAN_SELF_CHECK=1, to show that
/// the script really fails when ThreadSanitizer finds a race (a check that never caught a bug proves
/// nothing).
@Suite struct SanitizerSelfCheckTests {
    final class Unguarded: @unchecked Sendable {
        /// Guarded by: nothing, on purpose.
        var value = 0
        /// Both racers arrive before either writes, so their writes overlap in time.
        /// Ordering: relaxed on purpose: it must not give ThreadSanitizer a happens-before edge.
        let arrived = Atomic<Int>(0)
    }

    @Test(.enabled(if: getenv("KSYNC_TSAN_SELF_CHECK") != nil))
    func deliberateDataRaceForSanitizerSelfCheck() {
        let shared = Unguarded()
        KernelThread.runAll(count: 2, name: "racer") { _ in
            shared.arrived.wrappingAdd(1, ordering: .relaxed)
            while shared.arrived.load(ordering: .relaxed) < 2 {}
            for _ in 0..<100_000 { shared.value += 1 }
        }
        #expect(shared.value > 0)
    }
}
