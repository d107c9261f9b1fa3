/// How deep a YAML file nests, checked before it is parsed. Yams builds its node tree
/// recursively, so a file nested thousands of levels deep would overflow the stack (SIGSEGV)
/// instead of failing with an error; an experiment file nests a few levels.
enum YAMLNesting {
    /// Flow collections (`[` and `{`) open at once, at most.
    static let maxFlowDepth = 64
    /// Columns of block nesting on one line, at most: its indentation and leading `- ` markers.
    static let maxBlockColumns = 256

    /// Throws a `ConfigError` naming the file and line where `text` nests too deep.
    static func check(_ text: String, file: String) throws {
        var depth = 0
        var quote: Character?
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if quote == nil, blockColumns(line) > maxBlockColumns {
                throw ConfigError(
                    "\(file):\(index + 1): nested deeper than \(maxBlockColumns) columns of indentation and '- ' "
                        + "markers; an experiment file needs a few levels")
            }
            var previous: Character = " "
            for c in line {
                defer { previous = c }
                if let q = quote {
                    if c == q && !(q == "\"" && previous == "\\") { quote = nil }
                    continue
                }
                if c == "#" && (previous == " " || previous == "\t") { break }  // a comment to the line's end
                switch c {
                // A quote starts a quoted scalar only where a scalar starts; inside a plain one ("it's") it is text.
                case "\"",
                    "'" where " \t:[{,-".contains(previous):
                    quote = c
                case "[", "{":
                    depth += 1
                    if depth > maxFlowDepth {
                        throw ConfigError(
                            "\(file):\(index + 1): more than \(maxFlowDepth) nested [ ] or { }; an experiment file "
                                + "needs a few")
                    }
                case "]", "}": depth = max(depth - 1, 0)
                default: break
                }
            }
        }
    }

    /// Leading spaces, tabs and block-sequence markers (`-` before a blank) of a line.
    static func blockColumns(_ line: Substring) -> Int {
        var rest = line[...]
        var columns = 0
        while let c = rest.first {
            let markerEnds = rest.dropFirst().first.map { $0 == " " || $0 == "\t" } ?? true
            guard c == " " || c == "\t" || (c == "-" && markerEnds) else { break }
            columns += 1
            rest = rest.dropFirst()
        }
        return columns
    }
}
