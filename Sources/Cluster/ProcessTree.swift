import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Ends a child process together with every process it started: `/bin/sh -c` forks the commands of
/// a pipeline or a list, which would outlive it and keep its pipes open.
public enum ProcessTree {
    /// Alive, not a zombie.
    static func running(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }

    public static func end(_ process: Process) {
        let root = process.processIdentifier
        var parents: [Int32: Int32] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            // After "pid (name)": the state, then the parent's pid.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let parent = Int32(fields[1]) { parents[pid] = parent }
        }
        var tree: Set<Int32> = [root], grew = true
        while grew {
            let before = tree.count
            for (pid, parent) in parents where tree.contains(parent) { tree.insert(pid) }
            grew = tree.count > before
        }
        let children = tree.subtracting([root])
        for pid in children { kill(pid, SIGTERM) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        // The others are not ours to reap: wait (up to 2 s) until each has exited.
        let deadline = Date().addingTimeInterval(2)
        while Date() < deadline && children.contains(where: running) { usleep(10_000) }
    }
}
