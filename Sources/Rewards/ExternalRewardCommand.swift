import Cluster
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A long-lived reward command (`rewards.external_command`, run by /bin/sh in the working folder):
/// one request line on its stdin per batch, one reply line on its stdout. Its stderr is ours, so
/// what it prints shows in the run's output. No wait is unbounded: a reply that does not come
/// within the timeout, or a command that exits, is an error, and the command is ended.
package final class ExternalRewardCommand: @unchecked Sendable {
    package let command: String
    private let process: Process
    private let input = Pipe(), output = Pipe()
    /// Bytes read past the last reply's newline.
    private var pending: [UInt8] = []

    package init(command: String) throws {
        self.command = command
        // A write to a command that has exited would otherwise end this process with SIGPIPE;
        // ignored, the write fails with EPIPE and the error names the command.
        signal(SIGPIPE, SIG_IGN)
        process = ProcessTree.shell(command)
        process.standardInput = input
        process.standardOutput = output
        do { try process.run() } catch {
            throw ExternalRewardError("rewards.external_command '\(command)' could not be started: \(error)")
        }
        // The child holds its own ends; this process's copies would keep its stdout from ever
        // reading as closed (no EOF when the command exits).
        try? output.fileHandleForWriting.close()
        try? input.fileHandleForReading.close()
        // Requests are written against the deadline too: a command that does not read must not
        // block this process once the pipe's buffer is full.
        let writer = input.fileHandleForWriting.fileDescriptor
        _ = fcntl(writer, F_SETFL, fcntl(writer, F_GETFL) | O_NONBLOCK)
    }

    deinit { close() }

    /// Closes the command's stdin (a well-behaved command then exits) and ends it if it has not
    /// exited half a second later.
    package func close() {
        try? input.fileHandleForWriting.close()
        guard process.isRunning else { return }
        let deadline = Date().addingTimeInterval(0.5)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { end() }
    }

    /// Ends the command and every process it started.
    private func end() { ProcessTree.end(process) }

    /// Sends `line` and returns the reply line; `timeout` seconds for both.
    package func exchange(_ line: String, batch: Int, timeout: Double) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        guard process.isRunning else { throw exited(batch: batch) }
        switch send(Array((line + "\n").utf8), deadline: deadline) {
        case .sent: break
        case .timedOut: throw timedOut(batch: batch, timeout: timeout)
        case .failed(let error):
            // A broken pipe: the command is exiting, or has closed its stdin and lives on.
            let grace = Date().addingTimeInterval(2)
            while process.isRunning && Date() < grace { usleep(10_000) }
            guard process.isRunning else { throw exited(batch: batch) }
            end()
            throw ExternalRewardError(
                "external reward command '\(command)': sending batch \(batch) failed (\(error)); the command was ended")
        }
        let descriptor = output.fileHandleForReading.fileDescriptor
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let reply = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return reply
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw timedOut(batch: batch, timeout: timeout) }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min(left * 1000, 60_000).rounded(.up)))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            let count = read(descriptor, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw exited(batch: batch) }
            pending += buffer[..<count]
        }
    }

    enum Sent { case sent, timedOut, failed(String) }

    /// Writes `bytes` to the command's stdin by the deadline.
    private func send(_ bytes: [UInt8], deadline: Date) -> Sent {
        let descriptor = input.fileHandleForWriting.fileDescriptor
        var written = 0
        while written < bytes.count {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return .timedOut }
            var poller = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&poller, 1, Int32(min(left * 1000, 60_000).rounded(.up)))
            if ready < 0 && errno != EINTR { return .failed(String(cString: strerror(errno))) }
            guard ready > 0 else { continue }
            let n = bytes.withUnsafeBufferPointer {
                write(descriptor, $0.baseAddress! + written, bytes.count - written)
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            guard n > 0 else { return .failed(String(cString: strerror(errno))) }
            written += n
        }
        return .sent
    }

    private func exited(batch: Int) -> ExternalRewardError {
        // Its stdout closed: it is exiting (or closed stdout and lives on, and is ended).
        let deadline = Date().addingTimeInterval(2)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { end() }
        let partial = pending.isEmpty ? "" : "; it had written: \(String(decoding: pending.prefix(300), as: UTF8.self))"
        return ExternalRewardError(
            "external reward command '\(command)' exited with status \(process.terminationStatus) before replying "
                + "to batch \(batch)\(partial)")
    }

    private func timedOut(batch: Int, timeout: Double) -> ExternalRewardError {
        end()
        return ExternalRewardError(
            "external reward command '\(command)': no reply to batch \(batch) within \(timeout) s "
                + "(rewards.external_timeout); the command was ended")
    }
}
