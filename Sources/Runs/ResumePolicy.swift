import Config
import Foundation

/// 'resume': continue the newest checkpoint of this run name, start fresh, or continue a given
/// checkpoint; `force` is `auto` that also continues a checkpoint trained with other model or
/// data settings (ResumeSettings).
public enum ResumePolicy: Sendable, Equatable, CustomStringConvertible {
    case auto, force, never, from(String)
    package init(_ text: String) throws {
        switch text {
        case "auto": self = .auto
        case "force": self = .force
        case "never": self = .never
        default:
            guard FileManager.default.fileExists(atPath: text) else {
                throw ConfigError(
                    "'resume' must be auto, force, never or an existing checkpoint folder; '\(text)' does not exist")
            }
            self = .from(text)
        }
    }
    public var description: String {
        switch self {
        case .auto: return "auto"
        case .force: return "force"
        case .never: return "never"
        case .from(let p): return p
        }
    }
    /// Whether the newest checkpoint of the run is looked for.
    public var continuesNewest: Bool { self == .auto || self == .force }
}
