import Foundation
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A trainer process started with posix_spawn in its own process group, so that a signal
/// reaches the trainer and everything it started that stays in the group (data loader workers;
/// not torchrun's ranks, which run in sessions of their own: worker/tuna-torch ends those).
/// stdout and stderr arrive line by line on `lines`.
public final class ChildProcess: @unchecked Sendable {
    // @unchecked: `pid` is set once in init; everything else is immutable or a stream.
    public let pid: pid_t
    public let lines: AsyncStream<(stream: String, line: String)>
    private let exitStream: AsyncStream<Int32>
    private let exited = NIOLockedValueBox(false)

    public enum SpawnError: Error, CustomStringConvertible {
        case failed(String, Int32)
        public var description: String {
            switch self { case .failed(let p, let e): return "cannot start \(p): \(String(cString: strerror(e)))" }
        }
    }

    public init(argv: [String], env: [String: String], cwd: String) throws {
        guard argv.first != nil else { throw SpawnError.failed("(empty argv)", EINVAL) }
        // posix_spawn's chdir action is not exported by Glibc's Swift overlay; coreutils'
        // `env -C DIR` changes directory and then execs the program, keeping its pid.
        let argv = ["env", "-C", cwd] + argv
        let exe = "env"
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        guard pipe(&outPipe) == 0, pipe(&errPipe) == 0 else { throw SpawnError.failed(exe, errno) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        for fd in [outPipe[0], outPipe[1], errPipe[0], errPipe[1]] { posix_spawn_file_actions_addclose(&actions, fd) }

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // The child starts with an empty signal mask and default handlers: the spawning
        // thread may be a Dispatch worker with every signal blocked, and the daemon ignores
        // SIGTERM itself; a trainer inheriting either would never see our SIGTERM.
        var empty = sigset_t(), defaults = sigset_t()
        sigemptyset(&empty)
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attr, 0)

        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawnp(&child, exe, &actions, &attr, cArgs, cEnv)
        close(outPipe[1]); close(errPipe[1])
        guard rc == 0 else {
            close(outPipe[0]); close(errPipe[0])
            throw SpawnError.failed(exe, rc)
        }
        pid = child
        let spawned = child
        let exitedFlag = exited

        let (lines, linesCont) = AsyncStream.makeStream(of: (stream: String, line: String).self, bufferingPolicy: .unbounded)
        self.lines = lines
        let group = DispatchGroup()
        for (fd, name) in [(outPipe[0], "stdout"), (errPipe[0], "stderr")] {
            group.enter()
            Thread.detachNewThread {
                ChildProcess.readLines(fd: fd) { linesCont.yield((name, $0)) }
                close(fd)
                group.leave()
            }
        }
        group.notify(queue: .global()) { linesCont.finish() }

        let (exits, exitCont) = AsyncStream.makeStream(of: Int32.self)
        exitStream = exits
        Thread.detachNewThread {
            var status: Int32 = 0
            while waitpid(spawned, &status, 0) < 0 && errno == EINTR {}
            // Exit code, or 128 + signal number as shells report it.
            let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            exitedFlag.withLockedValue { $0 = true }
            exitCont.yield(code)
            exitCont.finish()
        }
    }

    /// Waits for the process to exit; returns its exit code (128+N if killed by signal N).
    public func wait() async -> Int32 {
        for await code in exitStream { return code }
        return -1
    }

    /// Signals the whole process group.
    /// Signals the whole process group, unless the trainer has already been reaped (its
    /// process group id may then belong to someone else).
    public func signal(_ sig: Int32) {
        exited.withLockedValue { done in if !done { _ = kill(-pid, sig) } }
    }

    private static func readLines(fd: Int32, _ emit: (String) -> Void) {
        var pending = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            pending.append(contentsOf: buf[0..<n])
            while let nl = pending.firstIndex(of: 10) {
                emit(String(decoding: pending[..<nl], as: UTF8.self))
                pending.removeSubrange(...nl)
            }
            // A line longer than 1 MiB without a newline is emitted in pieces.
            if pending.count > 1 << 20 { emit(String(decoding: pending, as: UTF8.self)); pending.removeAll() }
        }
        if !pending.isEmpty { emit(String(decoding: pending, as: UTF8.self)) }
    }
}
