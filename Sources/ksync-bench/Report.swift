import Foundation

/// Everything a run measured, as written to JSON.
struct Report: Codable, Sendable {
    /// The command line that produced it.
    let command: String
    let date: String
    let repetitions: Int
    let rows: [ResultRow]
    let ratios: [Ratio]
}

/// Text, CSV and JSON renderings of a ``Report``. Pure: no clocks, no files.
enum ReportFormat {
    /// Columns padded to their widest cell: numbers (every cell starts with a digit) right-aligned,
    /// text left-aligned.
    static func table(header: [String], rows: [[String]]) -> String {
        let widths = header.indices.map { column in
            ([header] + rows).map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0
        }
        let numeric = header.indices.map { column in
            !rows.isEmpty && rows.allSatisfy { $0.indices.contains(column) && ($0[column].first?.isNumber ?? false) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { column, cell in
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                return numeric[column] ? pad + cell : cell + pad
            }.joined(separator: "  ")
        }
        let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")
        return ([line(header), rule] + rows.map(line)).joined(separator: "\n") + "\n"
    }

    /// Millions per second with two decimals and the spread: "3.21 M ±4%".
    static func rate(_ summary: Summary) -> String {
        String(format2: summary.median / 1e6) + " M ±" + "\(Int(summary.spreadPercent.rounded()))%"
    }

    /// The terminal tables: one per section, then the ratios against their targets.
    static func text(_ report: Report) -> String {
        var out = ""
        for section in Section.allCases {
            let rows = report.rows.filter { $0.section == section }
            guard !rows.isEmpty else { continue }
            out += "\n== \(section.rawValue) (median of \(report.repetitions) runs, ±: (max−min)/median)\n"
            let hasReaders = rows.contains { $0.readerPassesPerSecond != nil }
            let hasHolds = rows.contains { $0.groupMutexHold != nil }
            var header = ["variant", "implementation", "threads", "groups", "cycles/s"]
            if hasReaders { header += ["readers", "reader passes/s"] }
            if hasHolds { header += ["hold p50 ns", "hold p99 ns"] }
            out += table(header: header, rows: rows.map { row in
                var cells = [row.variant ?? "-", row.implementation.rawValue, "\(row.threads)", "\(row.groups)",
                             rate(row.cyclesPerSecond)]
                if hasReaders { cells += ["\(row.readers)", row.readerPassesPerSecond.map(rate) ?? "-"] }
                if hasHolds {
                    cells += [row.groupMutexHold.map { "\($0.p50Nanoseconds)" } ?? "-",
                              row.groupMutexHold.map { "\($0.p99Nanoseconds)" } ?? "-"]
                }
                return cells
            })
        }
        if !report.ratios.isEmpty {
            out += "\n== ratios, pair by pair (median [min … max])\n"
            out += table(
                header: ["section", "variant", "threads", "groups", "metric", "comparison", "ratio", "target", ""],
                rows: report.ratios.map { ratio in
                    [ratio.section.rawValue, ratio.variant ?? "-", "\(ratio.threads)", "\(ratio.groups)",
                     ratio.metric.rawValue, "\(ratio.numerator.rawValue) / \(ratio.denominator.rawValue)",
                     String(format2: ratio.ratio.median) + "x [" + String(format2: ratio.ratio.minimum) + " … "
                        + String(format2: ratio.ratio.maximum) + "]",
                     ratio.target?.description ?? "",
                     ratio.targetMet.map { $0 ? "met" : "MISSED" } ?? ""]
                })
        }
        return out
    }

    /// One line per row.
    static func csv(_ rows: [ResultRow]) -> String {
        let header = "section,variant,implementation,threads,groups,readers,cycles,cycles_per_second_median,"
            + "cycles_per_second_min,cycles_per_second_max,reader_passes_per_second_median,"
            + "hold_p50_ns,hold_p99_ns,hold_max_ns\n"
        return header + rows.map { row in
            [row.section.rawValue, row.variant ?? "", row.implementation.rawValue, "\(row.threads)", "\(row.groups)",
             "\(row.readers)", "\(row.cycles)", number(row.cyclesPerSecond.median),
             number(row.cyclesPerSecond.minimum), number(row.cyclesPerSecond.maximum),
             row.readerPassesPerSecond.map { number($0.median) } ?? "",
             row.groupMutexHold.map { "\($0.p50Nanoseconds)" } ?? "",
             row.groupMutexHold.map { "\($0.p99Nanoseconds)" } ?? "",
             row.groupMutexHold.map { "\($0.maxNanoseconds)" } ?? ""].joined(separator: ",") + "\n"
        }.joined()
    }

    /// One line per ratio.
    static func ratiosCSV(_ ratios: [Ratio]) -> String {
        "section,variant,threads,groups,readers,metric,numerator,denominator,ratio_median,ratio_min,ratio_max,target,met\n"
            + ratios.map { ratio in
                [ratio.section.rawValue, ratio.variant ?? "", "\(ratio.threads)", "\(ratio.groups)", "\(ratio.readers)",
                 ratio.metric.rawValue, ratio.numerator.rawValue, ratio.denominator.rawValue,
                 String(format2: ratio.ratio.median), String(format2: ratio.ratio.minimum),
                 String(format2: ratio.ratio.maximum), ratio.target?.description ?? "",
                 ratio.targetMet.map { $0 ? "yes" : "no" } ?? ""].joined(separator: ",") + "\n"
            }.joined()
    }

    /// Whole units per second: CSV needs no more.
    static func number(_ value: Double) -> String { "\(Int(value.rounded()))" }

    static func json(_ report: Report) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(report)
    }
}
