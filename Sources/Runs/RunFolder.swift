import Cluster
import Config
import Foundation

/// A run's folder: config.yaml (the resolved config), metrics.jsonl (one object per line),
/// checkpoints/. Runs go to runs/<name>-<timestamp> under the working folder unless `out` says
/// otherwise; `resume: auto` continues the newest run of the same name that has a checkpoint.
public struct RunFolder: Sendable {
    public let path: String
    public var checkpoints: String { (path as NSString).appendingPathComponent("checkpoints") }
    public var metrics: String { (path as NSString).appendingPathComponent("metrics.jsonl") }
    public var config: String { (path as NSString).appendingPathComponent("config.yaml") }
    /// What the run printed (`Console`).
    public var log: String { (path as NSString).appendingPathComponent("log.txt") }
    /// PPO: each iteration's sampled responses with their rewards.
    public var samples: String { (path as NSString).appendingPathComponent("samples.jsonl") }

    /// The same scalars for TensorBoard (events.out.tfevents.* beside metrics.jsonl).
    public let events: TensorBoardEvents

    public init(path: String) throws {
        self.path = path
        events = TensorBoardEvents(directory: path)
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue {
            throw TrainingError("the run folder \(path) ('out') is a file, not a folder")
        }
        do { try FileManager.default.createDirectory(atPath: checkpoints, withIntermediateDirectories: true) } catch {
            throw TrainingError("cannot create the run folder \(checkpoints): \(error.localizedDescription)")
        }
    }

    /// Where to run and what to resume from, with a sentence saying which and why. Leftover
    /// temporary folders of dead saves are removed; a damaged newest checkpoint is passed over
    /// for the newest intact one, with a warning.
    public static func choose(
        name: String, out: String, resume: ResumePolicy, workingDirectory: String,
        now: Date = Date()
    ) throws -> (folder: RunFolder, checkpoint: String?, message: String) {
        let chosen = try chooseFolder(
            name: name, out: out, resume: resume, workingDirectory: workingDirectory, now: now)
        let removed = Checkpoints.removeStaleTemporaries(in: chosen.folder.checkpoints)
        let notes = removed.map { "removed \($0), left by an interrupted save of a process that is gone\n" }.joined()
        return (chosen.folder, chosen.checkpoint, notes + chosen.message)
    }

    /// The newest intact checkpoint in `folder` and the warnings about newer damaged ones.
    static func intact(in folder: RunFolder) -> (checkpoint: String?, warnings: String) {
        let (checkpoint, damaged) = Checkpoints.newestIntact(in: folder.checkpoints)
        let warnings = damaged.map { "warning: passing over the damaged checkpoint \($0.path) (\($0.problem))\n" }
            .joined()
        return (checkpoint, warnings)
    }

    static func chooseFolder(
        name: String, out: String, resume: ResumePolicy, workingDirectory: String,
        now: Date
    ) throws -> (folder: RunFolder, checkpoint: String?, message: String) {
        if case .from(let path) = resume {
            let checkpoint = URL(fileURLWithPath: path).standardizedFileURL.path
            if let problem = Checkpoints.verify(checkpoint) {
                throw TrainingError("resume: \(checkpoint) cannot be resumed: \(problem)")
            }
            // A checkpoint lives in <run>/checkpoints/step-N: continue in that run unless told otherwise.
            let folder =
                out.isEmpty
                ? URL(fileURLWithPath: checkpoint).deletingLastPathComponent().deletingLastPathComponent().path : out
            return (try RunFolder(path: folder), checkpoint, "resuming from \(checkpoint) (resume: path)")
        }
        if !out.isEmpty {
            let folder = try RunFolder(path: out)
            if resume.continuesNewest {
                let (c, warnings) = intact(in: folder)
                if let c {
                    return (
                        folder, c,
                        warnings + "resuming from \(c) (resume: \(resume), newest intact checkpoint in \(out))"
                    )
                }
                if !warnings.isEmpty {
                    throw TrainingError(
                        warnings
                            + "no intact checkpoint is left in \(folder.checkpoints); set resume: never to start over")
                }
            }
            let fresh = resume == .never ? "starting fresh (resume: never)" : "starting fresh: no checkpoint in \(out)"
            let aside = try folder.setAsideEarlierRun(now: now)
            return (folder, nil, fresh + (aside.map { "; the earlier run's files moved to \($0)" } ?? ""))
        }
        let runs = (workingDirectory as NSString).appendingPathComponent("runs")
        if resume.continuesNewest, let found = try newestNamed(name, in: runs, resume: resume) { return found }
        return (
            try RunFolder(path: newFolderPath(name, in: runs, now: now)), nil,
            resume == .never
                ? "starting fresh (resume: never)" : "starting fresh: no earlier run named \(name) has a checkpoint"
        )
    }

