import Cluster
import Config
import Foundation
import Runs

/// A run ended by SIGINT, SIGTERM or SIGUSR1 after a step, its checkpoint written (issue 15).
/// The command prints it with the way to resume and exits with 128 + the signal's number.
public struct RunStopped: Error, CustomStringConvertible {
    public let signal: StopSignal
    public let stage: String
    public let step: Int
    /// Written by rank 0 (nil on the other ranks, which do not write files).
    public let checkpoint: String?

    public var description: String {
        let from =
            signal.ranks == [0]
            ? ""
            : " (it reached rank\(signal.ranks.count > 1 ? "s" : "") "
                + "\(signal.ranks.map(String.init).joined(separator: ", ")))"
        return
            "stopped by \(signal.name)\(from) after \(stage) step \(step); checkpoint: "
            + "\(checkpoint ?? "written by rank 0")"
    }

    /// The same command continuing from the checkpoint (`resume=PATH` after the user's own arguments).
    public func resumeCommand(arguments: [String]) -> String? {
        guard let checkpoint else { return nil }
        let kept = arguments.dropFirst().filter { !$0.hasPrefix("resume=") }
        let quoted = kept.map { $0.contains(" ") ? "'\($0)'" : $0 }
        return (["rlhf"] + quoted + ["resume=\(checkpoint)"]).joined(separator: " ")
    }
}

/// Stops a run whose training has diverged before it writes anything more (issue 15): a
/// non-finite loss or gradient norm, a loss far above both where the run started and where it
/// has been (`train.loss_spike`), a gradient norm over `train.max_grad_norm_abort`, or a gradient
/// that stayed exactly zero at a real loss (a saturated model). Every rank sees the same
/// all-reduced loss and norm, so every rank stops at the same step. Its memory (first loss,
/// running mean, zero-gradient streak) travels in the checkpoint's training state, so a resumed
/// run judges each step exactly as the uninterrupted run would.
struct DivergenceGuard {
    /// Stop when the loss exceeds this many times both the running mean and the first loss (0: off).
    let spikeFactor: Double
    /// Stop when the gradient norm before clipping exceeds this (0: off).
    let maxGradNorm: Double
    /// Where the stage keeps its checkpoints, to name the last good one.
    let checkpoints: String
    /// Steps in a row with an exactly zero gradient that count as saturation.
    static let zeroGradientSteps = 3
    private(set) var memory = DivergenceMemory()

    init(spikeFactor: Double, maxGradNorm: Double, checkpoints: String, memory: DivergenceMemory? = nil) {
        self.spikeFactor = spikeFactor
        self.maxGradNorm = maxGradNorm
        self.checkpoints = checkpoints
        self.memory = memory ?? DivergenceMemory()
    }

    /// Throws when step `step`'s loss or gradient norm says the run diverged; else remembers the
    /// loss. `gradNorm` nil: the step trained nothing whose norm could be checked (a head-only
    /// rm), so only the loss rules apply.
    mutating func check(step: Int, loss: Double, gradNorm: Double?, lossName: String = "loss") throws {
        if !loss.isFinite { throw diverged("\(lossName) is \(loss)", step: step) }
        if let gradNorm { try checkGradient(gradNorm, step: step, loss: loss, lossName: lossName) }
        // Only for losses that stay positive (cross-entropy, Bradley–Terry, DPO): "10× the mean"
        // says nothing about a loss that may cross zero (centered or utility-shaped pair losses).
        if spikeFactor > 0, let first = memory.first, let mean = memory.mean, first > 0, mean > 0,
            loss > spikeFactor * mean, loss > spikeFactor * first
        {
            throw diverged(
                String(
                    format:
                        "%@ %.4g is over %.4g× both the running mean %.4g and the first step's %.4g "
                        + "(train.loss_spike; 0 turns the rule off)",
                    lossName, loss, spikeFactor, mean, first), step: step)
        }
        if memory.first == nil { memory.first = loss }
        // Exponential moving average, weight 0.1 on the newest: a spike is judged against the
        // last ~10 steps, not against one lucky batch.
        memory.mean = memory.mean.map { 0.9 * $0 + 0.1 * loss } ?? loss
    }

    private mutating func checkGradient(_ norm: Double, step: Int, loss: Double, lossName: String) throws {
        if !norm.isFinite { throw diverged("the gradient norm is \(norm)", step: step) }
        if maxGradNorm > 0 && norm > maxGradNorm {
            throw diverged(
                String(format: "the gradient norm %.4g exceeds train.max_grad_norm_abort %.4g", norm, maxGradNorm),
                step: step)
        }
        // A saturated model (softmax or sigmoid pinned by huge weights) has an exactly zero
        // gradient at a loss that is not small: a healthy float32 gradient is not exactly 0. One
        // such batch can be chance (pairs with identical responses); several in a row are not.
        // A loss far below where the run started is a memorised batch, not saturation.
        let real = loss >= 0.1 * (memory.first ?? loss) && loss > 0
        memory.zeroGradientStreak = norm == 0 && real ? memory.zeroGradientStreak + 1 : 0
        if memory.zeroGradientStreak >= Self.zeroGradientSteps {
            throw diverged(
                String(
                    format: "the gradient vanished (norm 0 for %d steps, at %@ %.4g): the model saturated",
                    memory.zeroGradientStreak, lossName, loss), step: step)
        }
    }

    /// The error: what happened, the last good checkpoint, what to change. Step s's loss and
    /// gradient are those of the weights after step s − 1, so a checkpoint of step s − 1 holds the
    /// weights that diverged: the last good one is at step s − 2 or before.
    func diverged(_ what: String, step: Int) -> TrainingError {
        let good = Checkpoints.newest(in: checkpoints, atMost: step - 2)
        let last =
            good.map { "the last good checkpoint is \($0) (the weights after step \(step - 1) gave this)" }
            ?? "no checkpoint before it is known good"
        let hint =
            good.map {
                "; continue from it with resume=\($0) and a lower learning rate (or a longer warm-up), or check the "
                    + "data"
            }
            ?? "; lower the learning rate (or warm up longer) or check the data"
        return TrainingError("\(what): training diverged, nothing more is written; \(last)\(hint)")
    }
}
