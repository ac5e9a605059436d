import Foundation
import IOMMUModel
import KernelSync
import Synchronization

/// The plain-Swift peers of DESIGN.md's benchmark workload: a group is an array of group_devices under
/// one lock, a removal drops the last reference (ARC frees it), and readers take the lock, because
/// without RCU nothing else keeps a device they look at alive. The free step does what the variant's
/// does to the group_device's work item, as the C peer does: a cancel clears its pending bit, a disable
/// sets its disabled bit (nothing is ever queued in this workload).
enum LockedPeerWorkload {
    /// A device, as in the model: a name, and the group it is bound to.
    final class PeerDevice: @unchecked Sendable {
        let name: String
        /// Guarded by: the bound group's lock.
        var group: AnyObject?
        init(name: String) { self.name = name }
    }

    /// A domain; the empty-group check compares identities.
    final class PeerDomain: Sendable {}

    /// A group_device: a fresh name per probe, its device, its domain, its work item's state word.
    final class PeerGroupDevice: @unchecked Sendable {
        let device: PeerDevice
        let name: String
        /// Guarded by: the group's lock.
        var attachedDomain: PeerDomain?
        /// The work item, as the C peer's `work_state`: pending and disabled bits.
        let workState = Atomic<Int>(0)
        static let workPending = 1
        static let workDisabled = 2

        init(device: PeerDevice, name: String) {
            self.device = device
            self.name = name
        }

        /// The free step's work-item call in `variant`'s shape (`__iommu_group_free_device`): cancel
        /// (freeUnderMutex, under the lock; deferredCancel) or disable (the two disabling variants).
        func finishWork(_ variant: RemoveVariant) {
            switch variant {
            case .freeUnderMutex, .deferredCancel:
                workState.bitwiseAnd(~Self.workPending, ordering: .sequentiallyConsistent)
            case .deferredDisable, .deferredDisableRCU:
                workState.bitwiseOr(Self.workDisabled, ordering: .sequentiallyConsistent)
            }
        }
    }

    /// A group's state: everything its lock guards.
    struct GroupState {
        var devices: [PeerGroupDevice] = []
        var ownerCount = 0
        let defaultDomain = PeerDomain()
        var domain: PeerDomain?
        init() { domain = defaultDomain }
    }

    /// Runs `cycles` probe+remove cycles over `threads` threads and `groups` groups of `Group`, freeing in
    /// `variant`'s shape (nil: no work-item step, for the two locks compared alone), with
    /// `readers` threads walking the lists under the lock until the cycles are done. Timed like
    /// ``IOMMUModel/IOMMUWorkload``: from before the writers start to after they are joined.
    /// Runs `cycles` cycles in all, or fewer if `timeLimit` passes first (each writer checks the clock
    /// every 64 cycles): at more writers than cores a lock can fall into a convoy where a run sized from
    /// its warm-up takes a hundred times longer. The sample counts the cycles done.
    static func run<Group: LockedGroup>(
        _: Group.Type, variant: RemoveVariant?, threads: Int, groups: Int, cycles: Int, readers: Int,
        timeLimit: Duration = .seconds(5)
    ) -> Sample {
        let groupList = (0..<groups).map { _ in Group() }
        let stop = Atomic<Bool>(false)
        let readerPasses = Atomic<Int>(0)
        let readerThreads = (0..<readers).map { index in
            KernelThread(name: "peer-reader/\(index)") {
                var passes = 0
                var visited = 0
                while !stop.load(ordering: .relaxed) {
                    visited &+= groupList[passes % groupList.count].walk()
                    passes += 1
                }
                readerPasses.add(passes, ordering: .relaxed)
                blackHole(visited)
            }
        }
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + timeLimit
        let done = Atomic<Int>(0)
        KernelThread.runAll(count: threads, name: "peer-cycle") { thread in
            let share = cycles / threads + (thread < cycles % threads ? 1 : 0)
            let device = PeerDevice(name: "bench\(thread)")
            var cycle = 0
            while cycle < share {
                let group = groupList[(thread + cycle) % groupList.count]
                group.add(PeerGroupDevice(device: device, name: "\(device.name)"), for: device)
                let removed = group.remove(device, variant: variant)
                precondition(removed, "\(Group.self): bench\(thread) was not on its group's list")
                cycle += 1
                if cycle % 64 == 0 && clock.now >= deadline { break }
            }
            done.add(cycle, ordering: .relaxed)
        }
        let elapsed = clock.now - start
        stop.store(true, ordering: .relaxed)
        for reader in readerThreads { reader.join() }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Sample(cycles: done.load(ordering: .relaxed), seconds: seconds, readerPasses: readerPasses.load(ordering: .relaxed))
    }
}

/// A group of a plain-Swift peer: its state behind one lock.
protocol LockedGroup: AnyObject, Sendable {
    init()
    /// Runs `body` on the state with the lock held.
    func withState<Result: Sendable>(_ body: (inout LockedPeerWorkload.GroupState) -> Result) -> Result
}

extension LockedGroup {
    /// The probe step: the group_device goes on the list, the device binds to the group.
    func add(_ gdev: LockedPeerWorkload.PeerGroupDevice, for device: LockedPeerWorkload.PeerDevice) {
        withState { state in
            device.group = self
            state.devices.append(gdev)
            gdev.attachedDomain = state.domain
        }
    }

    /// The remove step: unlink, the empty-group check, unbind; then the free: the work item's cancel or
    /// disable (freeUnderMutex's under the lock; none without a variant), and the group_device's last
    /// reference goes when this returns. Returns whether the device was listed.
    func remove(_ device: LockedPeerWorkload.PeerDevice, variant: RemoveVariant?) -> Bool {
        let removed: LockedPeerWorkload.PeerGroupDevice? = withState { state in
            guard let index = state.devices.firstIndex(where: { $0.device === device }) else { return nil }
            let gdev = state.devices.remove(at: index)
            if state.devices.isEmpty && (state.ownerCount != 0 || state.domain !== state.defaultDomain) {
                preconditionFailure("empty group still owned or not in its default domain")
            }
            device.group = nil
            if let variant, variant.freesUnderMutex { gdev.finishWork(variant) }
            return gdev
        }
        guard let removed else { return false }
        if let variant, !variant.freesUnderMutex { removed.finishWork(variant) }
        return true
    }

    /// The reader: walks the list under the lock and reads each name. Returns the devices seen.
    func walk() -> Int {
        withState { state in
            var seen = 0
            for gdev in state.devices where !gdev.name.isEmpty { seen += 1 }
            return seen
        }
    }
}

/// Foundation's `NSLock` and a stored state.
final class NSLockGroup: LockedGroup, @unchecked Sendable {
    private let lock = NSLock()
    /// Guarded by: lock.
    private var state = LockedPeerWorkload.GroupState()

    func withState<Result: Sendable>(_ body: (inout LockedPeerWorkload.GroupState) -> Result) -> Result {
        lock.lock()
        defer { lock.unlock() }
        return body(&state)
    }
}

/// The standard library's `Synchronization.Mutex` around the state.
final class MutexGroup: LockedGroup {
    private let state = Mutex(LockedPeerWorkload.GroupState())

    func withState<Result: Sendable>(_ body: (inout LockedPeerWorkload.GroupState) -> Result) -> Result {
        state.withLock { body(&$0) }
    }
}

/// Keeps a value alive as far as the optimiser is concerned.
@inline(never)
func blackHole<T>(_ value: T) {}
