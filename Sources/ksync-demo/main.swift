// ksync-demo: the lock validator catching an ABBA inversion from a run that never deadlocks.
//
// Thread "forward" takes A then B and finishes; only then does thread "backward" take B then A. No two
// threads ever wait for each other, yet the order B → A contradicts the A → B recorded earlier, and the
// validator reports the possible deadlock with both orders and where each was seen.
import Glibc
import KernelSync

Lockdep.mode = .report
let lockA = KernelMutex(name: "demo_lock_A")
let lockB = KernelMutex(name: "demo_lock_B")

KernelThread(name: "forward") {
    lockA.withLock {
        lockB.withLock {}
    }
}.join()

KernelThread(name: "backward") {
    lockB.withLock {
        lockA.withLock {}
    }
}.join()

let found = Lockdep.reports.filter { $0.kind == .circularDependency }
print("ksync-demo: two threads ran one after the other and never waited for each other.")
print("ksync-demo: the validator found \(found.count) circular dependenc\(found.count == 1 ? "y" : "ies"): \(found.map(\.classes))")
exit(found.count == 1 ? 0 : 1)
