import Config
import Foundation

extension RunFolder {
    /// What a run writes into its folder (beside TensorBoard's `events.out.tfevents.*`).
    static let runOutputs = [
        "metrics.jsonl", "config.yaml", "checkpoints", "final", "eval", "data", "prepo.jsonl",
        "reference_logps.safetensors", "log.txt", "samples.jsonl",
    ]

    /// A run starting fresh in an `out` folder an earlier run wrote to would append to its
    /// metrics.jsonl, add a second TensorBoard events file beside its own and overwrite its
    /// checkpoints step by step. The earlier run's outputs are moved into `previous-<time>` in the
    /// folder instead (nothing is deleted); returns that folder, or nil when there was no earlier
    /// run (no metrics, events or checkpoints). Only the files a run writes are moved, so `out: .`
    /// never moves anything of the user's.
    func setAsideEarlierRun(now: Date) throws -> String? {
        let fm = FileManager.default
        let names = (try? fm.contentsOfDirectory(atPath: path)) ?? []
        let events = names.filter { $0.hasPrefix("events.out.tfevents") }
        let checkpointNames = (try? fm.contentsOfDirectory(atPath: checkpoints)) ?? []
        guard names.contains("metrics.jsonl") || !events.isEmpty || !checkpointNames.isEmpty else { return nil }
        let aside = Self.newFolderPath("previous", in: path, now: now)
        do {
            try fm.createDirectory(atPath: aside, withIntermediateDirectories: true)
            for name in Self.runOutputs.filter(names.contains) + events.sorted() {
                try fm.moveItem(
                    atPath: (path as NSString).appendingPathComponent(name),
                    toPath: (aside as NSString).appendingPathComponent(name))
            }
            try fm.createDirectory(atPath: checkpoints, withIntermediateDirectories: true)
        } catch {
            throw TrainingError(
                "starting fresh in \(path): cannot move the earlier run's files to \(aside): "
                    + "\(error.localizedDescription)")
        }
        return aside
    }
}