    /// The newest run folder named `name` under `runs` with an intact checkpoint, if any; a run
    /// whose checkpoints are all damaged is an error, not a silent fresh start.
    static func newestNamed(_ name: String, in runs: String, resume: ResumePolicy) throws
        -> (folder: RunFolder, checkpoint: String?, message: String)?
    {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: runs) else { return nil }
        let mine = names.filter { $0.hasPrefix(name + "-") && Self.isTimestamp(String($0.dropFirst(name.count + 1))) }
            .sorted()
        for candidate in mine.reversed() {
            let folder = try RunFolder(path: (runs as NSString).appendingPathComponent(candidate))
            let (c, warnings) = intact(in: folder)
            if let c {
                return (folder, c, warnings + "resuming from \(c) (resume: \(resume), newest run named \(name))")
            }
            if !warnings.isEmpty {
                throw TrainingError(
                    warnings + "no intact checkpoint is left in \(folder.checkpoints); set resume: never to start over")
            }
        }
        return nil
    }

    /// runs/<name>-<UTC timestamp>, with -1, -2 … when that folder exists.
    static func newFolderPath(_ name: String, in runs: String, now: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        var folder = (runs as NSString).appendingPathComponent("\(name)-\(formatter.string(from: now))")
        var suffix = 1
        while FileManager.default.fileExists(atPath: folder) {
            folder = (runs as NSString).appendingPathComponent("\(name)-\(formatter.string(from: now))-\(suffix)")
            suffix += 1
        }
        return folder
    }

    /// `choose` made by rank 0 and shared with every rank (they see one filesystem).
    public static func chooseCollectively(
        name: String, out: String, resume: ResumePolicy, workingDirectory: String,
        transport: any Transport
    ) async throws -> (folder: RunFolder, checkpoint: String?, message: String) {
        var choice = Data()
        if transport.rank == 0 {
            let chosen = try choose(name: name, out: out, resume: resume, workingDirectory: workingDirectory)
            choice = try JSONEncoder().encode([chosen.folder.path, chosen.checkpoint ?? "", chosen.message])
        }
        let decided = try JSONDecoder().decode([String].self, from: try await transport.allGather(choice)[0])
        return (try RunFolder(path: decided[0]), decided[1].isEmpty ? nil : decided[1], decided[2])
    }

    package static func isTimestamp(_ s: String) -> Bool {
        let parts = s.split(separator: "-")
        return parts.count >= 2 && parts[0].count == 8 && parts[1].count == 6
            && parts.allSatisfy { $0.allSatisfy(\.isNumber) }
    }

    public func writeConfig(_ yaml: String) throws {
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
    }

    /// On resume, drops metric lines from steps after the checkpoint, so the file reads as one run.
    public func truncateMetrics(afterStep step: Int) throws {
        try Self.keepLines(of: metrics, whose: "step", upTo: step)
        try events.restart(at: step + 1)
    }

    /// On resume, drops samples.jsonl's lines of iterations after the checkpoint (PPO).
    public func truncateSamples(afterIteration iteration: Int) throws {
        try Self.keepLines(of: samples, whose: "iteration", upTo: iteration)
    }

    /// Rewrites the JSONL file at `path` (if any) with the lines whose integer `key` is ≤ `last`.
    static func keepLines(of path: String, whose key: String, upTo last: Int) throws {
        guard let data = FileManager.default.contents(atPath: path) else { return }
        let kept = String(decoding: data, as: UTF8.self).split(separator: "\n").filter { line in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let n = o[key] as? Int
            else { return false }
            return n <= last
        }
        try (kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).write(
            toFile: path, atomically: true, encoding: .utf8)
    }

    /// One line of metrics.jsonl (and the same scalars for TensorBoard); a failed write names the file.
    public func appendMetrics(_ object: [String: Any]) throws {
        // The training loop and eval.command's thread both append.
        try Self.appendLock.withLock { try appendMetricsLine(object) }
    }

    private static let appendLock = NSLock()

    private func appendMetricsLine(_ object: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: Self.jsonSafe(object), options: [.sortedKeys])
        if !FileManager.default.fileExists(atPath: metrics) {
            _ = FileManager.default.createFile(atPath: metrics, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: metrics) else {
            throw TrainingError("\(metrics): cannot open for writing")
        }
        defer { try? handle.close() }
        do {
            try handle.seekToEnd()
            try handle.write(contentsOf: data + Data("\n".utf8))
        } catch { throw TrainingError("\(metrics): cannot write (\(error.localizedDescription))") }
        do { try events.append(object) } catch {
            throw TrainingError(
                "\(events.directory): cannot write the TensorBoard events (\(error.localizedDescription))")
        }
    }

    /// JSON has no NaN or infinity (Foundation refuses to write them): such a number becomes null.
    public static func jsonSafe(_ value: [String: Any]) -> [String: Any] { value.mapValues(jsonSafe) }

    static func jsonSafe(_ value: Any) -> Any {
        switch value {
        case let d as Double: return d.isFinite ? d : NSNull()
        case let f as Float: return f.isFinite ? f : NSNull()
        case let o as [String: Any]: return o.mapValues(jsonSafe)
        case let a as [Any]: return a.map(jsonSafe)
        default: return value
        }
    }
}

