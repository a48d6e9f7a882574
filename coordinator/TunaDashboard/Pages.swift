import Foundation
import Mustache
import TunaCore
import TunaStore

/// The dashboard's pages, rendered on the server with Mustache (escaped by default). What is
/// small (the sweeps, one job, the workers) is in the page itself; what can be large (a sweep's
/// jobs and curves) is drawn in the browser from the JSON endpoints, so the page's first byte
/// does not wait on 10,000 rows.
struct Pages: Sendable {
    let library: MustacheLibrary

    init() throws {
        var lib = MustacheLibrary()
        for (name, text) in Self.templates { try lib.register(text, named: name) }
        library = lib
    }

    /// Whether pages offer a logout (not when the coordinator has no token at all).
    var loggedIn: @Sendable () -> Bool = { true }

    func render(_ name: String, _ context: [String: Any]) -> String {
        var context = context
        context["logout"] = loggedIn()
        return library.render(context, withTemplate: name) ?? "template \(name) is missing"
    }

    func login(next: String, problem: String?) -> String {
        var context: [String: Any] = ["title": "Log in", "next": next, "problem": problem as Any]
        context["logout"] = false
        return library.render(context, withTemplate: "login") ?? ""
    }

    func sweeps(_ rows: [SweepOverview]) -> String {
        let items: [[String: Any]] = rows.reversed().map { o in
            let s = o.sweep
            let ended = s.succeeded + s.failed + s.cancelled + (s.stopped ?? 0)
            return ["id": s.id, "name": s.name, "jobs": s.jobs, "ended": ended,
                    "percent": s.jobs == 0 ? 0 : Int((Double(ended) / Double(s.jobs) * 100).rounded()),
                    "queued": s.queued, "running": s.running, "paused": s.paused ?? 0, "succeeded": s.succeeded,
                    "failed": s.failed, "stopped": s.stopped ?? 0, "cancelled": s.cancelled,
                    "objective": Self.objectiveText(s.objective ?? .default), "best": Self.number(o.best),
                    "gpu_hours": Self.hours(o.gpu_hours), "worker_hours": Self.hours(o.worker_hours),
                    "created": Self.time(s.created_ms), "by": o.submitted_by ?? ""]
        }
        return render("sweeps", ["title": "Sweeps", "sweeps": items, "none": items.isEmpty])
    }

    func sweep(_ o: SweepOverview) -> String {
        let s = o.sweep, objective = s.objective ?? .default
        let varying = (try? String(decoding: JSONEncoder().encode(s.varying), as: UTF8.self)) ?? "[]"
        return render("sweep", ["title": "Sweep \(s.id): \(s.name)", "id": s.id, "name": s.name, "jobs": s.jobs,
                                "objective": Self.objectiveText(objective), "metric": objective.metric, "mode": objective.mode.rawValue,
                                "varying": varying, "best": Self.number(o.best), "gpu_hours": Self.hours(o.gpu_hours),
                                "worker_hours": Self.hours(o.worker_hours)])
    }

