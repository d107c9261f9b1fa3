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

    /// Student's t quantile t_{0.975, df} (two-sided 95%), from the standard table; df ≥ 31 use
    /// 1.96 + 2.4/df (within 0.002 of the exact value there).
    public static func t975(degreesOfFreedom df: Int) -> Double {
        let table = [
            12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
            2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
        ]
        guard df >= 1 else { return .infinity }
        return df <= table.count ? table[df - 1] : 1.96 + 2.4 / Double(df)
    }

    /// The mean and the half-width of its 95% t-interval (sample sd / √n × t_{0.975, n−1});
    /// the half-width is infinite for fewer than two values.
    public static func meanAndInterval95(_ v: [Double]) -> (mean: Double, halfWidth: Double) {
        let (mean, sd) = meanAndDeviation(v, sample: true)
        guard v.count >= 2 else { return (mean, .infinity) }
        return (mean, t975(degreesOfFreedom: v.count - 1) * sd / Double(v.count).squareRoot())
    }
}
