import Foundation
import IOMMUModel

/// The C peer (scripts/peers/remove_peer.c, built by scripts/bench-remove-path.sh), run as a child
/// process with the same parameters as the Swift runs; it prints one line of JSON.
struct CPeer: Sendable {
    /// The built program.
    let executable: String

    /// The peer's one line of output.
    struct Output: Decodable {
        let cycles: Int
        let seconds: Double
        let readerPasses: Int

        enum CodingKeys: String, CodingKey {
            case cycles, seconds
            case readerPasses = "reader_passes"
        }
    }

    /// What went wrong with a run.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs the peer in `variant`'s shape and waits for it.
    func run(variant: RemoveVariant, threads: Int, groups: Int, cycles: Int, readers: Int) throws -> Sample {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [variant.rawValue, "\(threads)", "\(groups)", "\(cycles)", "\(readers)"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "\(executable) \(process.arguments!.joined(separator: " ")) exited with \(process.terminationStatus)")
        }
        do {
            let line = try JSONDecoder().decode(Output.self, from: data)
            return Sample(cycles: line.cycles, seconds: line.seconds, readerPasses: line.readerPasses)
        } catch {
            throw Failure(description: "\(executable): cannot read its output \"\(String(decoding: data, as: UTF8.self))\": \(error)")
        }
    }
}