/// Progress on rank 0, on stderr (results keep stdout): a redrawn bar with ETA when stderr is a
/// terminal, plain lines otherwise; log.txt gets the plain lines.
public struct Progress {
    public let total: Int
    public let every: Int
    /// A redrawn bar only for a person at a terminal: under mpirun stderr is a pty too, but it is
    /// forwarded into logs, where carriage returns make a mess.
    package let interactive = isatty(2) != 0 && !MPIRuntime.launchedByMPI
    package let start = Date()
    package var startStep: Int

    public init(total: Int, every: Int, startStep: Int) {
        self.total = total
        self.every = max(every, 1)
        self.startStep = startStep
    }

    public func update(step: Int, fields: String) {
        let elapsed = Date().timeIntervalSince(start)
        let done = step - startStep
        let eta = done > 0 ? elapsed / Double(done) * Double(total - step) : 0
        let plain = "step \(step)/\(total) \(fields) elapsed \(Self.clock(elapsed)) eta \(Self.clock(eta))"
        let due = step % every == 0 || step == total
        if interactive {
            let width = 30, filled = total > 0 ? width * step / total : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            Console.write("\r\(bar) \(step)/\(total) \(fields) eta \(Self.clock(eta))   ", logged: false)
            if step == total { Console.write("\n", logged: false) }
            if due { Console.log(plain) }
        } else if due {
            Console.note(plain)
        }
    }

    public func line(_ text: String) {
        if interactive {
            Console.write("\r" + text + String(repeating: " ", count: 20) + "\n", logged: false)
            Console.log(text)
        } else {
            Console.note(text)
        }
    }

    package static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600
            ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
