import Foundation
import Kernels
import Models

/// Learning rate: linear warm-up to the peak, then cosine decay to min_lr_ratio·peak
/// (Loshchilov & Hutter 2017, SGDR without restarts), as nanoGPT's get_lr.
public struct LearningRateSchedule: Sendable, Equatable {
    public let peak: Float, minRatio: Float, warmupSteps: Int, totalSteps: Int

    public init(peak: Float, minRatio: Float, warmupSteps: Int, totalSteps: Int) {
        self.peak = peak
        self.minRatio = minRatio
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    /// The rate for optimizer step `step` (1-based).
    public func rate(step: Int) -> Float {
        if warmupSteps > 0 && step <= warmupSteps { return peak * Float(step) / Float(warmupSteps) }
        let floor = peak * minRatio
        let span = max(totalSteps - warmupSteps, 1)
        let progress = min(max(Double(step - warmupSteps) / Double(span), 0), 1)
        return floor + Float(0.5 * (1 + cos(Double.pi * progress))) * (peak - floor)
    }
}
