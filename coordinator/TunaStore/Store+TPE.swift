import Foundation
import GRDB
import TunaCore

/// `sweep.method: tpe`, live: a TPE sweep's jobs are stored with their random draws (validated
/// at submit, like random search's); when a job past the sweep's `startup` is leased for the
/// first time, its configuration is proposed by `TPE.propose` from the sweep's results so far
/// (succeeded jobs with their objective; running, paused and stopped ones as bad), in the
/// leasing transaction, and written over the draw. With too few results in, or a proposal the
/// validator refuses, the job keeps its draw. Each proposal is a decision with its reason.
extension Store {
    /// Proposes job `job`'s configuration if it is a TPE sweep's, not yet leased, past startup.
    /// Returns the parameters to lease it with when they changed.
    func proposeIfTPE(_ db: Database, job: JobID, sweep: SweepID, index: Int, attempts: Int, now: Int64) throws -> String? {
        guard attempts == 0,
              try String.fetchOne(db, sql: "SELECT method FROM sweeps WHERE id = ?", arguments: [sweep]) == SweepMethod.tpe.rawValue,
              let space = try searchSpaces.space(sweep, db: db), index >= space.startup else { return nil }
        var observations: [TPE.Observation] = []
        for r in try Row.fetchAll(db, sql: """
                SELECT j.varying, j.status, \(Store.objectiveValueSQL) FROM jobs j JOIN sweeps s ON s.id = j.sweep_id
                WHERE j.sweep_id = ? AND j.id != ? AND (j.status IN ('succeeded', 'running', 'paused', 'stopped')
                                                        OR (j.status = 'queued' AND j.attempts > 0))
                ORDER BY j.idx
                """, arguments: [sweep, job]) {
            guard let varying = (try? JSONValue.parse(Data((r[0] as String).utf8)))?.objectValue else { continue }
            let point = space.axes.map { varying[$0.name] ?? .null }
            let value: Double? = (r[1] as String) == JobStatus.succeeded.rawValue ? r[2] : nil
            observations.append(TPE.Observation(point: point, value: value))
        }
        let scored = observations.filter { $0.value != nil }.count
        guard var point = TPE.propose(axes: space.axes, observations: observations, objective: space.objective,
                                      startup: space.startup, seed: space.seed, index: index) else {
            try recordDecision(db, sweep: sweep, job: job, .proposed, rung: 0,
                               reason: "kept its random draw: \(scored) result(s) in, TPE proposes from \(space.startup)", now: now)
            return nil
        }
        // The job was queued by its drawn trainer and resources (a sweep stored before TPE
        // refused such axes): those keep their draws.
        if space.axes.contains(where: { SweepSpec.isSchedulingField($0.name) }),
           let drawn = try String.fetchOne(db, sql: "SELECT varying FROM jobs WHERE id = ?", arguments: [job]).flatMap({ try? JSONValue.parse(Data($0.utf8)) }) {
            for (k, axis) in space.axes.enumerated() where SweepSpec.isSchedulingField(axis.name) { point[k] = drawn[axis.name] ?? point[k] }
        }
        guard let proposed = space.job(point) else {
            try recordDecision(db, sweep: sweep, job: job, .proposed, rung: 0,
                               reason: "kept its random draw: the TPE proposal was not a valid job", now: now)
            return nil
        }
        let varying = JSONValue.object(proposed.varying)
        try db.execute(sql: "UPDATE jobs SET params = ?, varying = ?, params_hash = ? WHERE id = ?",
                       arguments: [proposed.paramsJSON, varying.canonicalJSON, proposed.hash, job])
        let shown = proposed.varying.keys.sorted().map { "\($0)=\(proposed.varying[$0]!.canonicalJSON)" }.joined(separator: " ")
        try recordDecision(db, sweep: sweep, job: job, .proposed, rung: 0,
                           reason: "proposed by TPE from \(scored) result(s) and \(observations.count - scored) running or stopped: \(shown)", now: now)
        return proposed.paramsJSON
    }
}

/// The search spaces of TPE sweeps, read from their stored specs once each.
final class SearchSpaces: @unchecked Sendable {
    // @unchecked: the dictionary is only touched under the lock.
    private var spaces: [SweepID: SweepSpec.SearchSpace] = [:]
    private let lock = NSLock()

    func space(_ sweep: SweepID, db: Database) throws -> SweepSpec.SearchSpace? {
        if let s = lock.withLock({ spaces[sweep] }) { return s }
        guard let yaml = try String.fetchOne(db, sql: "SELECT spec_yaml FROM sweeps WHERE id = ?", arguments: [sweep]),
              let s = try? SweepSpec.searchSpace(yaml: yaml) else { return nil }
        lock.withLock { spaces[sweep] = s }
        return s
    }
}
