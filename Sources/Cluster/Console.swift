import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Where a run's words go (issue 29, point 4): notes and progress on stderr, results (the final
/// JSON line, generated text) on stdout, so `rlhf … > result.json` keeps only the results; and
/// both, as they were shown, in the run folder's log.txt. An experiment that chains stages keeps
/// its own log.txt (every line of every stage) beside each stage's. Lines written before any log
/// was opened go to the first one opened.
public enum Console {
    /// A log's place: the experiment's folder, or the folder of the stage that runs now.
    public enum Slot: Sendable { case experiment, stage }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var logs: [(slot: Slot, path: String, handle: FileHandle)] = []
    nonisolated(unsafe) private static var early: [String] = []
    nonisolated(unsafe) private static var anyOpened = false
    private static let earlyLimit = 2000

    /// A line for a person (what the run does, warnings, failures): stderr and the logs.
    public static func note(_ line: String) { emit(line + "\n", stdout: false, logged: true) }

    /// A line from a thread that must not wait (the watchdog ending a stuck process): straight to
    /// stderr, and to the logs only if no other thread is writing them now.
    public static func urgent(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count) }
        guard lock.try() else { return }
        defer { lock.unlock() }
        for log in logs { try? log.handle.write(contentsOf: Data(bytes)) }
    }

    /// A line of results: stdout and the logs.
    public static func result(_ line: String) { emit(line + "\n", stdout: true, logged: true) }

    /// A line for the logs alone (what a redrawn progress bar shows on the terminal).
    public static func log(_ line: String) {
        lock.withLock {
            let data = Data((line + "\n").utf8)
            for log in logs { try? log.handle.write(contentsOf: data) }
            if logs.isEmpty && !anyOpened && early.count < earlyLimit { early.append(line + "\n") }
        }
    }

    /// Text on stderr as it is (a progress bar redrawn in place), logged only if `logged`.
    public static func write(_ text: String, logged: Bool) { emit(text, stdout: false, logged: logged) }

    /// Appends every later line to `path` (a stage's log replaces the previous stage's); the first
    /// log opened also gets the lines written before it.
    public static func openLog(_ path: String, slot: Slot) throws {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw ConsoleLogError(path: path) }
        _ = try? handle.seekToEnd()
        lock.withLock {
            if let old = logs.firstIndex(where: { $0.slot == slot }) {
                try? logs[old].handle.close()
                logs.remove(at: old)
            }
            if !anyOpened { try? handle.write(contentsOf: Data(early.joined().utf8)) }
            anyOpened = true
            early = []
            logs.append((slot, path, handle))
        }
    }

    /// The logs open now (for tests).
    public static var openLogs: [String] { lock.withLock { logs.map(\.path) } }

    /// Closes every log (a test's run ends; the process's end closes them otherwise).
    public static func closeLogs() {
        lock.withLock {
            for log in logs { try? log.handle.close() }
            logs = []
            anyOpened = false
            early = []
        }
    }

    private static func emit(_ text: String, stdout toStdout: Bool, logged: Bool) {
        lock.withLock {
            fflush(nil)  // what `print` buffered goes first
            try? (toStdout ? FileHandle.standardOutput : FileHandle.standardError).write(contentsOf: Data(text.utf8))
            guard logged else { return }
            if logs.isEmpty {
                if !anyOpened && early.count < earlyLimit { early.append(text) }
            } else {
                let data = Data(text.utf8)
                for log in logs { try? log.handle.write(contentsOf: data) }
            }
        }
    }
}

/// A log.txt that cannot be opened.
public struct ConsoleLogError: Error, CustomStringConvertible {
    public let path: String
    public var description: String { "\(path): cannot open the run's log for writing" }
}
