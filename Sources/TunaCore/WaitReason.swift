import Foundation

/// Why a queued job is not running: said by `tuna jobs` and `tuna submit` so that a job no
/// worker can ever take does not wait in silence (a torch job with no torch worker, a job
/// asking for more GPU memory than any box has). A pure function of the job's needs and the
/// workers' offers; the coordinator supplies both.
public enum WaitReason {
    public struct Need: Hashable, Sendable {
        public var trainer: String
        public var gpus: Int
        public var gpuMemoryGB: Double
        public init(trainer: String, gpus: Int, gpuMemoryGB: Double) {
            self.trainer = trainer; self.gpus = gpus; self.gpuMemoryGB = gpuMemoryGB
        }
    }

    public struct Offer: Sendable {
        public var name: String
        public var connected: Bool
        public var quarantined: Bool
        public var capabilities: Capabilities
        public init(name: String, connected: Bool, quarantined: Bool, capabilities: Capabilities) {
            self.name = name; self.connected = connected; self.quarantined = quarantined; self.capabilities = capabilities
        }
    }

    /// nil when some connected, healthy worker could run the job (it waits for a free slot
    /// or GPU, or its retry backoff); otherwise what is missing, in the order a person would
    /// fix it.
    public static func blocked(_ need: Need, offers: [Offer]) -> String? {
        let live = offers.filter(\.connected)
        guard !live.isEmpty else { return "no worker is connected" }
        let withTrainer = live.filter { $0.capabilities.trainers.contains(need.trainer) }
        guard !withTrainer.isEmpty else {
            let offered = Set(live.flatMap(\.capabilities.trainers)).sorted().joined(separator: ", ")
            return "no connected worker offers trainer `\(need.trainer)` (offered: \(offered.isEmpty ? "none" : offered))"
        }
        let fitting = withTrainer.filter { fits(need, $0.capabilities.gpus) }
        guard !fitting.isEmpty else {
            let best = withTrainer.max { closeness(need, $0.capabilities.gpus) < closeness(need, $1.capabilities.gpus) }!
            let gpus = best.capabilities.gpus
            let have = gpus.isEmpty ? "no GPU" : "\(gpus.count) GPU(s), the largest \(format(gpus.map(\.memory_gb).max()!)) GiB"
            let memory = need.gpuMemoryGB > 0 ? " with at least \(format(need.gpuMemoryGB)) GiB each" : ""
            return "no connected worker offering `\(need.trainer)` has \(need.gpus) GPU(s)\(memory) (the closest, \(best.name), has \(have))"
        }
        if fitting.allSatisfy(\.quarantined) {
            return "every worker that could run it is quarantined (\(fitting.map(\.name).sorted().joined(separator: ", "))): `tuna workers` says why"
        }
        return nil
    }

    /// A job asking for k GPUs fits a box when its k-th largest GPU has the memory (the
    /// same rule the store's lease query applies to free GPUs).
    static func fits(_ need: Need, _ gpus: [GPUInfo]) -> Bool {
        guard need.gpus > 0 else { return true }
        let mems = gpus.map(\.memory_gb).sorted(by: >)
        return mems.count >= need.gpus && mems[need.gpus - 1] >= need.gpuMemoryGB
    }

    /// How near a box comes to a need it cannot meet, to name the closest one: first how many
    /// GPUs it has with enough memory, then its largest GPU.
    static func closeness(_ need: Need, _ gpus: [GPUInfo]) -> (Int, Double) {
        (gpus.filter { $0.memory_gb >= need.gpuMemoryGB }.count, gpus.map(\.memory_gb).max() ?? -1)
    }

    static func format(_ gb: Double) -> String {
        gb == gb.rounded() ? String(Int(gb)) : String(format: "%.1f", gb)
    }
}

/// One queued job and why it waits (`waiting` request).
public struct WaitingRow: Codable, Sendable {
    public var job: JobID
    public var sweep: SweepID
    /// Why no worker can run it now, or a plain "waiting for a free worker" when one could.
    public var reason: String
    /// True when no connected worker can ever take it as things stand.
    public var blocked: Bool
    /// In a grouped reply (`WaitingQuery.grouped`): how many queued jobs of the sweep wait for
    /// this reason; `job` is the first of them.
    public var jobs: Int?
    public init(job: JobID, sweep: SweepID, reason: String, blocked: Bool, jobs: Int? = nil) {
        self.job = job; self.sweep = sweep; self.reason = reason; self.blocked = blocked; self.jobs = jobs
    }
}