    func job(_ d: JobDetail, logTail: [String]) -> String {
        let j = d.job
        let params = j.params.sorted { $0.key < $1.key }.map { ["name": $0.key, "value": $0.value.canonicalJSON] }
        var metrics: [[String: Any]] = [
            ["name": "objective", "value": Self.number(j.objective)], ["name": "final train loss", "value": Self.number(j.final_train_loss)],
            ["name": "best val loss", "value": Self.number(j.best_val_loss)], ["name": "final val loss", "value": Self.number(j.final_val_loss)],
            ["name": "tokens/s", "value": Self.number(j.tokens_per_s)],
        ]
        metrics += (j.metrics ?? [:]).sorted { $0.key < $1.key }.map { ["name": $0.key, "value": Self.number($0.value)] }
        let attempts: [[String: Any]] = d.attempts.map { a in
            ["attempt": a.attempt, "worker": a.worker, "state": a.state, "started": Self.time(a.started_ms),
             "took": a.ended_ms.map { Self.duration(ms: $0 - a.started_ms) } ?? "running", "error": a.error ?? ""]
        }
        let artifacts: [[String: Any]] = d.artifacts.map { a in
            ["kind": a.kind, "name": a.name, "sha": a.sha256, "short": String(a.sha256.prefix(12)), "size": Self.bytes(a.size)]
        }
        let decisions: [[String: Any]] = (d.decisions ?? []).map { ["kind": $0.kind.rawValue, "rung": $0.rung, "at": Self.time($0.at_ms), "reason": $0.reason] }
        return render("job", ["title": "Job \(j.id)", "id": j.id, "sweep": j.sweep, "index": j.index, "status": j.status.rawValue,
                              "worker": j.worker ?? "", "error": j.error ?? "", "params": params, "metrics": metrics,
                              "attempts": attempts, "artifacts": artifacts, "decisions": decisions, "log": logTail.joined(separator: "\n")])
    }

    func workers(_ rows: [WorkerRow], running: [String: [JobID]]) -> String {
        let items: [[String: Any]] = rows.map { w in
            let gpus = w.capabilities.gpus.map { "\($0.name) (\(Self.number($0.memory_gb)) GB)" }.joined(separator: ", ")
            return ["id": w.id, "name": w.name, "host": w.capabilities.hostname, "connected": w.connected,
                    "trainers": w.capabilities.trainers.joined(separator: ", "), "gpus": gpus.isEmpty ? "none" : gpus,
                    "cpu": w.capabilities.cpu_cores, "ram": Self.number(w.capabilities.ram_gb),
                    "jobs": (running[w.id] ?? []).map { ["job": $0] },
                    "seen": Self.time(w.last_seen_ms), "failures": w.consecutive_failures, "quarantined": w.quarantined,
                    "reason": w.quarantine_reason ?? ""]
        }
        return render("workers", ["title": "Workers", "workers": items, "none": items.isEmpty])
    }

    // MARK: Formatting

    static func number(_ v: Double?) -> String {
        guard let v, v.isFinite else { return "–" }
        return String(format: "%.5g", v)
    }

    /// Hours to three significant digits (a short sweep's are minutes: 0.0125, not 0.00).
    static func hours(_ h: Double) -> String { h == 0 ? "0" : String(format: "%.3g", h) }

    static func objectiveText(_ o: Objective) -> String { "\(o.mode == .max ? "max" : "min") \(o.metric)" }

    static func time(_ ms: Int64) -> String { utcTime(ms) + " UTC" }

    static func duration(ms: Int64) -> String {
        let s = max(0, ms / 1000)
        return s >= 3600 ? "\(s / 3600)h \(s % 3600 / 60)m" : s >= 60 ? "\(s / 60)m \(s % 60)s" : "\(s)s"
    }

    static func bytes(_ n: Int64) -> String {
        n >= 1 << 30 ? String(format: "%.1f GiB", Double(n) / Double(1 << 30))
            : n >= 1 << 20 ? String(format: "%.1f MiB", Double(n) / Double(1 << 20))
            : n >= 1 << 10 ? String(format: "%.1f KiB", Double(n) / 1024) : "\(n) B"
    }

    static func urlEncode(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~/"))) ?? s
    }

