import ArgumentParser
import Cluster
import Foundation
import Kernels
import Runs

struct RLHF: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rlhf",
        abstract: "Distributed RLHF on CPUs: OpenBLAS for the math, MPI for the traffic.",
        version: Version.text,
        subcommands: [
            PipelineCommand.self, SFT.self, HydraSFT.self, RM.self, DPO.self, Prefs.self, PPO.self, OverOpt.self,
            Generate.self, Score.self, DataCommand.self, Bench.self, Inspect.self, Plot.self, Tokenize.self,
            Template.self, Check.self, InitModel.self, Export.self,
        ])
}

/// Diagnostics go to stderr (and the run's log.txt) so stdout stays machine-readable JSON lines.
func log(_ message: String) { Console.note(message) }

/// One JSON object per line, keys sorted, for scripts that compare runs.
func printJSONLine(_ object: [String: Any]) {
    guard
        let data = try? JSONSerialization.data(
            withJSONObject: RunFolder.jsonSafe(object), options: [.sortedKeys, .withoutEscapingSlashes])
    else {
        log("cannot write the result as JSON: \(object)")
        return
    }
    Console.result(String(decoding: data, as: UTF8.self))
}

/// Turns a thrown error into a clean one-line failure rather than a stack trace.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
