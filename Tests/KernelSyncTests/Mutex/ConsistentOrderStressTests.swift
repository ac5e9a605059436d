import Testing
import KernelSync

/// Many threads, many locks, one order: the validator must stay silent and the locks must exclude.
@Suite struct ConsistentOrderStressTests {
    @Test func eightThreadsSixteenMutexesOneOrderProduceNoReport() {
        let lockClasses = (0..<16).map { LockClass(name: "ordered16_\($0)") }
        let locks = lockClasses.map { KernelMutex(class: $0) }
        let perThread = 100_000
        KernelThread.runAll(count: 8, name: "ordered") { thread in
            var generator = SplitMix64(seed: UInt64(thread))
            var done = 0
            while done < perThread {
                // A random run of consecutive locks, taken in index order (136 distinct sequences, so
                // repeats hit the chain cache, as a real program's do).
                let first = Int(generator.next() % 16)
                let chosen = first..<(first + 1 + Int(generator.next() % UInt64(16 - first)))
                for index in chosen { locks[index].lock() }
                for index in chosen.reversed() { locks[index].unlock() }
                done += chosen.count
            }
        }
        for lockClass in lockClasses {
            #expect(Lockdep.reports(involving: lockClass).isEmpty)
        }
    }
}
