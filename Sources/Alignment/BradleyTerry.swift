import Foundation

/// Bradley–Terry pairwise loss for reward models (Ouyang et al. 2022, eq. 1; docs/algorithms.md §3):
/// L = −log σ(r_w − r_l − margin) = softplus(−(r_w − r_l − margin)).
public enum BradleyTerry {
    /// Returns the loss and its derivatives with respect to r_w and r_l.
    public static func loss(chosen rw: Double, rejected rl: Double, margin: Double = 0) -> (
        loss: Double, dChosen: Double, dRejected: Double
    ) {
        let d = rw - rl - margin
        let loss = d > 0 ? log1p(exp(-d)) : -d + log1p(exp(d))  // stable softplus(−d)
        let sigmoidNeg = 1 / (1 + exp(d))  // σ(−d)
        return (loss, -sigmoidNeg, sigmoidNeg)
    }
}
