import Foundation

/// Mean and standard deviation of a series: the population deviation (divide by n; group
/// normalisation, histograms) or the sample one (divide by n − 1; spread over seeds).
public enum Statistics {
    /// (0, 0) for no values; a sample deviation of one value is 0.
    public static func meanAndDeviation(_ v: [Double], sample: Bool = false) -> (mean: Double, deviation: Double) {
        guard !v.isEmpty else { return (0, 0) }
        let mean = v.reduce(0, +) / Double(v.count)
        let divisor = sample ? v.count - 1 : v.count
        guard divisor > 0 else { return (mean, 0) }
        return (mean, (v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(divisor)).squareRoot())
    }
}