    /// An `application/x-www-form-urlencoded` body's fields.
    static func formFields(_ body: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in body.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (s: Substring) in String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
            if let k = kv.first { out[decode(k)] = kv.count > 1 ? decode(kv[1]) : "" }
        }
        return out
    }

    // MARK: Templates

    static let templates: [String: String] = [
        "head": """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>{{title}} · Tuna</title><link rel="stylesheet" href="/static/dashboard.css"></head>
            <body><nav><a class="brand" href="/">Tuna</a><a href="/">Sweeps</a><a href="/workers">Workers</a><a href="/metrics">Metrics</a>{{#logout}}<a class="logout" href="/logout">Log out</a>{{/logout}}</nav><main>
            """,
        "foot": """
            </main><script src="/static/dashboard.js"></script></body></html>
            """,
        "login": """
            {{>head}}
            <h1>Log in</h1>
            <p>This coordinator needs a token: any token of its <code>--tokens</code> file (or its <code>--token-file</code>) but a worker's.</p>
            {{#problem}}<p class="problem">{{problem}}</p>{{/problem}}
            <form method="post" action="/login"><input type="hidden" name="next" value="{{next}}">
            <input type="password" name="token" placeholder="token" autofocus size="48"> <button>Log in</button></form>
            {{>foot}}
            """,
        "sweeps": """
            {{>head}}
            <h1>Sweeps</h1>
            {{#none}}<p>No sweeps yet: <code>tuna submit SPEC.yaml</code>.</p>{{/none}}
            {{^none}}<table id="sweeps" class="grid"><thead><tr><th>sweep</th><th>name</th><th>progress</th><th>queued</th><th>running</th><th>paused</th>
            <th>succeeded</th><th>stopped</th><th>failed</th><th>cancelled</th><th>objective</th><th>best</th><th>GPU-hours</th><th>worker-hours</th><th>by</th><th>created</th></tr></thead><tbody>
            {{#sweeps}}<tr data-sweep="{{id}}"><td><a href="/sweeps/{{id}}">{{id}}</a></td><td><a href="/sweeps/{{id}}">{{name}}</a></td>
            <td><span class="bar"><span style="width:{{percent}}%"></span></span> {{ended}}/{{jobs}}</td><td>{{queued}}</td><td>{{running}}</td><td>{{paused}}</td>
            <td>{{succeeded}}</td><td>{{stopped}}</td><td>{{failed}}</td><td>{{cancelled}}</td><td>{{objective}}</td><td class="best">{{best}}</td>
            <td>{{gpu_hours}}</td><td>{{worker_hours}}</td><td>{{by}}</td><td>{{created}}</td></tr>{{/sweeps}}
            </tbody></table>{{/none}}
            {{>foot}}
            """,
        "sweep": """
            {{>head}}
            <h1>Sweep {{id}}: {{name}}</h1>
            <p class="facts">{{jobs}} jobs · objective <b>{{objective}}</b> · best <b id="best">{{best}}</b> · {{gpu_hours}} GPU-hours · {{worker_hours}} worker-hours · <span id="counts"></span> <span id="live" class="live">connecting…</span></p>
            <div id="sweep-page" data-sweep="{{id}}" data-metric="{{metric}}" data-mode="{{mode}}" data-varying="{{varying}}">
            <section><h2>Loss curves <select id="curve-kind"><option value="eval">validation loss</option><option value="train">train loss</option></select>
            <label>jobs shown <input id="curve-limit" type="number" min="1" max="2000" value="100"></label> <label><input id="curve-log" type="checkbox"> log y</label></h2>
            <p class="note" id="curve-note"></p><div class="chart"><canvas id="curves" height="340"></canvas><div class="tip" id="curves-tip"></div></div></section>
            <section><h2>Hyperparameters against the objective</h2><div class="chart"><canvas id="parallel" height="300"></canvas></div></section>
            <section><h2>Objective against each varied hyperparameter</h2><div id="scatters" class="scatters"></div></section>
            <section><h2>Jobs <input id="filter" placeholder="filter: text, or status:running" size="32"> <span id="shown"></span></h2>
            <table id="jobs" class="grid sortable"><thead></thead><tbody></tbody></table><button id="more" hidden>show more</button></section>
            </div>
            {{>foot}}
            """,
        "job": """
            {{>head}}
            <h1>Job {{id}} <span class="status {{status}}">{{status}}</span></h1>
            <p class="facts">sweep <a href="/sweeps/{{sweep}}">{{sweep}}</a> · index {{index}}{{#worker}} · on {{worker}}{{/worker}}</p>
            {{#error}}<p class="problem">{{error}}</p>{{/error}}
            <div id="job-page" data-job="{{id}}" data-sweep="{{sweep}}">
            <div class="row"><section><h2>Parameters</h2><table class="grid kv">{{#params}}<tr><th>{{name}}</th><td><code>{{value}}</code></td></tr>{{/params}}</table></section>
            <section><h2>Results</h2><table class="grid kv">{{#metrics}}<tr><th>{{name}}</th><td>{{value}}</td></tr>{{/metrics}}</table></section></div>
            <section><h2>Loss</h2><div class="chart"><canvas id="job-loss" height="300"></canvas><div class="tip" id="job-loss-tip"></div></div></section>
            <div class="row"><section><h2>Learning rate</h2><div class="chart"><canvas id="job-lr" height="200"></canvas></div></section>
            <section><h2>Tokens/s</h2><div class="chart"><canvas id="job-tps" height="200"></canvas></div></section></div>
            <section><h2>Attempts</h2><table class="grid" id="attempts"><thead><tr><th>attempt</th><th>worker</th><th>outcome</th><th>started</th><th>took</th><th>error</th></tr></thead><tbody>
            {{#attempts}}<tr><td>{{attempt}}</td><td>{{worker}}</td><td class="status {{state}}">{{state}}</td><td>{{started}}</td><td>{{took}}</td><td>{{error}}</td></tr>{{/attempts}}</tbody></table></section>
            <section><h2>Decisions of the sweep's search</h2>{{^decisions}}<p class="note">none (the sweep has no early stopping or TPE, or it has not decided about this job)</p>{{/decisions}}<table class="grid"><tbody>{{#decisions}}<tr><td>{{kind}}</td><td>step {{rung}}</td><td>{{at}}</td><td>{{reason}}</td></tr>{{/decisions}}</tbody></table></section>
            <section><h2>Downloads</h2>{{^artifacts}}<p class="note">nothing uploaded yet</p>{{/artifacts}}<table class="grid"><tbody>{{#artifacts}}<tr><td>{{kind}}</td><td>{{name}}</td><td><a href="/artifacts/{{sha}}?name={{name}}" download>{{short}}…</a></td><td>{{size}}</td></tr>{{/artifacts}}</tbody></table></section>
            <section><h2>Trainer log (last events)</h2><pre class="log">{{log}}</pre></section>
            </div>
            {{>foot}}
            """,
        "workers": """
            {{>head}}
            <h1>Workers</h1>
            {{#none}}<p>No worker has registered yet: <code>tuna worker --coordinator HOST:PORT</code> on each GPU box.</p>{{/none}}
            {{^none}}<table id="workers" class="grid"><thead><tr><th>name</th><th>host</th><th>connected</th><th>running</th><th>trainers</th><th>GPUs</th><th>CPU cores</th><th>RAM GB</th><th>last seen</th><th>failures in a row</th><th>quarantine</th></tr></thead><tbody>
            {{#workers}}<tr><td title="{{id}}">{{name}}</td><td>{{host}}</td><td>{{#connected}}yes{{/connected}}{{^connected}}no{{/connected}}</td><td>{{#jobs}}<a href="/jobs/{{job}}">job {{job}}</a> {{/jobs}}{{^jobs}}–{{/jobs}}</td><td>{{trainers}}</td><td>{{gpus}}</td>
            <td>{{cpu}}</td><td>{{ram}}</td><td>{{seen}}</td><td>{{failures}}</td><td>{{#quarantined}}<span class="problem">quarantined: {{reason}}</span> (lift: <code>tuna workers --unquarantine {{name}}</code>){{/quarantined}}</td></tr>{{/workers}}
            </tbody></table>{{/none}}
            {{>foot}}
            """,
    ]
}
