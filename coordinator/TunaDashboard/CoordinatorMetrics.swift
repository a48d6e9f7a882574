import Foundation
import NIOConcurrencyHelpers
import Prometheus
import TunaCore
import TunaStore

/// The coordinator's Prometheus metrics (`/metrics`): counters and a histogram the coordinator
/// updates as things happen, and gauges read from the database at each scrape. One registry per
/// coordinator rather than swift-metrics' process-wide bootstrap, which may run only once per
/// process (the tests run several coordinators in one).
public final class CoordinatorMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()

    public let leasesGranted: Counter
    public let leasesExpired: Counter
    /// One dispatch pass: choosing and durably recording leases for the waiting job requests.
    public let dispatchLatency: DurationHistogram
    public let eventsIngested: Counter
    public let artifactBytesIngested: Counter
    let workersConnected: Gauge
    let workersQuarantined: Gauge
    let databaseBytes: Gauge
    let jobs: [JobStatus: Gauge]
    let perTrainer: NIOLockedValueBox<[String: Gauge]>
    let perJob = NIOLockedValueBox<[JobID: Gauge]>([:])

    static func name(_ metric: String, _ unit: String = "", _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "tuna", metricName: metric, unitName: unit, helpText: help)
    }

    static var queueDepth: MetricNameDescriptor { name("queue_depth", "", "Queued jobs by trainer.") }

    public init() {
        let r = registry
        leasesGranted = r.makeCounter(descriptor: Self.name("leases_granted", "total", "Leases handed to workers."))
        leasesExpired = r.makeCounter(descriptor: Self.name("leases_expired", "total", "Leases that expired unrenewed (the job went back to the queue)."))
        dispatchLatency = r.makeDurationHistogram(
            descriptor: Self.name("dispatch", "seconds", "Time of one dispatch pass: choosing and durably recording leases for the waiting job requests."),
            buckets: [.microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                      .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5)])
        eventsIngested = r.makeCounter(descriptor: Self.name("events_ingested", "total", "Trainer event lines (metric lines) stored."))
        artifactBytesIngested = r.makeCounter(descriptor: Self.name("artifact_ingested_bytes", "total", "Bytes of artifacts (adapters, checkpoints) stored from workers."))
        workersConnected = r.makeGauge(descriptor: Self.name("workers_connected", "", "Workers with a live connection."))
        workersQuarantined = r.makeGauge(descriptor: Self.name("workers_quarantined", "", "Workers in quarantine (given no jobs until lifted)."))
        databaseBytes = r.makeGauge(descriptor: Self.name("database", "bytes", "Size of the SQLite database with its write-ahead log."))
        // Every trainer has a series from the start (0 when nothing of it is queued).
        perTrainer = NIOLockedValueBox(Dictionary(uniqueKeysWithValues: JobSpec.Trainer.allCases.map {
            ($0.rawValue, r.makeGauge(descriptor: Self.queueDepth, labels: [("trainer", $0.rawValue)]))
        }))
        jobs = Dictionary(uniqueKeysWithValues: JobStatus.allCases.map {
            ($0, r.makeGauge(descriptor: Self.name("jobs", "", "Jobs by state."), labels: [("state", $0.rawValue)]))
        })
    }

    /// Sets the gauges from the database and the live connections, then writes the text format.
    public func scrape(_ g: StoreGauges, workersConnected connected: Int, databaseBytes bytes: Int64) -> String {
        workersConnected.set(Double(connected))
        workersQuarantined.set(Double(g.workersQuarantined))
        databaseBytes.set(Double(bytes))
        for (status, gauge) in jobs { gauge.set(Double(g.jobsByStatus[status.rawValue] ?? 0)) }
        perTrainer.withLockedValue { gauges in
            // A series stays, at 0 when nothing of its trainer is queued (a series that vanished
            // would read as missing data, not as an empty queue).
            for trainer in Set(gauges.keys).union(g.queuedByTrainer.keys) {
                let gauge = gauges[trainer] ?? registry.makeGauge(descriptor: Self.queueDepth, labels: [("trainer", trainer)])
                gauges[trainer] = gauge
                gauge.set(Double(g.queuedByTrainer[trainer] ?? 0))
            }
        }
        perJob.withLockedValue { gauges in
            // Only running jobs have a tokens/s series: a finished job's is removed.
            let running = Dictionary(g.runningTokensPerSecond.map { ($0.job, $0) }, uniquingKeysWith: { a, _ in a })
            for (job, gauge) in gauges where running[job] == nil { registry.unregisterGauge(gauge); gauges[job] = nil }
            for (job, r) in running {
                let gauge = gauges[job] ?? registry.makeGauge(descriptor: Self.name("job_tokens_per_second", "", "Training throughput of each running job, as its trainer last reported."),
                                                              labels: [("job", String(job)), ("sweep", String(r.sweep))])
                gauges[job] = gauge
                gauge.set(r.value)
            }
        }
        return registry.emitToString()
    }
}
