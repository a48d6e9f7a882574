import GRDB

/// The database schema, as GRDB migrations. A shipped migration is never edited: changes
/// come as new migrations appended here.
enum Schema {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
            CREATE TABLE sweeps (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                spec_yaml TEXT NOT NULL,
                method TEXT NOT NULL,
                varying TEXT NOT NULL,          -- JSON array of dotted paths
                created_ms INTEGER NOT NULL
            );
            CREATE TABLE jobs (
                id INTEGER PRIMARY KEY,
                sweep_id INTEGER NOT NULL REFERENCES sweeps(id),
                idx INTEGER NOT NULL,
                params_hash TEXT NOT NULL,
                params TEXT NOT NULL,           -- the whole job spec, JSON
                varying TEXT NOT NULL,          -- the swept fields of this job, JSON object
                trainer TEXT NOT NULL,
                gpus INTEGER NOT NULL,
                gpu_memory_gb REAL NOT NULL,
                priority INTEGER NOT NULL,
                max_attempts INTEGER NOT NULL,
                status TEXT NOT NULL,
                failures INTEGER NOT NULL DEFAULT 0,
                attempts INTEGER NOT NULL DEFAULT 0,
                current_attempt INTEGER,        -- the attempt holding the lease (fencing token)
                not_before_ms INTEGER NOT NULL DEFAULT 0,
                error TEXT,
                worker TEXT,
                final_train_loss REAL,
                best_val_loss REAL,
                final_val_loss REAL,
                tokens_per_s REAL,
                adapter_sha256 TEXT,
                created_ms INTEGER NOT NULL,
                UNIQUE (sweep_id, params_hash),
                UNIQUE (sweep_id, idx)
            );
            CREATE INDEX jobs_ready ON jobs(status, priority DESC, id);
            CREATE TABLE workers (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                capabilities TEXT NOT NULL,
                first_seen_ms INTEGER NOT NULL,
                last_seen_ms INTEGER NOT NULL,
                consecutive_failures INTEGER NOT NULL DEFAULT 0,
                quarantined INTEGER NOT NULL DEFAULT 0,
                quarantine_reason TEXT
            );
            CREATE TABLE attempts (
                id INTEGER PRIMARY KEY,
                job_id INTEGER NOT NULL REFERENCES jobs(id),
                number INTEGER NOT NULL,
                worker_id TEXT NOT NULL,
                state TEXT NOT NULL,            -- running, succeeded, failed, lost, returned, cancelled
                lease_expires_ms INTEGER NOT NULL,
                started_ms INTEGER NOT NULL,
                ended_ms INTEGER,
                error TEXT,
                UNIQUE (job_id, number)
            );
            CREATE INDEX attempts_running ON attempts(state, lease_expires_ms);
            CREATE TABLE metrics (
                attempt_id INTEGER NOT NULL REFERENCES attempts(id),
                seq INTEGER NOT NULL,
                at_ms INTEGER NOT NULL,
                event TEXT NOT NULL,            -- the trainer's JSON line
                PRIMARY KEY (attempt_id, seq)
            ) WITHOUT ROWID;
            CREATE TABLE artifacts (
                id INTEGER PRIMARY KEY,
                attempt_id INTEGER NOT NULL REFERENCES attempts(id),
                kind TEXT NOT NULL,             -- adapter, checkpoint
                name TEXT NOT NULL,             -- relative path inside the output directory
                sha256 TEXT NOT NULL,
                size INTEGER NOT NULL,
                created_ms INTEGER NOT NULL,
                UNIQUE (attempt_id, kind, name)
            );
            CREATE TABLE uploads (
                id INTEGER PRIMARY KEY,
                attempt_id INTEGER NOT NULL REFERENCES attempts(id),
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                size INTEGER NOT NULL,
                received INTEGER NOT NULL DEFAULT 0,  -- bytes written and verified so far
                UNIQUE (attempt_id, kind, name, sha256)
            );
            """)
        }
        // The job summary's evaluation metrics beyond the loss (a JSON object of numbers): the
        // baseline loss, and what prune jobs report per evaluation (KL, top-1 agreement, ...).
        m.registerMigration("v2-metrics") { db in
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN metrics TEXT")
        }
        // The typed job spec (JobSpec) always names a built-in trainer's task; LoRA jobs stored
        // before it had none, and a worker refuses a spec without it. Their hashes stay as they
        // were: a hash is only compared within its own sweep.
        m.registerMigration("v3-job-task") { db in
            try db.execute(sql: """
                UPDATE jobs SET params = json_set(params, '$.task', 'lora')
                WHERE trainer IN ('native', 'torch') AND json_extract(params, '$.task') IS NULL
                """)
        }
        // The trainers' event lines were kept in a table called `metrics`, a word that also
        // named the job summary's evaluation numbers (`jobs.metrics`); the table is `events` now.
        m.registerMigration("v4-events-table") { db in
            try db.execute(sql: "ALTER TABLE metrics RENAME TO events")
        }
        // When the worker first named an attempt in a heartbeat or a registration: a lease that
        // expires unconfirmed never reached its worker (lost in transit, or sent into a dead
        // connection) and is returned to the queue rather than counted as a failure.
        m.registerMigration("v5-attempts-confirmed") { db in
            try db.execute(sql: "ALTER TABLE attempts ADD COLUMN confirmed_ms INTEGER")
            try db.execute(sql: "UPDATE attempts SET confirmed_ms = started_ms")
        }
        // Role tokens: each sweep records who submitted it (a `submit` token may cancel and retry
        // only its own), and an audit log records who submitted, cancelled, retried or
        // unquarantined what.
        m.registerMigration("v6-submitters-and-audit") { db in
            try db.execute(sql: "ALTER TABLE sweeps ADD COLUMN submitted_by TEXT")
            try db.execute(sql: """
                CREATE TABLE audit (
                    id INTEGER PRIMARY KEY,
                    at_ms INTEGER NOT NULL,
                    who TEXT NOT NULL,
                    role TEXT NOT NULL,
                    action TEXT NOT NULL,       -- submit, cancel, retry, unquarantine
                    target TEXT NOT NULL,       -- "sweep 3", "job 12", "worker gpu-07"
                    detail TEXT
                )
                """)
        }
        // Large sweeps are stored in chunks (Store.insertSweep): `expanding` marks a sweep whose
        // jobs are still being stored (finished at start-up after a crash), `cancelled_ms` a sweep
        // cancelled meanwhile (its later chunks are stored cancelled).
        //
        // The jobs table loses UNIQUE (sweep_id, params_hash): SweepSpec.plan refuses a sweep
        // with two identical jobs before anything is stored (the one place that rule lives), and
        // an index keyed by a random hash made every chunk of a large sweep dirty a page per job
        // (a 1,000,000-job grid wrote gigabytes to the WAL). SQLite cannot drop a table
        // constraint, so the table is rebuilt (GRDB defers foreign-key checks in a migration).
        //
        // `sweep_counts` keeps each sweep's jobs by status: `tuna sweeps` reads a few rows a sweep
        // instead of counting every job ever submitted (0.4 s at 1,000,000 jobs, and growing).
        // Triggers on `jobs` follow every status change and deletion; new jobs are counted by
        // the one statement that creates them (Store.insert(_:sweep:now:), a chunk at a time:
        // a trigger per inserted row cost 6 s of a 1,000,000-job submit).
        m.registerMigration("v7-chunked-sweeps") { db in
            try db.execute(sql: "ALTER TABLE sweeps ADD COLUMN expanding INTEGER NOT NULL DEFAULT 0")
            try db.execute(sql: "ALTER TABLE sweeps ADD COLUMN cancelled_ms INTEGER")
            let columns = """
                id, sweep_id, idx, params_hash, params, varying, trainer, gpus, gpu_memory_gb, priority, max_attempts,
                status, failures, attempts, current_attempt, not_before_ms, error, worker, final_train_loss,
                best_val_loss, final_val_loss, tokens_per_s, adapter_sha256, created_ms, metrics
                """
            try db.execute(sql: """
                CREATE TABLE jobs_rebuilt (
                    id INTEGER PRIMARY KEY,
                    sweep_id INTEGER NOT NULL REFERENCES sweeps(id),
                    idx INTEGER NOT NULL,
                    params_hash TEXT NOT NULL,      -- SHA-256 of params; unique within a sweep (SweepSpec.plan)
                    params TEXT NOT NULL,
                    varying TEXT NOT NULL,
                    trainer TEXT NOT NULL,
                    gpus INTEGER NOT NULL,
                    gpu_memory_gb REAL NOT NULL,
                    priority INTEGER NOT NULL,
                    max_attempts INTEGER NOT NULL,
                    status TEXT NOT NULL,
                    failures INTEGER NOT NULL DEFAULT 0,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    current_attempt INTEGER,
                    not_before_ms INTEGER NOT NULL DEFAULT 0,
                    error TEXT,
                    worker TEXT,
                    final_train_loss REAL,
                    best_val_loss REAL,
                    final_val_loss REAL,
                    tokens_per_s REAL,
                    adapter_sha256 TEXT,
                    created_ms INTEGER NOT NULL,
                    metrics TEXT,
                    UNIQUE (sweep_id, idx)
                );
                INSERT INTO jobs_rebuilt (\(columns)) SELECT \(columns) FROM jobs;
                DROP TABLE jobs;
                ALTER TABLE jobs_rebuilt RENAME TO jobs;
                CREATE INDEX jobs_ready ON jobs(status, priority DESC, id);
                CREATE TABLE sweep_counts (
                    sweep_id INTEGER NOT NULL,
                    status TEXT NOT NULL,
                    jobs INTEGER NOT NULL,
                    PRIMARY KEY (sweep_id, status)
                ) WITHOUT ROWID;
                INSERT INTO sweep_counts SELECT sweep_id, status, COUNT(*) FROM jobs GROUP BY sweep_id, status;
                CREATE TRIGGER jobs_counted_update AFTER UPDATE OF status, sweep_id ON jobs
                WHEN old.status IS NOT new.status OR old.sweep_id IS NOT new.sweep_id BEGIN
                    UPDATE sweep_counts SET jobs = jobs - 1 WHERE sweep_id = old.sweep_id AND status = old.status;
                    INSERT INTO sweep_counts (sweep_id, status, jobs) VALUES (new.sweep_id, new.status, 1)
                    ON CONFLICT (sweep_id, status) DO UPDATE SET jobs = jobs + 1;
                END;
                CREATE TRIGGER jobs_counted_delete AFTER DELETE ON jobs BEGIN
                    UPDATE sweep_counts SET jobs = jobs - 1 WHERE sweep_id = old.sweep_id AND status = old.status;
                END;
                """)
        }
        // What each sweep optimises (`objective:` in its spec); NULL for the sweeps stored before,
        // which optimise the default (val_loss, min).
        m.registerMigration("v8-objective") { db in
            try db.execute(sql: "ALTER TABLE sweeps ADD COLUMN objective_metric TEXT")
            try db.execute(sql: "ALTER TABLE sweeps ADD COLUMN objective_mode TEXT")
        }
        // Early stopping (`sweep.early_stopping`, EarlyStopping): the rule of each sweep that has
        // one (JSON), and each job's objective at each rung it reached, which the rule judges.
        m.registerMigration("v9-early-stopping") { db in
            try db.execute(sql: "ALTER TABLE sweeps ADD COLUMN early_stopping TEXT")
            try db.execute(sql: """
                CREATE TABLE rungs (
                    sweep_id INTEGER NOT NULL REFERENCES sweeps(id),
                    rung INTEGER NOT NULL,          -- training steps
                    job_id INTEGER NOT NULL REFERENCES jobs(id),
                    value REAL NOT NULL,            -- the objective at the job's first eval at or after the rung
                    step INTEGER NOT NULL,          -- that eval's step
                    PRIMARY KEY (sweep_id, rung, job_id)
                ) WITHOUT ROWID
                """)
        }
        // ASHA's promotion mode and the median rule: where each attempt was asked to pause, each
        // recorded value's bracket (asha with brackets), and every decision of a sweep's rule
        // with its reason (what `tuna jobs` shows, and what a restarted coordinator goes on from).
        m.registerMigration("v10-promotion") { db in
            try db.execute(sql: "ALTER TABLE attempts ADD COLUMN pause_at_step INTEGER")
            try db.execute(sql: "ALTER TABLE rungs ADD COLUMN bracket INTEGER NOT NULL DEFAULT 0")
            try db.execute(sql: """
                CREATE TABLE decisions (
                    id INTEGER PRIMARY KEY,
                    sweep_id INTEGER NOT NULL REFERENCES sweeps(id),
                    job_id INTEGER NOT NULL REFERENCES jobs(id),
                    kind TEXT NOT NULL,             -- paused, promoted, stopped (DecisionRow.Kind)
                    rung INTEGER NOT NULL,          -- training steps
                    at_ms INTEGER NOT NULL,
                    reason TEXT NOT NULL
                );
                CREATE INDEX decisions_job ON decisions(job_id);
                CREATE INDEX decisions_sweep ON decisions(sweep_id, id);
                """)
        }
        // `tuna sweep extend`: jobs added to a random or TPE sweep past its spec's count.
        m.registerMigration("v11-extend") { db in
            try db.execute(sql: "ALTER TABLE sweeps ADD COLUMN extended INTEGER NOT NULL DEFAULT 0")
        }
        // `sweep.max_steps_total`: each sweep's budget (JSON StepBudget), and per attempt the step
        // it is taken to start from, the steps reserved for it and, once ended, those it trained.
        m.registerMigration("v12-step-budget") { db in
            try db.execute(sql: "ALTER TABLE sweeps ADD COLUMN budget TEXT")
            try db.execute(sql: "ALTER TABLE attempts ADD COLUMN start_step INTEGER")
            try db.execute(sql: "ALTER TABLE attempts ADD COLUMN reserved_steps INTEGER")
            try db.execute(sql: "ALTER TABLE attempts ADD COLUMN charged_steps INTEGER")
        }
        // The dashboard's loss curves: each job's train and validation loss by step, kept narrow
        // at ingest (Store.recordPoints) so that a sweep's chart is one indexed range read, not a
        // JSON parse of every event. A later attempt's value at a step replaces an earlier one's
        // (as `tuna export` draws one curve per job). Filled here from the events already stored.
        m.registerMigration("v13-curve-points") { db in
            try db.execute(sql: """
                CREATE TABLE points (
                    job_id INTEGER NOT NULL REFERENCES jobs(id),
                    kind INTEGER NOT NULL,          -- Store.CurveKind: 0 train loss, 1 validation loss
                    step INTEGER NOT NULL,
                    value REAL NOT NULL,
                    PRIMARY KEY (job_id, kind, step)
                ) WITHOUT ROWID
                """)
            try db.execute(sql: """
                INSERT OR REPLACE INTO points (job_id, kind, step, value)
                SELECT a.job_id, CASE json_extract(e.event, '$.event') WHEN 'step' THEN 0 ELSE 1 END,
                       CAST(json_extract(e.event, '$.step') AS INTEGER), json_extract(e.event, '$.loss')
                FROM events e JOIN attempts a ON a.id = e.attempt_id
                WHERE json_extract(e.event, '$.event') IN ('step', 'eval')
                  -- a whole-number step, as CurvePoint(event:) takes it (5 or 5.0)
                  AND typeof(json_extract(e.event, '$.step')) IN ('integer', 'real')
                  AND json_extract(e.event, '$.step') = CAST(json_extract(e.event, '$.step') AS INTEGER)
                  AND typeof(json_extract(e.event, '$.loss')) IN ('integer', 'real')
                ORDER BY a.number, e.seq
                """)
        }
        return m
    }
}
