/// A configuration the run cannot start with: an unknown or mistyped key, a value out of range,
/// settings that contradict each other. The message names the file, line or key.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A run that cannot go on: damaged or mismatched files, a diverged loss, a missing checkpoint.
/// The message says what happened and what to do.
public struct TrainingError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
