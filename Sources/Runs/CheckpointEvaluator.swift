import Cluster
import Config
import Foundation

/// `eval.command` (issue 29, point 4): the user's own evaluation, run on each checkpoint as it is
/// saved (rank 0). It runs beside training, one at a time in checkpoint order, so that no rank
/// waits on it in a collective; it reads a hard-linked copy of the checkpoint, which the
/// checkpoint rotation (`checkpoint.keep_last`) cannot take away. At most one evaluation waits
/// behind the running one: a newer checkpoint takes the place of a waiting one, which is said and
/// skipped (so links cannot pile up on disk). The command runs by /bin/sh in the working folder,
/// as a process group of its own, with `{checkpoint}` and `{step}` replaced (the path shell-quoted;
/// also RLHF_CHECKPOINT, RLHF_STEP, RLHF_RUN set); the last line it prints on stdout is a JSON
/// object of numbers, written to metrics.jsonl and TensorBoard at the checkpoint's step. A failure
/// (exit status, no JSON, a value that is not a number, no end within the timeout) stops the run
/// at its next step; a run that stops ends the running evaluation.
public final class CheckpointEvaluator: @unchecked Sendable {
    let command: String, timeout: Double, folder: RunFolder
    private let queue = DispatchQueue(label: "rlhf.eval-command")
    private let lock = NSLock()
    private var failure: (any Error)?
    /// The step whose evaluation waits (nil: none), and the running command.
    private var waiting: Int?, running: Process?, cancelled = false
    var links: String { (folder.path as NSString).appendingPathComponent("eval-command") }

    /// Copies left by an earlier run that stopped mid-evaluation are removed.
    public init(command: String, timeout: Double, folder: RunFolder) {
        self.command = command
        self.timeout = timeout
        self.folder = folder
        try? FileManager.default.removeItem(atPath: links)
    }

    /// Queues the evaluation of `checkpoint`, the state after `step`.
    public func submit(checkpoint: String, step: Int) throws {
        let copy = (links as NSString).appendingPathComponent("step-\(step)")
        try Self.link(checkpoint, to: copy)
        if let skipped = lock.withLock({ () -> Int? in
            defer { waiting = step }
            return waiting
        }) {
            Console.note("eval.command: step \(skipped) skipped, still waiting when step \(step) was saved")
        }
        queue.async { [self] in
            defer { try? FileManager.default.removeItem(atPath: copy) }
            let due = lock.withLock { () -> Bool in
                guard waiting == step, !cancelled else { return false }
                waiting = nil
                return true
            }
            guard due else { return }
            do {
                let figures = try run(checkpoint: copy, step: step)
                try folder.appendMetrics(["step": step].merging(figures) { a, _ in a })
                Console.note(
                    "step \(step): eval.command "
                        + figures.keys.sorted().map { "\($0) \(figures[$0]!)" }
                        .joined(separator: ", "))
            } catch {
                lock.withLock { if failure == nil { failure = error } }
            }
        }
    }

    /// The first evaluation that failed, as an error.
    public func check() throws {
        if let failure = lock.withLock({ failure }) { throw failure }
    }

    /// Waits for the queued evaluations, then `check()`.
    public func finish() throws {
        queue.sync {}
        try check()
    }

    /// Ends the running evaluation and skips the waiting one (the run stops).
    public func cancel() {
        let process = lock.withLock { () -> Process? in
            cancelled = true
            return running
        }
        if let process { ProcessTree.end(process) }
        queue.sync {}
        try? FileManager.default.removeItem(atPath: links)
    }

    /// The command's figures for the checkpoint at `path`.
    func run(checkpoint path: String, step: Int) throws -> [String: Any] {
        // The path quoted for the shell: a run folder may hold spaces or quotes.
        let quoted = "'" + path.replacingOccurrences(of: "'", with: "'\\''") + "'"
        let text = command.replacingOccurrences(of: "{checkpoint}", with: quoted)
            .replacingOccurrences(of: "{step}", with: String(step))
        let process = ProcessTree.shell(text), output = Pipe()
        process.environment = ProcessInfo.processInfo.environment.merging([
            "RLHF_CHECKPOINT": path, "RLHF_STEP": String(step), "RLHF_RUN": folder.path,
        ]) { _, new in new }
        process.standardOutput = output
        let name = "eval.command '\(command)' at step \(step)"
        do { try process.run() } catch { throw TrainingError("\(name) could not be started: \(error)") }
        lock.withLock { running = process }
        defer { lock.withLock { running = nil } }
        try? output.fileHandleForWriting.close()
        let timedOut = NSLock()
        var ended = false
        let timer = DispatchWorkItem {
            timedOut.withLock { ended = true }
            ProcessTree.end(process)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
        let stdout = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        timer.cancel()
        if timedOut.withLock({ ended }) {
            throw TrainingError("\(name) did not end within \(timeout) s (eval.command_timeout) and was ended")
        }
        guard process.terminationStatus == 0 else {
            throw TrainingError("\(name) exited with status \(process.terminationStatus)")
        }
        return try Self.figures(String(decoding: stdout, as: UTF8.self), name: name)
    }

    /// The numbers of the last non-empty line of `stdout`, a JSON object.
    static func figures(_ stdout: String, name: String) throws -> [String: Any] {
        let last = stdout.split(whereSeparator: \.isNewline).last { !$0.allSatisfy(\.isWhitespace) }.map(String.init)
        guard let last, let object = (try? JSONSerialization.jsonObject(with: Data(last.utf8))) as? [String: Any],
            !object.isEmpty
        else {
            let shown = last.map { String($0.prefix(300)) } ?? "nothing"
            throw TrainingError("\(name): its last line on stdout must be a JSON object of numbers, got: \(shown)")
        }
        for (key, value) in object {
            guard key != "step", let n = value as? NSNumber, String(cString: n.objCType) != "c", n.doubleValue.isFinite
            else {
                throw TrainingError(
                    "\(name): '\(key)' is not a figure (a number other than 'step'): \(last.prefix(300))")
            }
        }
        return object
    }

    /// `destination` holds hard links to every file of `source` (folders recreated).
    static func link(_ source: String, to destination: String) throws {
        let fm = FileManager.default
        try? fm.removeItem(atPath: destination)
        do {
            try fm.createDirectory(atPath: destination, withIntermediateDirectories: true)
            for item in try fm.subpathsOfDirectory(atPath: source) {
                let from = (source as NSString).appendingPathComponent(item)
                let to = (destination as NSString).appendingPathComponent(item)
                var isFolder: ObjCBool = false
                _ = fm.fileExists(atPath: from, isDirectory: &isFolder)
                if isFolder.boolValue {
                    try fm.createDirectory(atPath: to, withIntermediateDirectories: true)
                } else {
                    try fm.linkItem(atPath: from, toPath: to)
                }
            }
        } catch {
            throw TrainingError(
                "eval.command: cannot link \(source) into \(destination): \(error.localizedDescription)")
        }
    }
}
