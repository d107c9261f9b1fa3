import Config
import Foundation
import Runs

extension ModelCard {
    /// The card of a model a stage trained: from the run's settings, config and metrics so far.
    static func of(
        method: String, run: RunSettings, data: DataSettings, resolved: ResolvedConfig, folder: RunFolder,
        library: String
    ) -> ModelCard {
        let base = run.initFrom.isEmpty ? "a new \(run.family) model (preset \(run.preset))" : run.initFrom
        let source =
            data.task != .none
            ? "the built-in task '\(data.task.rawValue)' (data.task)"
            : "`\(data.train)`" + (data.eval.isEmpty ? "" : ", held out: `\(data.eval)`")
        var card = ModelCard(title: run.name, baseModel: base, library: library, method: method, data: source)
        card.metrics = latestMetrics(folder.metrics)
        card.config = resolved.yaml
        return card
    }
}
