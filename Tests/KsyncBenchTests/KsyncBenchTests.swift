import IOMMUModel
import Testing
@testable import ksync_bench

/// The runner's pure parts: option lists, the plan, the statistics and the renderings. Nothing timed.
struct OptionListTests {
    @Test func aCommaSeparatedListParsesEachElement() throws {
        #expect(try parseList("1, 2,4", option: "--threads", positiveInteger) == [1, 2, 4])
        #expect(try parseList("deferredCancel", option: "--variants") { RemoveVariant(rawValue: $0) } == [.deferredCancel])
    }

    @Test(arguments: ["", "1,,2", "0", "two", "-1"])
    func anEmptyOrInvalidElementIsRejectedNamingTheOption(text: String) {
        let error = #expect(throws: ListError.self) { try parseList(text, option: "--threads", positiveInteger) }
        #expect(error?.message.hasPrefix("--threads:") == true)
    }
}

struct PlanTests {
    func plan(withLiburcu: Bool) -> BenchPlan {
        BenchPlan(sections: Section.allCases, variants: [.deferredCancel, .deferredDisable], threads: [1, 2], groups: [4],
                  mixedWriters: 1, mixedReaders: 1, mixedGroups: 4, validatorThreads: [1], withLiburcu: withLiburcu)
    }

    @Test func everyVariantThreadAndGroupCountIsAlternatedWithTheCPeerThenTheLockPeersFollow() {
        let throughput = plan(withLiburcu: true).jobs.filter { $0.section == .throughput }
        #expect(throughput.map(\.variant) == [.deferredCancel, .deferredCancel, .deferredDisable, .deferredDisable, nil, nil])
        #expect(throughput[0].implementations == [.kernelSync, .liburcu])
        #expect(throughput[4].implementations == [.nsLock, .mutex])
    }

    @Test func withoutTheCPeerItsRunsAreLeftOut() {
        let jobs = plan(withLiburcu: false).jobs
        #expect(!jobs.contains { $0.implementations.contains(.liburcu) })
        #expect(jobs.filter { $0.section == .mixed }.allSatisfy { $0.implementations == [.kernelSync, .nsLock, .mutex] && $0.readers == 1 })
        #expect(jobs.filter { $0.section == .validator }.count == 2)
    }
}

struct StatisticsTests {
    @Test func theMedianOfAnEvenCountIsTheMeanOfTheMiddleTwo() {
        let summary = Summary([4, 1, 3, 2])
        #expect(summary.median == 2.5 && summary.minimum == 1 && summary.maximum == 4)
        #expect(summary.spreadPercent == 120)
        #expect(Summary([5, 1, 3]).median == 3)
    }

    @Test func holdPercentilesComeFromTheHistogramWithinItsPrecision() throws {
        let holds = try #require(HoldTimes(nanoseconds: (1...1_000).map { UInt64($0) }))
        #expect((499...501).contains(holds.p50Nanoseconds))
        #expect((989...991).contains(holds.p99Nanoseconds))
        #expect(holds.samples == 1_000)
        #expect(HoldTimes(nanoseconds: []) == nil)
    }

    @Test func ratiosAreTakenPairByPairAndCarryTheIssuesTargets() {
        let job = Job(section: .throughput, variant: .deferredDisable, threads: 2, groups: 4, readers: 0,
                      implementations: [.kernelSync, .liburcu])
        let ratios = Ratio.pairwise(job: job, samples: [
            .kernelSync: [Sample(cycles: 300, seconds: 1, readerPasses: 0), Sample(cycles: 100, seconds: 1, readerPasses: 0)],
            .liburcu: [Sample(cycles: 100, seconds: 1, readerPasses: 0), Sample(cycles: 100, seconds: 2, readerPasses: 0)],
        ])
        #expect(ratios.count == 1)
        #expect(ratios[0].ratio.values == [3, 2])
        #expect(ratios[0].target == Target(bound: 2, atMost: false))
        #expect(ratios[0].targetMet == true)
        #expect(Ratio.target(section: .throughput, variant: "deferredCancel", threads: 4, metric: .cyclesPerSecond,
                             numerator: .kernelSync, denominator: .liburcu) == nil)
        #expect(Ratio.target(section: .mixed, variant: "deferredCancel", threads: 1, metric: .readerPassesPerSecond,
                             numerator: .kernelSync, denominator: .mutex) == Target(bound: 3, atMost: false))
    }
}

struct FormatTests {
    @Test func ratiosPrintWithTwoDecimals() {
        #expect(String(format2: 3.14159) == "3.14")
        #expect(String(format2: 2) == "2.00")
        #expect(String(format2: -0.5) == "-0.50")
    }

    @Test func aTablePadsEachColumnToItsWidestCell() {
        let text = ReportFormat.table(header: ["variant", "n"], rows: [["a", "100"], ["longer", "2"]])
        #expect(text == """
            variant    n
            -------  ---
            a        100
            longer     2

            """)
    }

    @Test func aCSVRowHoldsTheMediansAndTheHoldPercentiles() throws {
        let row = ResultRow(
            section: .throughput, variant: "freeUnderMutex", implementation: .kernelSync, threads: 2, groups: 4,
            readers: 0, cycles: 1_000, cyclesPerSecond: Summary([2_000_000, 1_000_000, 3_000_000]),
            readerPassesPerSecond: nil, groupMutexHold: try #require(HoldTimes(nanoseconds: [100, 100, 100])))
        let lines = ReportFormat.csv([row]).split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[1] == "throughput,freeUnderMutex,KernelSync,2,4,0,1000,2000000,1000000,3000000,,100,100,100")
    }
}

/// The plain-Swift peers' workload: it does the cycles it is asked for, and stops at its time limit.
///
/// Both run the NSLock peer: `Synchronization.Mutex` locks with atomics inside the uninstrumented
/// standard library, which ThreadSanitizer cannot see, so under `scripts/test-tsan.sh` every access its
/// lock serialises would be reported as a race.
struct LockedPeerWorkloadTests {
    @Test func aRunDoesEveryCycleItIsAskedForWithinItsLimit() {
        let sample = LockedPeerWorkload.run(NSLockGroup.self, variant: .deferredCancel, threads: 2, groups: 4, cycles: 1_000, readers: 1)
        #expect(sample.cycles == 1_000)
    }

    @Test func aRunThatWouldOutlastItsTimeLimitStopsThereAndCountsTheCyclesItDid() {
        let clock = ContinuousClock()
        let start = clock.now
        // Far more cycles than a few milliseconds allow.
        let sample = LockedPeerWorkload.run(
            NSLockGroup.self, variant: .deferredDisableRCU, threads: 2, groups: 1, cycles: 1_000_000_000, readers: 0, timeLimit: .milliseconds(20))
        #expect(clock.now - start < .seconds(5))
        #expect(sample.cycles > 0 && sample.cycles < 1_000_000_000)
    }
}
