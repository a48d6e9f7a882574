import Foundation
import XCTest
import TunaCore
import TunaWire

/// Real `tuna` processes on loopback for end-to-end tests: a coordinator (restartable on the
/// same port and data directory) and any number of workers, all killed at teardown.
final class Cluster: @unchecked Sendable {
    let dir: URL
    let bin: URL
    var port = 0
    var coordinator: Process?
    var workers: [String: Process] = [:]
    let leaseMs: Int
    var extraCoordinatorArgs: [String] = []

    init(leaseMs: Int = 1500) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tuna-it-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        bin = Cluster.binDir()
        self.leaseMs = leaseMs
    }

    /// The folder holding the built executables (`tuna`, `ToyTrainer`): beside the test bundle.
    static func binDir() -> URL {
        if let d = ProcessInfo.processInfo.environment["TUNA_BIN_DIR"] { return URL(fileURLWithPath: d) }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("tuna").path) {
            url = url.deletingLastPathComponent()
        }
        return url
    }

    var address: String { "127.0.0.1:\(port)" }
    var toyTrainer: String { bin.appendingPathComponent("ToyTrainer").path }

    func spawn(_ args: [String], log: String, env: [String: String] = [:]) throws -> Process {
        let p = Process()
        p.executableURL = bin.appendingPathComponent("tuna")
        p.arguments = args
        if !env.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 } }
        let logURL = dir.appendingPathComponent(log)
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let h = try FileHandle(forWritingTo: logURL)
        h.seekToEndOfFile()
        p.standardError = h
        p.standardOutput = h
        try p.run()
        return p
    }

    func startCoordinator() throws {
        let portFile = dir.appendingPathComponent("port")
        try? FileManager.default.removeItem(at: portFile)
        coordinator = try spawn(["coordinator", "--listen", "127.0.0.1:\(port)", "--data-dir", dir.appendingPathComponent("data").path,
                                 "--lease-ms", "\(leaseMs)", "--backoff-ms", "200", "--port-file", portFile.path] + extraCoordinatorArgs,
                                log: "coordinator.log")
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let s = try? String(contentsOf: portFile, encoding: .utf8), let p = Int(s.trimmingCharacters(in: .whitespacesAndNewlines)) {
                port = p
                return
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw TunaError.io("coordinator did not start; log:\n\(log("coordinator.log"))")
    }

    func startWorker(_ name: String, maxJobs: Int = 1, grace: Double = 5, extra: [String] = [], env: [String: String] = [:]) throws {
        workers[name] = try spawn(["worker", "--coordinator", address, "--work-dir", dir.appendingPathComponent("work-\(name)").path,
                                   "--name", name, "--max-jobs", "\(maxJobs)", "--grace", "\(grace)", "--checkpoint-sync", "0.3"] + extra,
                             log: "worker-\(name).log", env: env)
    }

    func kill9Coordinator() {
        if let p = coordinator { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        coordinator = nil
    }

    func kill9(worker: String) {
        if let p = workers[worker] { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        workers[worker] = nil
    }

    func log(_ name: String) -> String { (try? String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)) ?? "" }

    /// A client with the token the coordinator made for this user (it was given none).
    func client() async throws -> WireClient {
        try await WireClient.connect(HostPort(host: "127.0.0.1", port: port), token: LocalToken.read(port: port), role: "client")
    }

    func submit(_ yaml: String) async throws -> Submitted {
        let c = try await client(); defer { c.close() }
        return try await c.send(Submit(spec: yaml))
    }

    func results(_ sweep: SweepID? = nil) async throws -> [ResultRow] {
        let c = try await client(); defer { c.close() }
        return try await c.sendRaw(ResultsQuery(sweep: sweep)).resultRows()
    }

    func job(_ id: JobID) async throws -> JobDetail {
        let c = try await client(); defer { c.close() }
        return try await c.send(JobQuery(job: id))
    }

    func events(_ id: JobID, attempt: Int? = nil) async throws -> [EventRow] {
        let c = try await client(); defer { c.close() }
        return try await c.send(LogsQuery(job: id, attempt: attempt)).rows
    }

    /// Polls `condition` until it holds or `timeout` passes (then fails with the logs).
    func waitUntil(_ what: String, timeout: Double = 60, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        let logs = (["coordinator.log"] + workers.keys.map { "worker-\($0).log" }).map { "--- \($0)\n" + String(log($0).suffix(3000)) }
        XCTFail("timed out waiting for \(what)\n" + logs.joined(separator: "\n"))
        throw TunaError.io("timeout: \(what)")
    }

    /// Runs the `tuna` CLI against this cluster and returns its stdout.
    func cli(_ args: [String]) throws -> (status: Int32, out: String) { try cliLocal(args + ["--coordinator", address]) }

    /// A tiny random gpt-oss (2 layers, MXFP4 experts) from `tuna init-model`, in this cluster's
    /// directory: the model of the native and torch sweep tests.
    func makeTinyModel() throws -> URL {
        let model = dir.appendingPathComponent("model")
        let made = try cliLocal(["init-model", "--out", model.path, "--layers", "2", "--seed", "3", "--vocabulary",
                                 Self.repo.appendingPathComponent("Tests/TunaTextTests/Fixtures/o200k_base.tiktoken").path])
        XCTAssertEqual(made.status, 0, made.out)
        return model
    }

    /// Runs a `tuna` command as given (no coordinator address added: init-model, train).
    func cliLocal(_ args: [String]) throws -> (status: Int32, out: String) {
        let p = Process()
        p.executableURL = bin.appendingPathComponent("tuna")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Whether `args` (through /usr/bin/env) runs and exits 0: a probe for what a test needs
    /// (`python3 -c "import torch"`, `rsvg-convert --version`).
    static func succeeds(_ args: [String]) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    /// Runs a system tool and returns its stdout.
    func runTool(_ path: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// Runs one of Tests/Python's scripts with `python3` (scripts/test.sh puts its .venv first on
    /// PATH): its exit status and stdout, with stderr too when `stderr` is set.
    func runPython(_ script: String, _ args: [String], stderr: Bool = false) throws -> (status: Int32, out: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", Cluster.repo.appendingPathComponent("Tests/Python/\(script)").path] + args
        let out = Pipe()
        p.standardOutput = out
        if stderr { p.standardError = out }
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// The repository root (for committed fixtures and data).
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func shutdown() {
        for (_, p) in workers where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        workers.removeAll()
        kill9Coordinator()
        if ProcessInfo.processInfo.environment["TUNA_KEEP_TEST_DIRS"] == nil { try? FileManager.default.removeItem(at: dir) }
    }

    /// A toy-trainer sweep spec.
    func toySpec(name: String = "toy", _ extra: String) -> String {
        "name: \(name)\ntrainer: command\ncommand: [\"\(toyTrainer)\"]\n" + extra
    }
}

/// The toy trainer's loss after `step` steps at `lr` (same formula as Sources/ToyTrainer).
func toyLoss(step: Int, lr: Double) -> Double { 0.5 + 2.0 / (1.0 + Double(step) * lr * 100) }
