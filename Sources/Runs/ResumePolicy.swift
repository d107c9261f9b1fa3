import Config
import Foundation

/// 'resume': continue the newest checkpoint of this run name, start fresh, or continue a given checkpoint.
public enum ResumePolicy: Sendable, Equatable, CustomStringConvertible {
    case auto, never, from(String)
    package init(_ text: String) throws {
        switch text {
        case "auto": self = .auto
        case "never": self = .never
        default:
            guard FileManager.default.fileExists(atPath: text) else {
                throw ConfigError("'resume' must be auto, never or an existing checkpoint folder; '\(text)' does not exist")
            }
            self = .from(text)
        }
    }
    public var description: String { switch self { case .auto: return "auto"; case .never: return "never"; case .from(let p): return p } }
}
