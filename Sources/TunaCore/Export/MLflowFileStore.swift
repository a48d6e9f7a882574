import Crypto
import Foundation

/// Writes runs into an MLflow file store (`mlruns/`), the layout MLflow's FileStore reads:
/// `ROOT/<experiment>/meta.yaml`, `ROOT/<experiment>/<run>/{meta.yaml, params/, metrics/, tags/,
/// artifacts/}`; a metric file holds `<timestamp ms> <value> <step>` lines, and a tag with `/`
/// is a subfolder. (MLflow 3 reads a file store when `MLFLOW_ALLOW_FILE_STORE=true`.)
public struct MLflowFileStore {
    public enum Status: Int { case running = 1, finished = 3, failed = 4, killed = 5 }

    public struct Run {
        public var name: String
        public var startMs: Int64
        public var endMs: Int64?
        public var status: Status
        public var params: [String: String]
        public var tags: [String: String]
        public var curves: Curves
        public init(name: String, startMs: Int64, endMs: Int64?, status: Status, params: [String: String], tags: [String: String], curves: Curves) {
            self.name = name; self.startMs = startMs; self.endMs = endMs; self.status = status
            self.params = params; self.tags = tags; self.curves = curves
        }
    }

    public let root: URL
    let files = FileManager.default

    /// Opens (or makes, with MLflow's `Default` experiment `0`, as MLflow would) the store at `root`.
    public init(root: URL, nowMs: Int64) throws {
        self.root = root.standardizedFileURL
        let fresh = !files.fileExists(atPath: self.root.path)
        try files.createDirectory(at: self.root.appendingPathComponent(".trash"), withIntermediateDirectories: true)
        if fresh { try writeExperiment(id: "0", name: "Default", nowMs: nowMs) }
    }

    /// The id of the experiment named `name`: the one an earlier export made, or a new one.
    public func experiment(named name: String, nowMs: Int64) throws -> String {
        let ids = try files.contentsOfDirectory(atPath: root.path).filter { !$0.isEmpty && $0.allSatisfy(\.isNumber) }
        let line = "name: " + Self.quoted(name)
        for id in ids {
            let meta = (try? String(contentsOf: root.appendingPathComponent(id).appendingPathComponent("meta.yaml"), encoding: .utf8)) ?? ""
            if meta.split(separator: "\n").contains(where: { $0 == line }) { return id }
        }
        let id = String((ids.compactMap { Int($0) }.max() ?? 0) + 1)
        try writeExperiment(id: id, name: name, nowMs: nowMs)
        return id
    }

    /// Writes `run` as run `id` of `experiment`, replacing an earlier export of it; returns its
    /// artifacts directory (the caller puts the files there).
    @discardableResult
    public func write(_ run: Run, id: String, experiment: String) throws -> URL {
        let dir = root.appendingPathComponent(experiment).appendingPathComponent(id)
        if files.fileExists(atPath: dir.path) { try files.removeItem(at: dir) }
        let artifacts = dir.appendingPathComponent("artifacts")
        for sub in ["params", "metrics", "tags"] { try files.createDirectory(at: dir.appendingPathComponent(sub), withIntermediateDirectories: true) }
        try files.createDirectory(at: artifacts, withIntermediateDirectories: true)
        let meta: [(String, String)] = [
            ("artifact_uri", artifacts.absoluteString), ("end_time", run.endMs.map(String.init) ?? "null"),
            ("entry_point_name", "''"), ("experiment_id", Self.quoted(experiment)), ("lifecycle_stage", "active"),
            ("run_id", id), ("run_name", Self.quoted(run.name)), ("source_name", "''"), ("source_type", "4"),
            ("source_version", "''"), ("start_time", String(run.startMs)), ("status", String(run.status.rawValue)),
            ("tags", "[]"), ("user_id", "tuna"),
        ]
        try text(meta.map { "\($0.0): \($0.1)\n" }.joined(), dir.appendingPathComponent("meta.yaml"))
        for (k, v) in run.params { try text(v, dir.appendingPathComponent("params").appendingPathComponent(k)) }
        for (k, v) in run.tags.merging(["mlflow.runName": run.name], uniquingKeysWith: { a, _ in a }) {
            try text(v, dir.appendingPathComponent("tags").appendingPathComponent(k))
        }
        for tag in run.curves.tags {
            let lines = run.curves.series[tag]!.map { "\($0.atMs) \($0.value) \($0.step)\n" }.joined()
            try text(lines, dir.appendingPathComponent("metrics").appendingPathComponent(tag))
        }
        return artifacts
    }

    func writeExperiment(id: String, name: String, nowMs: Int64) throws {
        let dir = root.appendingPathComponent(id)
        try files.createDirectory(at: dir, withIntermediateDirectories: true)
        try text("""
            artifact_location: \(dir.absoluteString)
            creation_time: \(nowMs)
            experiment_id: '\(id)'
            last_update_time: \(nowMs)
            lifecycle_stage: active
            name: \(Self.quoted(name))

            """, dir.appendingPathComponent("meta.yaml"))
    }

    func text(_ s: String, _ url: URL) throws {
        try files.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(s.utf8).write(to: url, options: .atomic)
    }

    /// A run id (32 hex digits, as MLflow's uuid4 ones) that is the same each time `key` is
    /// exported, so an export again replaces its runs instead of adding copies.
    public static func runID(_ key: String) -> String { String(SHA256.hash(data: Data(key.utf8)).hex.prefix(32)) }

    /// A YAML single-quoted scalar.
    static func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }
}
