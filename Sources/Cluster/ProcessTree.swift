import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A shell command run as a process group of its own, so that it can be ended with everything it
/// started: `/bin/sh -c` forks the commands of a pipeline or a list, and a process they leave behind
/// (reparented to init) would otherwise keep the command's pipes open.
public enum ProcessTree {
    /// A process that runs `command` by /bin/sh; not started yet. Foundation's Process starts its
    /// child as the leader of a new process group (its pid is the group's id), which its children join.
    public static func shell(_ command: String) -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        return process
    }

    /// Ends the command's whole process group: SIGTERM, then SIGKILL to what is left after `grace`
    /// seconds. Returns once the command itself has exited (bounded: SIGKILL cannot be ignored).
    public static func end(_ process: Process, grace: Double = 2) {
        let group = process.processIdentifier
        guard group > 0 else { return }
        kill(-group, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while Date() < deadline && (process.isRunning || groupAlive(group)) { usleep(10_000) }
        if process.isRunning || groupAlive(group) { kill(-group, SIGKILL) }
        process.waitUntilExit()
        // The others are reaped by init: wait (briefly) until none is left running.
        let reaped = Date().addingTimeInterval(grace)
        while Date() < reaped && groupAlive(group) { usleep(10_000) }
    }

    /// Whether any process of process group `group` is alive (zombies excepted).
    static func groupAlive(_ group: Int32) -> Bool {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard Int32(entry) != nil, let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            // After "pid (name)": state, parent, process group.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 2, fields[0] != "Z", Int32(fields[2]) == group { return true }
        }
        return false
    }
}
