/// The lock-order graph: an edge `a → b` means "a lock of class b was taken while one of class a was
/// held", with where that was first seen.
///
/// Not thread-safe by itself. Context: every call holds the validator's graph lock.
struct DependencyGraph {
    /// Where an edge was first recorded.
    struct EdgeRecord {
        /// Where the earlier lock (the edge's source) was acquired.
        let heldSite: String
        /// Where the later lock (the edge's target) was acquired.
        let acquiredSite: String
        let thread: String
    }

    private var successors: [Int: [Int]] = [:]
    private var records: [Edge: EdgeRecord] = [:]

    struct Edge: Hashable {
        let from: Int
        let to: Int
    }

    var edgeCount: Int { records.count }

    func contains(_ edge: Edge) -> Bool { records[edge] != nil }

    func record(of edge: Edge) -> EdgeRecord? { records[edge] }

    mutating func add(_ edge: Edge, _ record: EdgeRecord) {
        guard records[edge] == nil else { return }
        records[edge] = record
        successors[edge.from, default: []].append(edge.to)
    }

    /// A shortest path `start ⇝ goal` as its list of nodes (both ends included), or nil.
    /// Breadth-first, so cycles of any length are found and the reported chain is the shortest one.
    func path(from start: Int, to goal: Int) -> [Int]? {
        if start == goal { return [start] }
        var parent: [Int: Int] = [start: start]
        var frontier = [start]
        while !frontier.isEmpty {
            var next: [Int] = []
            for node in frontier {
                for successor in successors[node] ?? [] where parent[successor] == nil {
                    parent[successor] = node
                    if successor == goal {
                        var path = [goal]
                        var current = goal
                        while current != start {
                            current = parent[current]!
                            path.append(current)
                        }
                        return path.reversed()
                    }
                    next.append(successor)
                }
            }
            frontier = next
        }
        return nil
    }
}
