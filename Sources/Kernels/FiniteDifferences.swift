/// Central finite differences, the reference every backward in the project is checked against.
///
/// Method: ∂f/∂x ≈ (f(x + h) − f(x − h)) / 2h with f accumulated in Double. The forward runs in
/// Float32, so the estimate carries rounding noise ≈ ε₃₂·|f| / h and truncation error ≈ h²·f'''/6;
/// h ≈ 1e-2…1e-3 balances them for O(1) activations, and comparisons use a relative tolerance
/// with an absolute floor (`agrees`).
public enum FiniteDifferences {
    /// Perturbs `parameter` in place by ±h, evaluates `f`, restores it, returns the estimate.
    public static func derivative(
        at parameter: UnsafeMutablePointer<Float>, step h: Float,
        of f: () throws -> Double
    ) rethrows -> Double {
        let original = parameter.pointee
        parameter.pointee = original + h
        let plus = try f()
        parameter.pointee = original - h
        let minus = try f()
        parameter.pointee = original
        // The actual step in Float32 may differ from h; divide by what was applied.
        let applied = Double(original + h) - Double(original - h)
        return (plus - minus) / applied
    }

    /// |analytic − numeric| ≤ relative·max(|analytic|, |numeric|) + absolute.
    public static func agrees(_ analytic: Double, _ numeric: Double, relative: Double, absolute: Double) -> Bool {
        abs(analytic - numeric) <= relative * max(abs(analytic), abs(numeric)) + absolute
    }
}
