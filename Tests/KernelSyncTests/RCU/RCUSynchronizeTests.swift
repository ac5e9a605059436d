import Glibc
@testable import KernelSync
import Synchronization
import Testing

@Suite struct RCUSynchronizeTests {
    @Test func synchronizeWaitsForAReaderThatBeganBeforeIt() {
        let inSection = Flag(), release = Flag(), readerLeft = Flag(), synchronized = Flag()
        let reader = KernelThread(name: "rcu-test-early-reader") {
            RCU.readLock()
            inSection.raise()
            while !release.isRaised { usleep(100) }
            readerLeft.raise()
            RCU.readUnlock()
        }
        #expect(eventually { inSection.isRaised })
        let writer = KernelThread(name: "rcu-test-synchronize") {
            RCU.synchronize()
            #expect(readerLeft.isRaised)
            synchronized.raise()
        }
        usleep(50_000)
        #expect(!synchronized.isRaised)
        release.raise()
        writer.join()
        reader.join()
        #expect(synchronized.isRaised)
    }

    @Test func synchronizeDoesNotWaitForAReaderThatBeganAfterItsGracePeriodFlipped() {
        let cookie = RCU.snapshot()
        let synchronized = Flag()
        let writer = KernelThread(name: "rcu-test-synchronize") {
            RCU.synchronize(until: cookie)
            synchronized.raise()
        }
        #expect(eventually { GracePeriodEngine.shared.flippedSequence.load(ordering: .acquiring) >= cookie.target - 1 })
        RCU.readLock()
        #expect(eventually { synchronized.isRaised })
        RCU.readUnlock()
        writer.join()
    }

    @Test func concurrentCallersShareAGracePeriod() {
        let inSection = Flag(), release = Flag()
        let arrived = Atomic<Int>(0)
        let leaders = Recorder<Int>()
        let reader = KernelThread(name: "rcu-test-blocking-reader") {
            RCU.readLock()
            inSection.raise()
            while !release.isRaised { usleep(100) }
            RCU.readUnlock()
        }
        #expect(eventually { inSection.isRaised })
        let callers = (0..<8).map { index in
            KernelThread(name: "rcu-test-synchronize/\(index)") {
                let target = GracePeriodEngine.snapshot()
                arrived.add(1, ordering: .relaxed)
                leaders.append(RCU.synchronizeCountingLeadership(until: target, file: #fileID, line: #line))
            }
        }
        #expect(eventually { arrived.load(ordering: .relaxed) == 8 })
        usleep(50_000)
        release.raise()
        for caller in callers { caller.join() }
        reader.join()
        // At most one grace period was already running (blocked by the reader); one more serves the rest.
        #expect(leaders.values.reduce(0, +) <= 2)
    }

    @Test func callersRacingToLeadNeverSleepThroughTheGracePeriodTheyWaitFor() {
        // Whoever loses the race to lead sleeps until the leader's grace period ends; a sleeper the
        // leader does not wake (a lost wake-up) would never return.
        let callers = 4
        let finished = Atomic<Int>(0)
        let threads = (0..<callers).map { index in
            KernelThread(name: "rcu-test-racing-synchronize/\(index)") {
                for _ in 0..<2_000 { RCU.synchronize() }
                finished.add(1, ordering: .relaxed)
            }
        }
        let returned = eventually { finished.load(ordering: .relaxed) == callers }
        #expect(returned, "a synchronize() caller still sleeps although no grace period is running")
        // Joining a sleeper that was never woken would hang the suite.
        if returned { for thread in threads { thread.join() } }
    }

    @Test func synchronizeInsideAReadSectionIsReportedAndReturns() {
        RCU.readLock()
        let line: UInt = #line; RCU.synchronize(line: line)
        RCU.readUnlock()
        let found = rcuReports(.illegalSynchronizeInReadSection, line: line)
        #expect(found.count == 1)
        #expect(found.first?.text.contains("Illegal synchronize_rcu() in RCU read-side critical section") == true)
    }

    @Test func synchronizeInAtomicContextIsReported() {
        let line: UInt = #line
        Lockdep.withAtomicContext { RCU.synchronize(line: line) }
        #expect(rcuReports(.sleepInAtomicContext, line: line).count == 1)
    }

    @Test func synchronizeInsideAReadSectionAbortsInAbortMode() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            Lockdep.mode = .abort
            RCU.readLock()
            RCU.synchronize()
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("Illegal synchronize_rcu() in RCU read-side critical section"))
    }

    @Test func aPolledGracePeriodElapsesOnlyAfterPreExistingReadersFinish() {
        let inSection = Flag(), release = Flag()
        let reader = KernelThread(name: "rcu-test-poll-reader") {
            RCU.readLock()
            inSection.raise()
            while !release.isRaised { usleep(100) }
            RCU.readUnlock()
        }
        #expect(eventually { inSection.isRaised })
        let cookie = RCU.startPoll()
        usleep(20_000)
        #expect(!RCU.poll(cookie))
        release.raise()
        reader.join()
        // startPoll made sure the grace period runs although nobody waits for it.
        #expect(eventually { RCU.poll(cookie) })
        #expect(RCU.snapshot() >= cookie)
    }

    @Test func readersUseFullFencesWhenMembarrierIsForcedOff() async {
        await #expect(processExitsWith: .success) {
            setenv("KSYNC_RCU_FORCE_FENCES", "1", 1)
            guard !RCU.usesMembarrier else { exit(2) }
            let inSection = Flag(), release = Flag(), synchronized = Flag()
            let reader = KernelThread(name: "rcu-test-fenced-reader") {
                RCU.readLock()
                inSection.raise()
                while !release.isRaised { usleep(100) }
                RCU.readUnlock()
            }
            while !inSection.isRaised { usleep(100) }
            let writer = KernelThread(name: "rcu-test-fenced-synchronize") {
                RCU.synchronize()
                synchronized.raise()
            }
            usleep(50_000)
            if synchronized.isRaised { exit(3) }
            release.raise()
            writer.join()
            reader.join()
            exit(synchronized.isRaised && RCUReaderRecord.current == nil ? 0 : 4)
        }
    }
}
