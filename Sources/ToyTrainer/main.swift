// A toy trainer that speaks the trainer contract (docs/trainer-contract.md), for the
// integration tests and the dispatch benchmark. It trains nothing: its "loss" is a
// deterministic function of the job's parameters and the step, so tests can check that
// what the coordinator stores is exactly what the trainer printed.
//
// Job fields it reads (all optional, passed through by the `command` trainer):
//   steps (20), step_ms (10), lr (1e-3), fail_attempts (0: fail while attempt <= N),
//   checkpoint_every (5), adapter_bytes (4096), exit_code (1), extra_output_file (none),
//   eval_every (0: one eval, at the end; N: also an eval with its step every N steps),
//   loss_scale (1: multiplies the loss curve, so jobs of a sweep can differ by more than lr).
// And the lease's `pause_at_step`: eval, checkpoint, print `paused` there and exit 0.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("toy-trainer: \(message)\n".utf8))
    exit(2)
}

let env = ProcessInfo.processInfo.environment
guard let jobPath = env["TUNA_JOB"], let outDir = env["TUNA_OUTPUT_DIR"] else { fail("TUNA_JOB and TUNA_OUTPUT_DIR must be set") }
guard let data = FileManager.default.contents(atPath: jobPath),
      let job = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { fail("cannot read \(jobPath)") }

func number(_ key: String, _ d: Double) -> Double { (job[key] as? NSNumber)?.doubleValue ?? d }
let steps = Int(number("steps", 20))
let stepMs = number("step_ms", 10)
let lr = number("lr", 1e-3)
let attempt = Int(number("attempt", 1))
let failAttempts = Int(number("fail_attempts", 0))
let checkpointEvery = max(1, Int(number("checkpoint_every", 5)))
let adapterBytes = Int(number("adapter_bytes", 4096))
let evalEvery = Int(number("eval_every", 0))
let lossScale = number("loss_scale", 1)
let pauseAt = (job["pause_at_step"] as? NSNumber)?.intValue

func emit(_ object: [String: Any]) {
    let d = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    FileHandle.standardOutput.write(d + Data("\n".utf8))
}

// SIGTERM: checkpoint and exit, as a real trainer should when its worker shuts down.
nonisolated(unsafe) var currentStep = 0
let checkpointDir = env["TUNA_CHECKPOINT_DIR"]
func writeCheckpoint(_ step: Int) {
    guard let dir = checkpointDir else { return }
    let tmp = "\(dir)/step.txt.tmp"
    FileManager.default.createFile(atPath: tmp, contents: Data("\(step)\n".utf8))
    _ = rename(tmp, "\(dir)/step.txt")
}
signal(SIGTERM) { _ in
    writeCheckpoint(currentStep)
    _exit(143)
}

var start = 0
if let resume = env["TUNA_RESUME_DIR"], let s = try? String(contentsOfFile: "\(resume)/step.txt", encoding: .utf8),
   let step = Int(s.trimmingCharacters(in: .whitespacesAndNewlines)) {
    start = step
    emit(["event": "resumed", "step": step])
}
FileHandle.standardOutput.write(Data("toy trainer: \(steps) steps at lr \(lr), attempt \(attempt)\n".utf8))
emit(["event": "config", "steps": steps])

func loss(_ step: Int) -> Double { lossScale * (0.5 + 2.0 / (1.0 + Double(step) * lr * 100)) }

if let pauseAt, start >= pauseAt, start < steps {
    // Resumed at or past where this attempt is to pause: pause here, with the rung's eval.
    emit(["event": "eval", "step": start, "loss": loss(start) + 0.05, "tokens": 64])
    writeCheckpoint(start)
    emit(["event": "paused", "step": start])
    exit(0)
}
for step in start..<steps {
    currentStep = step
    usleep(useconds_t(stepMs * 1000))
    emit(["event": "step", "step": step + 1, "loss": loss(step + 1), "lr": lr, "tokens": 512, "tokens_per_s": 1000.0 / max(stepMs, 0.001) * 512])
    if (evalEvery > 0 && (step + 1) % evalEvery == 0) || step + 1 == pauseAt { emit(["event": "eval", "step": step + 1, "loss": loss(step + 1) + 0.05, "tokens": 64]) }
    if step + 1 == pauseAt && step + 1 < steps {
        writeCheckpoint(step + 1)
        emit(["event": "paused", "step": step + 1])
        exit(0)
    }
    if (step + 1) % checkpointEvery == 0 { writeCheckpoint(step + 1) }
    if attempt <= failAttempts && step + 1 == steps / 2 {
        FileHandle.standardError.write(Data("simulated failure on attempt \(attempt)\n".utf8))
        exit(Int32(number("exit_code", 1)))
    }
}
emit(["event": "eval", "epoch": 1, "loss": loss(steps) + 0.05])

// The "adapter": deterministic bytes from the parameters, so its SHA-256 is reproducible.
var bytes = [UInt8](repeating: 0, count: adapterBytes)
var x = UInt64(bitPattern: Int64(lr * 1e9)) &+ UInt64(steps)
for i in 0..<adapterBytes { x = x &* 6364136223846793005 &+ 1442695040888963407; bytes[i] = UInt8(truncatingIfNeeded: x >> 33) }
FileManager.default.createFile(atPath: "\(outDir)/adapter_model.safetensors", contents: Data(bytes))
FileManager.default.createFile(atPath: "\(outDir)/adapter_config.json", contents: Data("{\"r\": 8, \"lr\": \(lr)}\n".utf8))
// `extra_output_file` lets tests leave a file the coordinator must refuse (a bad name).
if let extra = job["extra_output_file"] as? String {
    FileManager.default.createFile(atPath: "\(outDir)/\(extra)", contents: Data("x".utf8))
}
emit(["event": "done"])
