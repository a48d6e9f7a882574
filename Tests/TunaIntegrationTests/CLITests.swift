import Foundation
import XCTest
@testable import TunaCore

/// The CLI's exit codes, as a script would see them (issue 13, finding 6): 0 success, 1 the
/// command failed (one line, no usage text), 2 bad usage (the message and the usage).
final class CLITests: XCTestCase {
    var cluster: Cluster!

    override func setUpWithError() throws { cluster = try Cluster() }
    override func tearDown() { cluster?.shutdown() }

    /// `tuna generate`: answers on a real checkpoint, and bad input refused in one line each.
    func testGenerateAnswersAndRefusesBadInputInOneLine() throws {
        let model = try cluster.makeTinyModel()
        let ok = try cluster.cliLocal(["generate", "--model", model.path, "--prompt", "What is 2+2?", "--max-new-tokens", "4",
                                       "--reasoning-effort", "low", "--json"])
        XCTAssertEqual(ok.status, 0, ok.out)
        // (stdout and stderr share the pipe here: the JSON line is the one that starts with `{`)
        let reply = try XCTUnwrap(ok.out.split(separator: "\n").first { $0.hasPrefix("{") }.map { try JSONValue.parse(String($0)) })
        XCTAssertTrue(ok.out.contains("generated "), "the summary line on stderr: \(ok.out)")
        XCTAssertEqual(reply["index"]?.intValue, 0)
        XCTAssertLessThanOrEqual(reply["completion_tokens"]?.intValue ?? 99, 4)
        XCTAssertEqual(reply["tokens"]?.arrayValue?.count, reply["completion_tokens"]?.intValue)
        XCTAssertNotNil(reply["finish"]?.stringValue)
        func refused(_ args: [String], status: Int32 = 1, _ says: String, line: UInt = #line) throws {
            let r = try cluster.cliLocal(["generate"] + args)
            XCTAssertEqual(r.status, status, r.out, line: line)
            XCTAssertTrue(r.out.contains(says), r.out, line: line)
        }
        try refused(["--model", "/nonexistent", "--prompt", "hi"], "/nonexistent: not a checkpoint directory (no config.json)")
        try refused(["--model", model.path], status: 2, "give one of --prompt TEXT, --data FILE or --prompt-ids FILE")
        try refused(["--model", model.path, "--prompt", "hi", "--top-p", "0"], status: 2, "top-p must be in (0, 1]")
        let ids = cluster.dir.appendingPathComponent("ids.jsonl")
        try "[1, 2, 3]\n[4, 5\n".write(to: ids, atomically: true, encoding: .utf8)
        try refused(["--model", model.path, "--prompt-ids", ids.path], "ids.jsonl:2: expected a non-empty JSON array of token ids")
        try "[1, 2, 99999]\n".write(to: ids, atomically: true, encoding: .utf8)
        try refused(["--model", model.path, "--prompt-ids", ids.path], "token 99999 at 2 outside vocab")
    }

    func testFailuresExitOneWithoutUsageAndBadUsageExitsTwo() throws {
        let missing = try cluster.cliLocal(["submit", "--dry-run", "/nonexistent/spec.yaml"])
        XCTAssertEqual(missing.status, 1, missing.out)
        XCTAssert(missing.out.contains("cannot read /nonexistent/spec.yaml"), missing.out)
        XCTAssertFalse(missing.out.contains("USAGE") || missing.out.contains("Usage"), missing.out)

        let spec = cluster.dir.appendingPathComponent("bad.yaml")
        try "name: b\ntrainer: native\nmodel: m\ndataset: {path: d}\nlora: {rank: -4}\n".write(to: spec, atomically: true, encoding: .utf8)
        let refused = try cluster.cliLocal(["submit", "--dry-run", spec.path])
        XCTAssertEqual(refused.status, 1, refused.out)
        XCTAssert(refused.out.contains("lora.rank: -4 is not a positive integer"), refused.out)
        XCTAssertFalse(refused.out.contains("ErrorReply") || refused.out.contains("TunaError"), "a debug description: \(refused.out)")

        let usage = try cluster.cliLocal(["submit"])
        XCTAssertEqual(usage.status, 2, usage.out)
        XCTAssert(usage.out.contains("Usage") || usage.out.contains("USAGE"), usage.out)
    }

