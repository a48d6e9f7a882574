import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A read-only mmap of a whole file. Checkpoints are mapped, not read, so a 60 GiB shard costs
/// address space, not RAM: pages come in when a layer is dequantized and the kernel may drop
/// them again under pressure.
public final class MappedFile: @unchecked Sendable {
    // @unchecked: the mapping is PROT_READ and never mutated after init, so sharing is safe.
    public let path: String
    public let count: Int
    private let base: UnsafeMutableRawPointer?

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw EngineError.io(file: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw EngineError.io(file: path, reason: "cannot stat") }
        count = Int(st.st_size)
        if count == 0 {
            base = nil  // mmap of length 0 is an error; an empty file is reported by the parser
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw EngineError.io(file: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = p
    }

    deinit {
        if let base { munmap(base, count) }
    }

    /// The mapped bytes; valid for the lifetime of this object.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base, count: base == nil ? 0 : count)
    }
}
