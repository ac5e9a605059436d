import Testing
@testable import KernelSync

/// A placement for the pure state machine: a queue is a plain number.
struct QueueNumber: WorkPlacement, Equatable, ExpressibleByIntegerLiteral {
    let number: Int
    init(integerLiteral number: Int) { self.number = number }
    func isSame(as other: QueueNumber) -> Bool { self == other }
}

/// The pure state machine, without threads or queues; placements are queue numbers.
@Suite struct WorkqueueItemStateTests {
    typealias State = WorkItemState<QueueNumber>

    @Test func queueingAPendingItemIsRefused() {
        var state = State()
        guard case .enqueue = state.queue(placement: 1) else { Issue.record("first queue refused"); return }
        guard case .refuse(.alreadyPending) = state.queue(placement: 1) else {
            Issue.record("second queue accepted: \(state)"); return
        }
    }

    @Test func aRunningItemCanBeQueuedAgainOnItsQueueAndTheClaimIsHandedToItsRunner() {
        var state = State()
        guard case .enqueue(let first) = state.queue(placement: 1),
              case .run = state.claim(sequence: first.sequence, runner: 10, ticket: 0),
              case .enqueue(let second) = state.queue(placement: 1)
        else { Issue.record("setup failed: \(state)"); return }
        #expect(state.isPending && state.isRunning)
        guard case .handOff = state.claim(sequence: second.sequence, runner: 20, ticket: 7) else {
            Issue.record("a second worker was allowed to run it: \(state)"); return
        }
        guard case .runNext(let retired, let next) = state.finish(runner: 10) else {
            Issue.record("the runner did not get the handed-off instance: \(state)"); return
        }
        #expect(retired.instance.sequence == first.sequence && retired.ticket == 0)
        #expect(next.sequence == second.sequence)
        #expect(state.isRunning(on: 10))
        guard case .idle(let last) = state.finish(runner: 10) else { Issue.record("\(state)"); return }
        #expect(last.ticket == 7 && state.isIdle)
    }

    @Test func aClaimOnAnotherQueueWaitsUntilTheRunEndsAndThenRunsOnTheClaimingWorker() {
        var state = State()
        guard case .enqueue(let first) = state.queue(placement: 1),
              case .run = state.claim(sequence: first.sequence, runner: 10, ticket: 0),
              case .enqueue(let second) = state.queue(placement: 2)
        else { Issue.record("setup failed: \(state)"); return }
        guard case .waitForRunningElsewhere = state.claim(sequence: second.sequence, runner: 20, ticket: 7) else {
            Issue.record("the claim on queue 2 did not wait for the run on queue 1: \(state)"); return
        }
        #expect(state.isPending && !state.description.contains("handed off"))
        guard case .idle(let retired) = state.finish(runner: 10) else {
            Issue.record("the run on queue 1 took queue 2's instance: \(state)"); return
        }
        #expect(retired.instance.sequence == first.sequence)
        guard case .run(let instance) = state.claim(sequence: second.sequence, runner: 20, ticket: 7) else {
            Issue.record("the claim again after the run ended did not run: \(state)"); return
        }
        #expect(instance.placement == 2 && state.isRunning(on: 20) && !state.isPending)
        guard case .idle(let last) = state.finish(runner: 20) else { Issue.record("\(state)"); return }
        #expect(last.ticket == 7 && state.isIdle)
    }

    @Test func aClaimWaitingForARunElsewhereIsStaleOnceCancelled() {
        var state = State()
        guard case .enqueue(let first) = state.queue(placement: 1),
              case .run = state.claim(sequence: first.sequence, runner: 10, ticket: 0),
              case .enqueue(let second) = state.queue(placement: 2),
              case .waitForRunningElsewhere = state.claim(sequence: second.sequence, runner: 20, ticket: 7)
        else { Issue.record("setup failed: \(state)"); return }
        let withdrawal = state.cancel()
        #expect(withdrawal?.instance.sequence == second.sequence && withdrawal?.handOffTicket == nil)
        _ = state.finish(runner: 10)
        guard case .stale = state.claim(sequence: second.sequence, runner: 20, ticket: 7) else {
            Issue.record("a cancelled instance ran: \(state)"); return
        }
    }

    @Test func aWithdrawnInstanceIsStaleWhenAWorkerTakesIt() {
        var state = State()
        guard case .enqueue(let instance) = state.queue(placement: 1) else { return }
        #expect(state.cancel()?.instance.sequence == instance.sequence)
        guard case .stale = state.claim(sequence: instance.sequence, runner: 1, ticket: 0) else {
            Issue.record("withdrawn instance ran: \(state)"); return
        }
    }

    @Test func cancelSyncRefusesQueueingUntilItEnds() {
        var state = State()
        #expect(state.beginCancelSync() == nil)
        guard case .refuse(.cancelling) = state.queue(placement: 1) else { Issue.record("\(state)"); return }
        state.endCancelSync()
        guard case .enqueue = state.queue(placement: 1) else { Issue.record("\(state)"); return }
    }

    @Test func disableNestsAndEnableCountsDown() {
        var state = State()
        _ = state.queue(placement: 1)
        #expect(state.disable() != nil)
        #expect(state.disable() == nil)
        guard case .refuse(.disabled(count: 2)) = state.queue(placement: 1) else { Issue.record("\(state)"); return }
        #expect(state.enable() == .stillDisabled(count: 1))
        #expect(state.enable() == .enabled)
        #expect(state.enable() == .unbalanced)
        guard case .enqueue = state.queue(placement: 1) else { Issue.record("\(state)"); return }
    }

    @Test func modifyReplacesThePendingInstance() {
        var state = State()
        guard case .enqueue(let old) = state.queue(placement: 1),
              case .replace(let withdrawn, let new) = state.modify(placement: 2)
        else { Issue.record("\(state)"); return }
        #expect(withdrawn.instance.sequence == old.sequence && new.placement == 2)
        guard case .stale = state.claim(sequence: old.sequence, runner: 1, ticket: 0) else { Issue.record("\(state)"); return }
    }

    @Test func flushTargetsTheLastQueuedInstance() {
        var state = State()
        #expect(state.flushTarget == nil)
        guard case .enqueue(let first) = state.queue(placement: 1),
              case .run = state.claim(sequence: first.sequence, runner: 1, ticket: 0),
              case .enqueue(let second) = state.queue(placement: 1)
        else { Issue.record("\(state)"); return }
        #expect(state.flushTarget == second.sequence)
        #expect(!state.hasFinished(through: second.sequence))
        _ = state.finish(runner: 1)
        #expect(!state.hasFinished(through: second.sequence))
        _ = state.cancel()
        #expect(state.hasFinished(through: second.sequence))
    }

    @Test func finishingAnItemThatIsNotRunningStopsWithTheState() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var state = WorkItemState<QueueNumber>()
            _ = state.disable()
            _ = state.finish(runner: 1)
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("which is not running it; state: disabled ×1"))
    }
}
