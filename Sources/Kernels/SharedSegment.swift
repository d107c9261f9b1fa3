import Foundation

/// Memory the processes of one machine share: a POSIX shared-memory object (`/dev/shm/<name>`)
/// mapped into each of them. Frozen weights live in one per host (docs/architecture.md §13): the
/// host's first rank creates and fills it, the others map it read-only, and it is unlinked once
/// every rank has mapped it, so it disappears with the last mapping even when a rank dies.
///
/// Pages are counted once by the kernel (each process's PSS holds its share, its RSS the pages it
/// touched); `residentBytes` is what the machine holds for the segment.
public final class SharedSegment: @unchecked Sendable {
    public let name: String
    public let bytes: Int
    public let base: UnsafeMutableRawPointer
    /// The creator's mapping is writable (it fills the segment and may give pages back); the
    /// others' is read-only, so a stray write by a rank that only reads faults instead of changing
    /// every rank's weights.
    public let writable: Bool
    private let descriptor: Int32

    private init(name: String, bytes: Int, descriptor: Int32, writable: Bool) throws {
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        let mapped = mmap(nil, max(bytes, 1), protection, MAP_SHARED, descriptor, 0)
        guard let mapped, mapped != MAP_FAILED else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            if writable { shm_unlink(name) }  // the creator's: nobody else has it yet
            throw SharedSegmentError("cannot map /dev/shm\(name) (\(bytes) bytes): \(reason)")
        }
        (self.name, self.bytes, self.descriptor, self.writable, base) = (name, bytes, descriptor, writable, mapped)
    }

    /// Creates `name` ("/rlhf-…") of `bytes` zero bytes, every page reserved now: a /dev/shm too
    /// small for it is an error here (posix_fallocate), not a SIGBUS at the first write.
    public static func create(name: String, bytes: Int) throws -> SharedSegment {
        let fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0o600)
        guard fd >= 0 else {
            throw SharedSegmentError("cannot create /dev/shm\(name): \(String(cString: strerror(errno)))")
        }
        let status = posix_fallocate(fd, 0, off_t(max(bytes, 1)))
        guard status == 0 else {
            close(fd)
            shm_unlink(name)
            throw SharedSegmentError(
                "cannot reserve \(bytes / 1_048_576) MiB in /dev/shm for \(name) (\(String(cString: strerror(status))))"
                    + "; /dev/shm has \(freeBytes() / 1_048_576) MiB free (a container's default is 64 MiB: "
                    + "docker run --shm-size), or set cluster.share_weights: false")
        }
        return try SharedSegment(name: name, bytes: bytes, descriptor: fd, writable: true)
    }

    /// Maps the segment another process created, read-only; its size must be `bytes`.
    public static func open(name: String, bytes: Int) throws -> SharedSegment {
        let fd = shm_open(name, O_RDONLY, 0)
        guard fd >= 0 else {
            throw SharedSegmentError("cannot open /dev/shm\(name): \(String(cString: strerror(errno)))")
        }
        var status = stat()
        guard fstat(fd, &status) == 0, Int(status.st_size) == max(bytes, 1) else {
            close(fd)
            throw SharedSegmentError("/dev/shm\(name) holds \(status.st_size) bytes, expected \(max(bytes, 1))")
        }
        return try SharedSegment(name: name, bytes: bytes, descriptor: fd, writable: false)
    }

    /// Removes the name: the memory stays while any process maps it, and goes with the last one.
    public func unlink() { shm_unlink(name) }

    deinit {
        munmap(base, max(bytes, 1))
        close(descriptor)
    }

    /// Bytes of the segment the machine holds (its allocated blocks).
    public var residentBytes: Int {
        var status = stat()
        return fstat(descriptor, &status) == 0 ? Int(status.st_blocks) * 512 : 0
    }

    /// Gives the whole pages inside [`start`, `start + count`) bytes back to the machine
    /// (MADV_REMOVE: the shared memory itself, not only this process's view); they read as zero
    /// afterwards, in every process. The creator only.
    public func release(start: Int, count: Int) {
        guard writable else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (start + page - 1) / page * page, last = (start + count) / page * page
        if last > first { _ = madvise(base + first, last - first, MADV_REMOVE) }
    }

    /// Free bytes of /dev/shm (0 when it cannot be read).
    public static func freeBytes() -> Int {
        var info = statvfs()
        return statvfs("/dev/shm", &info) == 0 ? Int(info.f_bavail) * Int(info.f_frsize) : 0
    }

    /// Removes segments named `prefix<pid>-…` whose process is gone: a rank that died between
    /// creating a segment and unlinking it leaves one behind. (A container with its own pid
    /// namespace sharing this /dev/shm could lose a segment it is announcing: its pid means
    /// nothing here. Names live only while a host's ranks map them, seconds at start.)
    public static func removeStale(prefix: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm") else { return }
        for name in names where name.hasPrefix(prefix) {
            let pid = name.dropFirst(prefix.count).prefix { $0.isNumber }
            guard let pid = Int32(pid), kill(pid, 0) != 0, errno == ESRCH else { continue }
            shm_unlink("/" + name)
        }
    }
}

public struct SharedSegmentError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension FloatBuffer {
    /// `count` floats at byte `offset` of `segment`, which stays mapped while the buffer lives.
    public convenience init(in segment: SharedSegment, offset: Int, count: Int) {
        let start = (segment.base + offset).bindMemory(to: Float.self, capacity: max(count, 1))
        self.init(viewing: start, count: count, holder: segment)
    }
}

extension BFloat16Buffer {
    /// `count` bf16 values at byte `offset` of `segment`, which stays mapped while the buffer lives.
    public convenience init(in segment: SharedSegment, offset: Int, count: Int) {
        let start = (segment.base + offset).bindMemory(to: UInt16.self, capacity: max(count, 1))
        self.init(viewing: start, count: count, holder: segment)
    }
}