    /// `tuna watch` follows a sweep to its end and exits 1 when a job failed, so `watch && …`
    /// does not go on with a broken sweep.
    func testWatchExitsOneWhenAJobFailed() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        let s = try await cluster.submit(cluster.toySpec("i: [1, 2]\nsteps: 6\nstep_ms: 5\nmax_attempts: 1\nfail_attempts: 1"))
        let watched = try cluster.cli(["watch", "\(s.sweep)", "--interval", "0.2"])
        XCTAssertEqual(watched.status, 1, watched.out)
        XCTAssert(watched.out.contains("sweep \(s.sweep): 2 job(s) failed"), watched.out)
    }

    /// On a terminal (a pty, through util-linux's `script`) `tuna watch` redraws in place: a
    /// progress bar per running job (step of the total the trainer announced, loss, tokens/s,
    /// elapsed, ETA) and the workers, moved over with cursor-up and clear, until the sweep ends.
    /// Through a pipe it prints plain lines (the test above).
    func testWatchRedrawsProgressBarsOnATerminal() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        try cluster.startWorker("w2")
        let s = try await cluster.submit(cluster.toySpec("lr: [0.001, 0.002]\nsteps: 40\nstep_ms: 40"))
        let command = ([cluster.bin.appendingPathComponent("tuna").path, "watch", "\(s.sweep)", "--interval", "0.2", "--coordinator", cluster.address])
            .map { "'\($0)'" }.joined(separator: " ")
        let r = try cluster.runTool("/usr/bin/script", ["-q", "-e", "-f", "-c", command, "/dev/null"])
        let redraws = r.components(separatedBy: "\u{1B}[").count - 1
        XCTAssertGreaterThan(redraws, 3, "redrawn in place: \(r.suffix(2000))")
        XCTAssert(r.contains("█") && r.contains("/40  loss "), "a bar with the step of 40: \(r.suffix(2000))")
        XCTAssert(r.contains("ETA "), r.suffix(2000).description)
        XCTAssert(r.contains("workers: 2 connected"), r.suffix(2000).description)
        XCTAssert(r.contains("2/2 succeeded, 0 running"), "the last drawing is the end: \(r.suffix(500))")
        // And `tuna logs --follow` prints the job's events to its end.
        let followed = try cluster.cli(["logs", "1", "--follow", "--interval", "0.2"])
        XCTAssertEqual(followed.status, 0, followed.out)
        XCTAssert(followed.out.contains("attempt 1  step  step 40  loss "), followed.out)
        XCTAssert(followed.out.hasSuffix("job 1: succeeded\n"), followed.out)
    }

    /// `tuna fetch` draws a progress bar on a terminal's stderr (in a pty, through `script`),
    /// and nothing but its result lines through a pipe.
    func testFetchShowsProgressOnATerminalOnly() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        let s = try await cluster.submit(cluster.toySpec("steps: 2\nstep_ms: 5\nadapter_bytes: 8388608"))
        try await cluster.waitUntil("the job to succeed") { try await cluster.results(s.sweep).allSatisfy { $0.status == .succeeded } }
        let out = cluster.dir.appendingPathComponent("fetched")
        let command = ([cluster.bin.appendingPathComponent("tuna").path, "fetch", "1", "--out", out.path, "--coordinator", cluster.address])
            .map { "'\($0)'" }.joined(separator: " ")
        let r = try cluster.runTool("/usr/bin/script", ["-q", "-e", "-f", "-c", command, "/dev/null"])
        XCTAssert(r.contains("adapter_model.safetensors  [████████████████████████] 100%  8.0/8.0 MiB"), r)
        XCTAssert(r.contains("\r\u{1B}[K"), "redrawn in place, then cleared")
        XCTAssert(r.contains(out.appendingPathComponent("adapter_model.safetensors").path), r)
        let piped = try cluster.cli(["fetch", "1", "--out", cluster.dir.appendingPathComponent("piped").path])
        XCTAssertEqual(piped.status, 0, piped.out)
        XCTAssertFalse(piped.out.contains("MiB") || piped.out.contains("\u{1B}"), "no bar through a pipe: \(piped.out)")
    }

    /// `tuna submit` of a large sweep shows its progress on a terminal: the validation, then a
    /// bar of the jobs stored so far (polled from the coordinator), cleared before the result
    /// line; through a pipe only the result line.
    func testSubmitOfALargeSweepShowsProgressOnATerminal() async throws {
        try cluster.startCoordinator()
        let values = (1...400).map(String.init).joined(separator: ", ")
        let spec = cluster.dir.appendingPathComponent("large.yaml")
        // 100,000 jobs: seconds of validating and storing, so the 300 ms polls see both phases.
        let steps = (1...250).map(String.init).joined(separator: ", ")
        try cluster.toySpec(name: "large", "loss_scale: [\(values)]\nsteps: [\(steps)]\n")
            .write(to: spec, atomically: true, encoding: .utf8)
        let command = [cluster.bin.appendingPathComponent("tuna").path, "submit", spec.path, "--coordinator", cluster.address].map { "'\($0)'" }.joined(separator: " ")
        let r = try cluster.runTool("/usr/bin/script", ["-q", "-e", "-f", "-c", command, "/dev/null"])
        XCTAssert(r.contains("submitting large  validating 100000 jobs"), r)
        XCTAssert(r.contains(" jobs stored  "), "a bar of the jobs stored: \(r)")
        XCTAssert(r.contains("\r\u{1B}[Ksweep 1: 100000 jobs queued"), "the bar cleared before the result: \(r)")
        let piped = try cluster.cli(["submit", spec.path])
        XCTAssert(piped.out.hasPrefix("sweep 2: 100000 jobs queued\n") && !piped.out.contains("\u{1B}") && !piped.out.contains("validating"),
                  "no progress through a pipe: \(piped.out)")
    }

    /// Files the local tools cannot read are failures (exit 1, one line), not bad usage.
    func testLocalToolsFailWithOneLineNotUsage() throws {
        for args in [["init-model", "--out", cluster.dir.appendingPathComponent("m").path, "--vocabulary", "/nonexistent.tiktoken"],
                     ["eval", "--model", "/nonexistent-model", "--text", "/nonexistent.txt"],
                     ["merge", "--model", "/nonexistent-model", "--adapter", "/nonexistent-adapter", "--out", cluster.dir.path + "/merged"]] {
            let r = try cluster.cliLocal(args)
            XCTAssertEqual(r.status, 1, "\(args[0]): \(r.out)")
            XCTAssertFalse(r.out.contains("USAGE") || r.out.contains("Usage"), "\(args[0]): \(r.out)")
        }
    }

    /// Every command that prints has --json, and what it prints parses.
    func testCommandsPrintJSON() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        let s = try await cluster.submit(cluster.toySpec("lr: [0.001, 0.002]\nsteps: 4"))
        func json(_ args: [String]) throws -> Any {
            let r = try cluster.cli(args + ["--json"])
            XCTAssertEqual(r.status, 0, "\(args): \(r.out)")
            return try JSONSerialization.jsonObject(with: Data(r.out.utf8), options: [.fragmentsAllowed])
        }
        let watched = try cluster.cli(["watch", "\(s.sweep)", "--interval", "0.2", "--json"])
        XCTAssertEqual(watched.status, 0, watched.out)
        let updates = try watched.out.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual((updates.last??["sweep"] as? [String: Any])?["succeeded"] as? Int, 2, watched.out)
        let job = try await cluster.results(s.sweep)[0]
        let fetched = try json(["fetch", "\(job.id)", "--out", cluster.dir.appendingPathComponent("fetched").path]) as? [[String: Any]]
        XCTAssertEqual(fetched?.first { $0["name"] as? String == "adapter_model.safetensors" }?["sha256"] as? String, job.adapter_sha256)
        XCTAssertEqual((try json(["cancel", "\(s.sweep)"]) as? [String: Int])?["cancelled"], 0)
        XCTAssertEqual((try json(["retry", "\(s.sweep)"]) as? [String: Int])?["requeued"], 0)
        XCTAssertNotNil((try json(["status"]) as? [String: Any])?["connections"])
        XCTAssertEqual((try json(["audit"]) as? [[String: Any]])?.map { $0["action"] as? String }, ["submit", "cancel", "retry"])
        XCTAssertEqual((try json(["gc", "--dry-run"]) as? [String: Any])?["dry_run"] as? Bool, true)
        let backup = try cluster.cliLocal(["backup", "--data-dir", cluster.dir.appendingPathComponent("data").path,
                                            "--out", cluster.dir.appendingPathComponent("bk").path, "--json"])
        XCTAssertNotNil((try JSONSerialization.jsonObject(with: Data(backup.out.utf8)) as? [String: Int])?["copied"], backup.out)
    }
}
