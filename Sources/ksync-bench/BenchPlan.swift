import Foundation
import IOMMUModel

/// What a measured run ran: KernelSync's model or one of its peers.
enum Implementation: String, Codable, Sendable, CaseIterable {
    /// The IOMMU model on KernelSync (``IOMMUWorkload``), validator off.
    case kernelSync = "KernelSync"
    /// The same, validator on.
    case kernelSyncValidator = "KernelSync+validator"
    /// C with a pthread mutex and liburcu (urcu-memb), in the variant's shape (scripts/peers/remove_peer.c).
    case liburcu = "C+liburcu"
    /// Plain Swift, Foundation `NSLock` and ARC; readers take the lock.
    case nsLock = "NSLock+ARC"
    /// Plain Swift, `Synchronization.Mutex` and ARC; readers take the lock.
    case mutex = "Mutex+ARC"
}

/// The parts of a run: the throughput matrix, the mixed run with readers, the validator's cost.
enum Section: String, Codable, Sendable, CaseIterable {
    case throughput, mixed, validator
}

/// One configuration: the implementations that are alternated on it (A B A B …), and what they share.
struct Job: Sendable, Equatable {
    let section: Section
    /// The remove-path variant; nil for the throughput comparison of the two lock peers alone, which
    /// then leave out the variant's work-item step.
    let variant: RemoveVariant?
    /// Writer threads doing cycles.
    let threads: Int
    let groups: Int
    /// Reader threads walking the device lists while the writers run.
    let readers: Int
    let implementations: [Implementation]

    var title: String {
        let name = variant?.rawValue ?? implementations.map(\.rawValue).joined(separator: " vs ")
        return "\(section.rawValue) \(name) threads=\(threads) groups=\(groups)" + (readers > 0 ? " readers=\(readers)" : "")
    }
}

/// The configurations a command line asks for, in the order they run.
struct BenchPlan: Sendable, Equatable {
    var sections: [Section]
    var variants: [RemoveVariant]
    var threads: [Int]
    var groups: [Int]
    /// Writers, readers and groups of the mixed run.
    var mixedWriters: Int
    var mixedReaders: Int
    var mixedGroups: Int
    /// Writer threads of the validator on/off comparison (over `mixedGroups` groups).
    var validatorThreads: [Int]
    /// Whether the C peer is available.
    var withLiburcu: Bool

    var jobs: [Job] {
        var jobs: [Job] = []
        let kernelAndC: [Implementation] = withLiburcu ? [.kernelSync, .liburcu] : [.kernelSync]
        if sections.contains(.throughput) {
            for variant in variants {
                for groups in groups {
                    for threads in threads {
                        jobs.append(Job(section: .throughput, variant: variant, threads: threads, groups: groups,
                                        readers: 0, implementations: kernelAndC))
                    }
                }
            }
            for groups in groups {
                for threads in threads {
                    jobs.append(Job(section: .throughput, variant: nil, threads: threads, groups: groups,
                                    readers: 0, implementations: [.nsLock, .mutex]))
                }
            }
        }
        if sections.contains(.mixed) {
            for variant in variants {
                jobs.append(Job(section: .mixed, variant: variant, threads: mixedWriters, groups: mixedGroups,
                                readers: mixedReaders, implementations: [.kernelSync, .nsLock, .mutex] + (withLiburcu ? [.liburcu] : [])))
            }
        }
        if sections.contains(.validator) {
            for variant in variants {
                for threads in validatorThreads {
                    jobs.append(Job(section: .validator, variant: variant, threads: threads, groups: mixedGroups,
                                    readers: 0, implementations: [.kernelSync, .kernelSyncValidator]))
                }
            }
        }
        return jobs
    }
}

/// Parses a comma-separated list ("1,2,4"), each element with `element`; names the option in the error.
func parseList<Element>(_ text: String, option: String, _ element: (String) -> Element?) throws(ListError) -> [Element] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map {
        $0.trimmingCharacters(in: .whitespaces)
    }
    guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else {
        throw ListError(message: "\(option): expected a comma-separated list, got \"\(text)\"")
    }
    return try parts.map { part throws(ListError) in
        guard let value = element(part) else { throw ListError(message: "\(option): \"\(part)\" is not valid") }
        return value
    }
}

/// A positive whole number, or nil.
func positiveInteger(_ text: String) -> Int? {
    guard let value = Int(text), value >= 1 else { return nil }
    return value
}

/// What is wrong with a list option.
struct ListError: Error, Equatable, CustomStringConvertible {
    let message: String
    var description: String { message }
}
