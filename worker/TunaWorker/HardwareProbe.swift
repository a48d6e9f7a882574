import Foundation
import TunaCore

/// What this box has: GPUs from nvidia-smi when it is installed, else none; CPU cores and RAM.
public enum HardwareProbe {
    /// `gpus`: the GPUs already chosen (the worker's `GPUSelection`, tests); nil asks nvidia-smi.
    public static func probe(trainers: [String], gpus chosen: [GPUInfo]? = nil) -> Capabilities {
        Capabilities(hostname: ProcessInfo.processInfo.hostName, trainers: trainers, gpus: chosen ?? gpus(),
                     cpu_cores: ProcessInfo.processInfo.activeProcessorCount,
                     ram_gb: Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824)
    }

    public static func gpus() -> [GPUInfo] {
        guard let exe = which("nvidia-smi") else { return [] }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        // nvidia-smi numbers GPUs in PCI bus order; CUDA does so too only when told (the
        // worker tells every trainer: JobRunner sets CUDA_DEVICE_ORDER=PCI_BUS_ID).
        p.arguments = ["--query-gpu=index,uuid,name,memory.total,driver_version", "--format=csv,noheader,nounits"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return [] }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return [] }
        return parseNvidiaSMI(String(decoding: data, as: UTF8.self))
    }

    /// Parses `index, uuid, name, memory.total [MiB], driver_version` lines.
    public static func parseNvidiaSMI(_ text: String) -> [GPUInfo] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard f.count == 5, let i = Int(f[0]), let mib = Double(f[3]) else { return nil }
            return GPUInfo(index: i, name: f[2], memory_gb: (mib / 1024 * 10).rounded() / 10, uuid: f[1], driver: f[4])
        }
    }

    public static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
}
