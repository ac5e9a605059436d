import Histogram

/// What one timed run did.
struct Sample: Sendable, Equatable {
    /// Probe+remove cycles, all writer threads together.
    let cycles: Int
    /// Wall-clock seconds of the cycles.
    let seconds: Double
    /// List walks the readers completed (the mixed run).
    let readerPasses: Int

    var cyclesPerSecond: Double { seconds > 0 ? Double(cycles) / seconds : 0 }
    var readerPassesPerSecond: Double { seconds > 0 ? Double(readerPasses) / seconds : 0 }
}

/// The median of a few repetitions and how far they spread.
struct Summary: Codable, Sendable, Equatable {
    let median: Double
    let minimum: Double
    let maximum: Double
    let values: [Double]

    /// (maximum − minimum) / median, in percent: how much to trust the median.
    var spreadPercent: Double { median > 0 ? (maximum - minimum) / median * 100 : 0 }

    init(_ values: [Double]) {
        precondition(!values.isEmpty, "Summary of no values")
        let sorted = values.sorted()
        let middle = sorted.count / 2
        median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
        minimum = sorted[0]
        maximum = sorted[sorted.count - 1]
        self.values = values
    }
}

/// Percentiles of the group mutex's hold time, from an HdrHistogram of individual holds.
struct HoldTimes: Codable, Sendable, Equatable {
    let p50Nanoseconds: UInt64
    let p99Nanoseconds: UInt64
    let maxNanoseconds: UInt64
    let samples: Int

    /// Nil when there is nothing to summarise.
    init?(nanoseconds: [UInt64]) {
        guard !nanoseconds.isEmpty else { return nil }
        // Three significant digits over 1 ns … 10 s; a longer hold is clamped to the top.
        var histogram = Histogram<UInt64>(highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three)
        for value in nanoseconds { _ = histogram.record(min(max(value, 1), 10_000_000_000)) }
        p50Nanoseconds = histogram.valueAtPercentile(50)
        p99Nanoseconds = histogram.valueAtPercentile(99)
        maxNanoseconds = histogram.max
        samples = nanoseconds.count
    }
}
